//! Durability and integrity, seen from outside: kill -9 mid-stream, corrupted
//! files on disk, the documented layout.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use crate::common::{Guardian, err, identity};

/// The payload pushed for `version`: self-describing, so a pulled share tells
/// which push it came from (and a torn one is recognisable).
fn payload(version: u64) -> Vec<u8> {
    let mut p = version.to_be_bytes().to_vec();
    p.extend(std::iter::repeat_n(
        (version % 251) as u8,
        1000 + (version as usize % 3000),
    ));
    p
}

#[tokio::test]
async fn every_acknowledged_push_survives_sigkill() {
    let dir = obscura_testkit::data_dir();
    let mut g = Guardian::start_in(dir.path(), &[]).await;
    let ids: Vec<String> = (0..4).map(|_| identity()).collect();
    // identity → highest version answered 200.
    let acked: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let url = g.url("/v1/vault/push");
    let mut pushers = Vec::new();
    for id in ids.clone() {
        let (acked, url, client) = (Arc::clone(&acked), url.clone(), g.client.clone());
        pushers.push(tokio::spawn(async move {
            for version in 1u64.. {
                let body = json!({"identity": id, "share": STANDARD.encode(payload(version)), "version": version});
                match client.post(&url).body(body.to_string()).send().await {
                    Ok(r) if r.status() == 200 => {
                        acked.lock().unwrap().insert(id.clone(), version);
                    }
                    _ => return,
                }
            }
        }));
    }
    // Let a good number of pushes land, then pull the plug mid-stream.
    crate::common::eventually(60, "pushes acknowledged", || {
        let n = acked.lock().unwrap().values().sum::<u64>();
        async move { n >= 60 }
    })
    .await;
    g.server.kill().await;
    for p in pushers {
        let _ = p.await;
    }
    let acked = acked.lock().unwrap().clone();

    let g = Guardian::start_in(dir.path(), &[]).await;
    for id in &ids {
        let last = acked.get(id).copied().unwrap_or(0);
        let (st, v) = g.pull(id).await;
        if last == 0 && st == 404 {
            continue;
        }
        assert_eq!(st, 200, "{v}");
        let data = STANDARD.decode(v["share"].as_str().unwrap()).unwrap();
        let version = u64::from_be_bytes(data[..8].try_into().unwrap());
        // The last acknowledged push, or the one in flight when killed — whole.
        assert!(
            version == last || version == last + 1,
            "acked {last}, found {version}"
        );
        assert_eq!(data, payload(version), "torn share");
        // Versions keep going up from there.
        assert_eq!(g.push(id, b"x", version).await.0, 400);
        assert_eq!(g.push(id, b"x", version + 1).await.0, 200);
    }
    drop(dir);
}

#[tokio::test]
async fn corrupted_records_are_never_served() {
    let g = Guardian::start(&[]).await;
    let id = identity();
    assert_eq!(g.push(&id, b"precious share", 1).await.0, 200);
    let token = g.session(&id, "v2").await;
    assert_eq!(
        g.put_secret(&token, "k", b"precious secret", 1).await.0,
        200
    );

    let v1 = g.data_dir().join("shares").join(&id).join("share.bin");
    let v2 = g
        .data_dir()
        .join("vaults")
        .join(&id)
        .join("k")
        .join("share.bin");
    for path in [&v1, &v2] {
        let mut bytes = std::fs::read(path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        std::fs::write(path, bytes).unwrap();
    }
    assert_eq!(g.pull(&id).await, (500, err("internal server error")));
    assert_eq!(
        g.get_secret(&token, "k").await,
        (500, err("internal server error"))
    );
    // Not silently replaced either: an operator has to look at it.
    assert_eq!(
        g.push(&id, b"new", 2).await,
        (500, err("internal server error"))
    );
    // A record planted in another identity's directory does not verify.
    let other = identity();
    let planted = g.data_dir().join("shares").join(&other);
    std::fs::create_dir_all(&planted).unwrap();
    assert_eq!(g.push(&identity(), b"donor", 1).await.0, 200);
    std::fs::write(planted.join("share.bin"), std::fs::read(&v1).unwrap()).unwrap();
    assert_eq!(g.pull(&other).await, (500, err("internal server error")));
}

#[tokio::test]
async fn on_disk_layout_is_the_documented_one() {
    let g = Guardian::start(&[]).await;
    let id = identity();
    assert_eq!(g.push(&id.to_uppercase(), b"abc", 42).await.0, 200);
    let token = g.session(&id, "v2").await;
    assert_eq!(g.put_secret(&token, "api-key", b"hello", 7).await.0, 200);
    let root = g.data_dir();

    let key = std::fs::metadata(root.join("integrity.key")).unwrap();
    assert_eq!((key.len(), key.permissions().mode() & 0o777), (32, 0o600));

    let share = root.join("shares").join(&id);
    assert_eq!(
        std::fs::read_to_string(share.join("version")).unwrap(),
        "42"
    );
    assert_eq!(std::fs::read(share.join("checksum.bin")).unwrap().len(), 32);
    assert!(share.join("share.bin").is_file());

    let secret = root.join("vaults").join(&id).join("api-key");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(secret.join("meta.json")).unwrap()).unwrap();
    assert_eq!(
        (meta["version"].as_u64(), meta["size"].as_u64()),
        (Some(7), Some(5))
    );
    assert!(meta["created_ns"].as_u64().unwrap() > 0 && meta["updated_ns"].as_u64().is_some());
    assert_eq!(
        std::fs::read(secret.join("checksum.bin")).unwrap().len(),
        32
    );
    // No temp files left behind.
    for dir in [&share, &secret] {
        let names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }
}

#[tokio::test]
async fn data_and_integrity_key_survive_a_graceful_restart() {
    let mut g = Guardian::start(&[]).await;
    let id = identity();
    assert_eq!(g.push(&id, b"kept", 3).await.0, 200);
    let status = g.server.terminate().await.unwrap();
    assert!(status.success(), "{status}");
    g.server.restart().await.unwrap();
    assert_eq!(g.pull(&id).await.1["share"], STANDARD.encode(b"kept"));
    assert_eq!(g.push(&id, b"old", 3).await.0, 400);
}

#[tokio::test]
async fn mirror_files_are_not_relied_upon_and_are_rebuilt_at_start() {
    let mut g = Guardian::start(&[]).await;
    let id = identity();
    assert_eq!(g.push(&id, b"kept", 7).await.0, 200);
    let dir = g.data_dir().join("shares").join(&id);
    let checksum = std::fs::read(dir.join("checksum.bin")).unwrap();
    // What a power cut can leave of the mirrors (they are not fsynced).
    std::fs::remove_file(dir.join("version")).unwrap();
    std::fs::write(dir.join("checksum.bin"), b"").unwrap();
    assert_eq!(g.pull(&id).await.1["share"], STANDARD.encode(b"kept"));
    assert_eq!(g.push(&id, b"old", 7).await.0, 400);

    let status = g.server.terminate().await.unwrap();
    assert!(status.success(), "{status}");
    g.server.restart().await.unwrap();
    assert_eq!(std::fs::read_to_string(dir.join("version")).unwrap(), "7");
    assert_eq!(std::fs::read(dir.join("checksum.bin")).unwrap(), checksum);
    assert_eq!(g.pull(&id).await.1["share"], STANDARD.encode(b"kept"));
}

/// A reference guardian's data directory (bare shares, versions beside
/// them) is taken over on the first start: every share is served with its
/// version and anti-rollback continues from it. After that first start, a
/// bare `share.bin` is corrupt like any other and never served.
#[tokio::test]
async fn a_reference_guardians_data_directory_is_imported_on_first_start() {
    let dir = obscura_testkit::data_dir();
    let root = dir.path();
    let (v1_id, v2_id) = (identity(), identity());
    // A reference record: the bare share and its version file beside it.
    let reference = |dir: std::path::PathBuf, share: &[u8], side: (&str, &str)| {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("share.bin"), share).unwrap();
        std::fs::write(dir.join(side.0), side.1).unwrap();
        dir
    };
    let share = reference(
        root.join("shares").join(&v1_id),
        b"reference v1 share",
        ("version", "41"),
    );
    std::fs::write(share.join("checksum.bin"), [7u8; 32]).unwrap();
    let vault = root.join("vaults").join(&v2_id);
    reference(
        vault.join("api-key"),
        b"reference secret",
        (
            "meta.json",
            r#"{"version":5,"created_ns":1700000000000000000,"updated_ns":1700000000000000001,"size":16}"#,
        ),
    );
    // Its meta.json does not match its share: not imported, not served.
    reference(
        vault.join("torn"),
        b"abc",
        (
            "meta.json",
            r#"{"version":1,"created_ns":1,"updated_ns":1,"size":9}"#,
        ),
    );

    let mut g = Guardian::start_in(root, &[]).await;
    assert_eq!(
        g.pull(&v1_id).await.1["share"],
        STANDARD.encode(b"reference v1 share")
    );
    assert_eq!(
        g.push(&v1_id, b"stale", 41).await,
        (
            400,
            err("version must be greater than current stored version")
        )
    );
    let token = g.session(&v2_id, "v2").await;
    let (status, body) = g.get_secret(&token, "api-key").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["share"], STANDARD.encode(b"reference secret"));
    assert_eq!(body["version"], 5);
    assert_eq!(
        g.get_secret(&token, "torn").await,
        (500, err("internal server error"))
    );
    assert!(!root.join(".reference-import").exists());

    // Later, a bare share.bin is not imported: it is corrupt.
    let status = g.server.terminate().await.unwrap();
    assert!(status.success(), "{status}");
    let planted_id = identity();
    reference(
        root.join("shares").join(&planted_id),
        b"planted",
        ("version", "1"),
    );
    g.server.restart().await.unwrap();
    assert_eq!(
        g.pull(&planted_id).await,
        (500, err("internal server error"))
    );
    assert_eq!(
        g.pull(&v1_id).await.1["share"],
        STANDARD.encode(b"reference v1 share")
    );
    assert_eq!(g.push(&v1_id, b"newer", 42).await.0, 200);
}
