//! The record cache, seen from outside: whatever path a read takes (V1 pull,
//! V2 GET, peer verify), it answers with the last acknowledged write, and
//! nothing after a delete.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use crate::cluster::verify_cli;
use crate::common::{Guardian, err, identity};

fn share_of(v: &serde_json::Value) -> Vec<u8> {
    STANDARD
        .decode(v["share"].as_str().expect("share"))
        .unwrap()
}

#[tokio::test]
async fn reads_follow_writes_and_deletes() {
    let g = Guardian::start(&[]).await;
    let id = identity();
    assert_eq!(g.push(&id, b"one", 1).await.0, 200);
    // Twice: the second pull is answered from the cache.
    for _ in 0..2 {
        assert_eq!(share_of(&g.pull(&id).await.1), b"one");
    }
    let peer = g.server.addr("peer");
    let verified = verify_cli(peer, &id).await;
    assert_eq!(verified["commitment"], hex::encode(Sha256::digest(b"one")));
    // A refused push changes nothing; an accepted one is seen by every path.
    assert_eq!(g.push(&id, b"stale", 1).await.0, 400);
    assert_eq!(share_of(&g.pull(&id).await.1), b"one");
    assert_eq!(g.push(&id, b"two", 2).await.0, 200);
    assert_eq!(share_of(&g.pull(&id).await.1), b"two");
    let verified = verify_cli(peer, &id).await;
    assert_eq!(verified["commitment"], hex::encode(Sha256::digest(b"two")));

    let token = g.session(&id, "v2").await;
    assert_eq!(g.put_secret(&token, "k", b"s1", 1).await.0, 200);
    for _ in 0..2 {
        let (st, v) = g.get_secret(&token, "k").await;
        assert_eq!(
            (st, share_of(&v), v["version"].as_u64()),
            (200, b"s1".to_vec(), Some(1))
        );
    }
    assert_eq!(g.put_secret(&token, "k", b"s2", 2).await.0, 200);
    let (_, v) = g.get_secret(&token, "k").await;
    assert_eq!(
        (share_of(&v), v["version"].as_u64()),
        (b"s2".to_vec(), Some(2))
    );
    let (st, _) = g
        .v2(reqwest::Method::DELETE, "/v2/vault/secrets/k", &token, None)
        .await;
    assert_eq!(st, 200);
    assert_eq!(
        g.get_secret(&token, "k").await,
        (404, err("secret not found"))
    );
    // Recreated with a lower version after the delete: the new record is served.
    assert_eq!(g.put_secret(&token, "k", b"s0", 1).await.0, 200);
    let (_, v) = g.get_secret(&token, "k").await;
    assert_eq!(
        (share_of(&v), v["version"].as_u64()),
        (b"s0".to_vec(), Some(1))
    );
}

#[tokio::test]
async fn concurrent_pulls_never_return_a_version_older_than_the_last_acknowledged_push() {
    let g = Arc::new(Guardian::start(&[]).await);
    let id = identity();
    const LAST: u64 = 150;
    let acked = Arc::new(AtomicU64::new(0));
    let pusher = {
        let (g, id, acked) = (Arc::clone(&g), id.clone(), Arc::clone(&acked));
        tokio::spawn(async move {
            for version in 1..=LAST {
                let (st, v) = g.push(&id, &version.to_be_bytes(), version).await;
                assert_eq!(st, 200, "{v}");
                acked.store(version, Ordering::SeqCst);
            }
        })
    };
    let pullers: Vec<_> = (0..4)
        .map(|_| {
            let (g, id, acked) = (Arc::clone(&g), id.clone(), Arc::clone(&acked));
            tokio::spawn(async move {
                let mut last_seen = 0;
                loop {
                    let floor = acked.load(Ordering::SeqCst);
                    let (st, v) = g.pull(&id).await;
                    let seen = match st {
                        200 => u64::from_be_bytes(share_of(&v).try_into().unwrap()),
                        404 => 0,
                        _ => panic!("{st} {v}"),
                    };
                    assert!(
                        seen >= floor,
                        "pulled {seen} after {floor} was acknowledged"
                    );
                    assert!(seen >= last_seen, "pulled {seen} after {last_seen}");
                    last_seen = seen;
                    if floor == LAST {
                        return;
                    }
                }
            })
        })
        .collect();
    pusher.await.unwrap();
    for p in pullers {
        p.await.unwrap();
    }
}

#[tokio::test]
async fn the_cache_can_be_turned_off() {
    let g = Guardian::start(&["--record-cache-mib", "0"]).await;
    let id = identity();
    assert_eq!(g.push(&id, b"one", 1).await.0, 200);
    assert_eq!(share_of(&g.pull(&id).await.1), b"one");
    assert_eq!(g.push(&id, b"two", 2).await.0, 200);
    assert_eq!(share_of(&g.pull(&id).await.1), b"two");
}
