//! What survives a crash (SIGKILL) and a graceful shutdown (SIGTERM), the
//! persisted JWT secret, and message expiry.

use std::time::Duration;

use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::*;

/// Every message answered 201 before a SIGKILL is delivered after restart,
/// in order; tokens issued before stay valid (the secret is persisted).
#[backend_test]
async fn sigkill_restart_keeps_queued_messages_and_tokens() {
    let mut relay = Relay::start().await;
    let alice = relay.register(12).await;
    let bob = relay.register(12).await;
    for i in 0..20 {
        relay
            .send_ok(
                &alice.token,
                &bob.id,
                &message(2, format!("durable-{i}").as_bytes()),
            )
            .await;
    }
    let attachment = expect_json(
        relay
            .http
            .post(relay.url("/v1/attachments"))
            .bearer_auth(&alice.token)
            .body(vec![7u8; 5000])
            .send()
            .await
            .unwrap(),
        201,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();

    relay
        .server
        .restart()
        .await
        .expect("restart on the same data dir");

    let mut socket = relay.connect(&bob.token).await;
    let envs = socket.envelopes(20).await;
    for (i, env) in envs.iter().enumerate() {
        assert_eq!(
            env.message.as_ref().unwrap().content,
            format!("durable-{i}").as_bytes(),
            "order kept"
        );
        assert_eq!(env.source_user_id, alice.id);
    }
    // Nothing extra.
    relay
        .send_ok(&alice.token, &bob.id, &message(2, b"after restart"))
        .await;
    assert_eq!(
        socket.envelope().await.message.unwrap().content,
        b"after restart"
    );

    expect_json(relay.refresh(&alice.refresh_token).await, 200).await;
    expect_json(relay.login(&bob.username, &bob.password).await, 200).await;
    let resp = relay
        .http
        .get(relay.url(&format!("/v1/attachments/{attachment}")))
        .bearer_auth(&bob.token)
        .send();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &[7u8; 5000][..]);
}

/// Group commit under a crash: 16 senders keep requests in flight to 4
/// recipients (so many messages share each transaction) until the relay is
/// SIGKILLed. After restart every message answered 201 is delivered exactly
/// once to its recipient; the only other messages that may appear are those
/// whose request died with the process unanswered.
#[backend_test]
async fn sigkill_during_concurrent_sends_loses_and_duplicates_nothing() {
    use std::collections::{HashMap, HashSet};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use obscura_proto::web_socket_frame::Payload;
    use prost::Message as _;

    let mut relay = Relay::start().await;
    let mut users = Vec::new();
    for _ in 0..4 {
        users.push(relay.register(0).await);
    }
    let accepted = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for sender in 0..16 {
        let http = relay.http.clone();
        let token = users[sender % 4].token.clone();
        let targets: Vec<String> = users.iter().map(|u| u.id.clone()).collect();
        let base = relay.url("/v1/messages/");
        let accepted = accepted.clone();
        tasks.push(tokio::spawn(async move {
            // (recipient, content) answered 201, and the one left unanswered.
            let mut acked = Vec::new();
            for i in 0.. {
                let to = targets[(sender + i) % targets.len()].clone();
                let content = format!("s{sender}-{i}");
                let sent = http
                    .post(format!("{base}{to}"))
                    .bearer_auth(&token)
                    .header("content-type", "application/x-protobuf")
                    .body(message(2, content.as_bytes()).encode_to_vec())
                    .send()
                    .await;
                match sent {
                    Ok(resp) if resp.status().as_u16() == 201 => {
                        acked.push((to, content));
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(resp) => panic!("unexpected status {}", resp.status()),
                    Err(_) => return (acked, Some(content)),
                }
            }
            unreachable!()
        }));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while accepted.load(Ordering::Relaxed) < 300 {
        assert!(tokio::time::Instant::now() < deadline, "sends stalled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    relay.server.kill().await;

    let mut expected: HashMap<String, HashSet<String>> = HashMap::new();
    let mut unanswered = HashSet::new();
    for task in tasks {
        let (acked, lost) = task.await.unwrap();
        for (to, content) in acked {
            expected.entry(to).or_default().insert(content);
        }
        unanswered.extend(lost);
    }
    relay
        .server
        .restart()
        .await
        .expect("restart on the same data dir");

    let mut delivered_total = 0;
    for user in &users {
        let mut socket = relay.connect(&user.token).await;
        let mut seen = HashSet::new();
        loop {
            let frames = socket.sync_skipping().await;
            if frames.is_empty() {
                break;
            }
            for frame in frames {
                let Some(Payload::Envelope(env)) = frame.payload else {
                    continue;
                };
                let content = String::from_utf8(env.message.unwrap().content).unwrap();
                assert!(seen.insert(content.clone()), "{content} delivered twice");
                let wanted = expected.get(&user.id).is_some_and(|e| e.contains(&content));
                assert!(
                    wanted || unanswered.contains(&content),
                    "{content} was never sent to this user"
                );
            }
        }
        let missing: Vec<_> = expected
            .get(&user.id)
            .into_iter()
            .flatten()
            .filter(|c| !seen.contains(*c))
            .collect();
        assert!(missing.is_empty(), "accepted but lost: {missing:?}");
        delivered_total += seen.len();
    }
    assert!(delivered_total >= 300);
}

/// SIGTERM: sockets closed with 1001, acknowledged messages stay deleted.
#[backend_test]
async fn graceful_shutdown_closes_sockets_with_1001_and_flushes_acks() {
    let mut relay = Relay::start().await;
    let alice = relay.register(12).await;
    let bob = relay.register(12).await;
    for i in 0..3 {
        relay
            .send_ok(
                &alice.token,
                &bob.id,
                &message(2, format!("m{i}").as_bytes()),
            )
            .await;
    }
    let mut socket = relay.connect(&bob.token).await;
    let envs = socket.envelopes(3).await;
    socket.ack_bulk(&[&envs[0].id, &envs[1].id]).await;
    // The server has read the ACK (it answered the ping sent after it) but
    // may still hold it in its batch.
    socket.sync().await;

    let status = relay
        .server
        .terminate()
        .await
        .expect("server exits after SIGTERM");
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
    let close = socket
        .expect_closed()
        .await
        .expect("a close frame on shutdown");
    assert_eq!(close.code, CloseCode::Away, "close code 1001");

    relay.server.restart().await.expect("restart");
    let mut socket = relay.connect(&bob.token).await;
    let left = socket.envelope().await;
    assert_eq!(
        left.id, envs[2].id,
        "acknowledged messages were deleted before exit"
    );
    relay
        .send_ok(&alice.token, &bob.id, &message(2, b"fence"))
        .await;
    assert_eq!(socket.envelope().await.message.unwrap().content, b"fence");
}

#[backend_test]
async fn generated_jwt_secret_is_private_and_persisted() {
    let relay = Relay::start().await;
    let path = relay.dir.path().join("jwt-secret");
    let meta = std::fs::metadata(&path).expect("<data-dir>/jwt-secret is created on first run");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        meta.permissions().mode() & 0o077,
        0,
        "jwt-secret must not be readable by group/others"
    );
    assert!(meta.len() > 0);
}

/// --message-ttl-secs: an undelivered message disappears after its TTL.
#[backend_test]
async fn queued_messages_expire_after_the_ttl() {
    let relay =
        Relay::start_with(&["--message-ttl-secs", "1", "--cleanup-interval-secs", "1"]).await;
    let alice = relay.register(12).await;
    let bob = relay.register(12).await;
    relay
        .send_ok(&alice.token, &bob.id, &message(2, b"short-lived"))
        .await;

    // Probe without acknowledging: connect, read up to a fresh fence, close.
    let expired = eventually(Duration::from_secs(20), || async {
        let fence = format!("fence-{}", uuid::Uuid::new_v4());
        relay
            .send_ok(&alice.token, &bob.id, &message(2, fence.as_bytes()))
            .await;
        let mut socket = relay.connect(&bob.token).await;
        let mut saw_old = false;
        loop {
            let env = socket.envelope().await;
            let content = env.message.unwrap().content;
            if content == fence.as_bytes() {
                break;
            }
            saw_old |= content == b"short-lived";
        }
        socket.close().await;
        !saw_old
    })
    .await;
    assert!(
        expired,
        "message still delivered long after --message-ttl-secs"
    );
}

/// No hard-coded default secret: two fresh data directories generate
/// different secrets, so one relay's token means nothing to the other.
#[backend_test]
async fn generated_jwt_secrets_differ_between_data_dirs() {
    let a = Relay::start().await;
    let b = Relay::start().await;
    let user = a.register(12).await;
    let resp = b
        .http
        .put(b.url("/v1/push-tokens"))
        .bearer_auth(&user.token)
        .json(&serde_json::json!({"token": "t"}))
        .send()
        .await
        .unwrap();
    expect_error(resp, 401).await;
    let secret_a = std::fs::read(a.dir.path().join("jwt-secret")).unwrap();
    let secret_b = std::fs::read(b.dir.path().join("jwt-secret")).unwrap();
    assert_ne!(secret_a, secret_b);
}

/// A consumed one-time pre-key stays consumed after a crash.
#[backend_test]
async fn consumed_one_time_pre_keys_stay_consumed_after_restart() {
    let mut relay = Relay::start().await;
    let user = relay.register(2).await;
    let first = relay.bundle(&user.id).await["oneTimePreKey"]["keyId"]
        .as_u64()
        .expect("a key");
    relay.server.restart().await.expect("restart");
    let second = relay.bundle(&user.id).await["oneTimePreKey"]["keyId"]
        .as_u64()
        .expect("the other key");
    assert_ne!(first, second, "a key was handed out twice across a restart");
    assert!(relay.bundle(&user.id).await["oneTimePreKey"].is_null());
}

/// Passwords and refresh tokens never reach the disk in the clear: every
/// file of the data directory (database, WAL, …) is searched for them.
#[backend_test]
async fn secrets_are_not_stored_in_plaintext() {
    let relay = Relay::start().await;
    let user = relay.register(1).await;
    let login = expect_json(relay.login(&user.username, &user.password).await, 200).await;
    let rotated = expect_json(relay.refresh(&user.refresh_token).await, 200).await;
    let mut needles: Vec<(String, Vec<u8>)> =
        vec![("password".into(), user.password.clone().into_bytes())];
    for token in [
        &user.refresh_token,
        login["refreshToken"].as_str().unwrap(),
        rotated["refreshToken"].as_str().unwrap(),
    ] {
        needles.push(("refresh token".into(), token.as_bytes().to_vec()));
        let raw = base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            token.trim_end_matches('='),
        )
        .unwrap();
        needles.push(("raw refresh token bytes".into(), raw));
    }

    fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                files(&p, out)
            } else {
                out.push(p)
            }
        }
    }
    let mut all = Vec::new();
    files(relay.dir.path(), &mut all);
    assert!(!all.is_empty());
    for path in all {
        let Ok(content) = std::fs::read(&path) else {
            continue;
        };
        for (what, needle) in &needles {
            assert!(
                !content
                    .windows(needle.len())
                    .any(|w| w == needle.as_slice()),
                "{what} found in clear in {}",
                path.display()
            );
        }
    }
}
