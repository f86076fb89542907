//! POST /v1/messages/{recipientId} and delivery/acknowledgement over the gateway.

use std::collections::HashSet;
use std::time::Duration;

use futures::SinkExt as _;
use obscura_proto::{AckMessage, EncryptedMessage};
use prost::Message as _;
use rand_core::{OsRng, RngCore};

use crate::support::*;

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    OsRng.fill_bytes(&mut v);
    v
}

/// Alice sends to Bob after the sent messages: the first envelope Bob sees
/// after connecting must be this fence (nothing older was left queued).
async fn assert_queue_empty(relay: &Relay, sender: &User, recipient: &User) {
    let fence = format!("fence-{}", uuid::Uuid::new_v4());
    relay
        .send_ok(&sender.token, &recipient.id, &message(2, fence.as_bytes()))
        .await;
    let mut socket = relay.connect(&recipient.token).await;
    let env = socket.envelope().await;
    assert_eq!(
        String::from_utf8_lossy(&env.message.unwrap().content),
        fence,
        "a message that should be gone was delivered before the fence"
    );
    socket.ack_each(&[&env.id]).await;
    socket.sync().await;
    socket.close().await;
}

#[backend_test]
async fn send_receive_ack_is_not_redelivered() {
    let relay = Relay::start().await;
    let alice = relay.register(12).await;
    let bob = relay.register(12).await;
    let mut socket = relay.connect(&bob.token).await;

    let sent = [
        message(1, &random_bytes(200)),
        message(2, &[0, 0, 0, 1, 0]),
        message(2, b""),
    ];
    let before = now_millis();
    for m in &sent {
        relay.send_ok(&alice.token, &bob.id, m).await;
    }
    let after = now_millis();
    let got = socket.envelopes(3).await;
    let mut ids = HashSet::new();
    for (env, m) in got.iter().zip(&sent) {
        let id = uuid::Uuid::parse_str(&env.id).expect("envelope id is a UUID");
        assert!(ids.insert(id), "envelope ids are distinct");
        assert_eq!(
            env.source_user_id, alice.id,
            "source is the sender's canonical id"
        );
        assert!(
            (before.saturating_sub(2000)..=after + 2000).contains(&env.timestamp),
            "timestamp is receipt time in ms"
        );
        assert_eq!(
            env.message.as_ref(),
            Some(m),
            "type and content delivered unchanged"
        );
    }
    socket.ack_each(&[&got[0].id, &got[1].id, &got[2].id]).await;
    socket.sync().await;
    socket.close().await;

    assert_queue_empty(&relay, &alice, &bob).await;
}

#[backend_test]
async fn unacknowledged_messages_are_redelivered_in_order() {
    let relay = Relay::start().await;
    let alice = relay.register(12).await;
    let bob = relay.register(12).await;
    relay.send_numbered(&alice.token, &bob.id, 5).await;
    let mut socket = relay.connect(&bob.token).await;
    let first: Vec<_> = socket.envelopes(5).await;
    let contents: Vec<_> = first
        .iter()
        .map(|e| e.message.clone().unwrap().content)
        .collect();
    assert_eq!(
        contents,
        (0..5)
            .map(|i| format!("m{i}").into_bytes())
            .collect::<Vec<_>>(),
        "arrival order"
    );
    socket.close().await;

    let mut socket = relay.connect(&bob.token).await;
    let second = socket.envelopes(5).await;
    assert_eq!(
        second.iter().map(|e| &e.id).collect::<Vec<_>>(),
        first.iter().map(|e| &e.id).collect::<Vec<_>>(),
        "same envelopes, same order"
    );
    assert_eq!(second, first, "redelivered byte-for-byte");
    // Acknowledge the first and the middle one only.
    socket.ack_each(&[&first[0].id, &first[2].id]).await;
    socket.sync().await;
    socket.close().await;

    let mut socket = relay.connect(&bob.token).await;
    let third = socket.envelopes(3).await;
    assert_eq!(
        third.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        vec![
            first[1].id.as_str(),
            first[3].id.as_str(),
            first[4].id.as_str()
        ]
    );
    socket
        .ack_bulk(&[&first[1].id, &first[3].id, &first[4].id])
        .await;
    socket.sync().await;
    socket.close().await;
    assert_queue_empty(&relay, &alice, &bob).await;
}

/// One frame may carry the single field, the bulk field, or both; unknown
/// ids are ignored without breaking the connection.
#[backend_test]
async fn single_and_bulk_ack_fields_both_count() {
    let relay = Relay::start().await;
    let alice = relay.register(12).await;
    let bob = relay.register(12).await;
    relay.send_numbered(&alice.token, &bob.id, 5).await;
    let mut socket = relay.connect(&bob.token).await;
    let envs = socket.envelopes(5).await;
    socket
        .ack_frame(AckMessage {
            message_id: "not-a-uuid".into(),
            message_ids: vec![uuid::Uuid::new_v4().to_string(), String::new()],
        })
        .await;
    socket
        .ack_frame(AckMessage {
            message_id: envs[0].id.clone(),
            message_ids: vec![envs[1].id.clone(), envs[2].id.clone()],
        })
        .await;
    socket
        .ack_frame(AckMessage {
            message_id: String::new(),
            message_ids: vec![envs[3].id.clone()],
        })
        .await;
    socket.sync().await;
    socket.close().await;

    let mut socket = relay.connect(&bob.token).await;
    let left = socket.envelope().await;
    assert_eq!(
        left.id, envs[4].id,
        "only the unacknowledged message remains"
    );
    socket
        .ack_frame(AckMessage {
            message_id: left.id.clone(),
            message_ids: vec![],
        })
        .await;
    socket.sync().await;
    socket.close().await;
    assert_queue_empty(&relay, &alice, &bob).await;
}

/// A bulk ACK of a large backlog fits in one frame (2,500 ids, ~95 KB); a
/// frame over the 1 MiB limit closes the socket (1009) and changes nothing:
/// its messages come again.
#[backend_test]
async fn large_bulk_acks_work_and_oversized_frames_close_with_1009() {
    let relay = Relay::start().await;
    let alice = relay.register(12).await;
    let bob = relay.register(12).await;
    relay.send_numbered(&alice.token, &bob.id, 3).await;
    let mut socket = relay.connect(&bob.token).await;
    let envs = socket.envelopes(3).await;
    let ack_with_padding = |id: &str, padding: usize| {
        let mut ids: Vec<String> = (0..padding)
            .map(|_| uuid::Uuid::new_v4().to_string())
            .collect();
        ids.push(id.to_string());
        AckMessage {
            message_id: String::new(),
            message_ids: ids,
        }
    };
    let large = ack_with_padding(&envs[0].id, 2_500);
    assert!(large.encoded_len() > 64 * 1024);
    socket.ack_frame(large).await;
    socket.sync().await;
    let oversized = ack_with_padding(&envs[1].id, 30_000);
    assert!(oversized.encoded_len() > 1024 * 1024);
    // The server stops reading at the frame's header and closes with 1009;
    // the client may see that close frame, or (still writing the rest of
    // the frame into a socket the server closed) a reset. Either way the
    // socket is closed and the frame was not applied.
    let frame = obscura_proto::WebSocketFrame {
        payload: Some(obscura_proto::web_socket_frame::Payload::Ack(oversized)),
    };
    let _ = socket
        .ws
        .send(tokio_tungstenite::tungstenite::Message::binary(
            frame.encode_to_vec(),
        ))
        .await;
    if let Some(close) = socket.expect_closed().await {
        assert_eq!(u16::from(close.code), 1009);
    }

    let mut socket = relay.connect(&bob.token).await;
    let again = socket.envelopes(2).await;
    assert_eq!(
        again.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        vec![envs[1].id.as_str(), envs[2].id.as_str()],
        "the large ACK deleted its message, the oversized one nothing"
    );
    socket.ack_bulk(&[&envs[1].id, &envs[2].id]).await;
    socket.sync().await;
    socket.close().await;
    assert_queue_empty(&relay, &alice, &bob).await;
}

/// Acknowledging someone else's message id must not delete it.
#[backend_test]
async fn ack_cannot_delete_another_users_message() {
    let relay = Relay::start().await;
    let alice = relay.register(12).await;
    let bob = relay.register(12).await;
    let carol = relay.register(12).await;
    relay
        .send_ok(&alice.token, &bob.id, &message(2, b"for bob"))
        .await;
    let mut bob_socket = relay.connect(&bob.token).await;
    let env = bob_socket.envelope().await;
    bob_socket.close().await;

    let mut carol_socket = relay.connect(&carol.token).await;
    carol_socket.ack_each(&[&env.id]).await;
    carol_socket.ack_bulk(&[&env.id]).await;
    carol_socket.sync().await;
    carol_socket.close().await;

    let mut bob_socket = relay.connect(&bob.token).await;
    assert_eq!(
        bob_socket.envelope().await.id,
        env.id,
        "bob's message survived carol's ACK"
    );
}

#[backend_test]
async fn many_queued_messages_arrive_in_order_and_concurrent_sends_exactly_once() {
    /// Enough to span several delivery pages.
    const SEQUENTIAL: usize = 250;
    let relay = Relay::start().await;
    let alice = relay.register(12).await;
    let bob = relay.register(12).await;
    for i in 0..SEQUENTIAL {
        relay
            .send_ok(
                &alice.token,
                &bob.id,
                &message(2, format!("{i:03}").as_bytes()),
            )
            .await;
    }
    let concurrent = (0..20).map(|i| {
        let m = message(1, format!("c{i:02}").as_bytes());
        let relay = &relay;
        let alice = &alice;
        let bob = &bob;
        async move { relay.send_ok(&alice.token, &bob.id, &m).await }
    });
    futures::future::join_all(concurrent).await;

    let mut socket = relay.connect(&bob.token).await;
    let envs = socket.envelopes(SEQUENTIAL + 20).await;
    let contents: Vec<String> = envs
        .iter()
        .map(|e| String::from_utf8(e.message.clone().unwrap().content).unwrap())
        .collect();
    let expected: Vec<String> = (0..SEQUENTIAL).map(|i| format!("{i:03}")).collect();
    assert_eq!(
        &contents[..SEQUENTIAL],
        &expected[..],
        "sequential sends arrive in send order"
    );
    let mut rest: Vec<&String> = contents[SEQUENTIAL..].iter().collect();
    rest.sort();
    let want: Vec<String> = (0..20).map(|i| format!("c{i:02}")).collect();
    assert_eq!(
        rest,
        want.iter().collect::<Vec<_>>(),
        "each concurrent send delivered exactly once"
    );
    let ids: HashSet<&str> = envs.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), SEQUENTIAL + 20);
    let all: Vec<&str> = envs.iter().map(|e| e.id.as_str()).collect();
    for batch in all.chunks(100) {
        socket.ack_bulk(batch).await;
    }
    socket.sync().await;
    socket.close().await;
    assert_queue_empty(&relay, &alice, &bob).await;
}

#[backend_test]
async fn send_error_statuses() {
    let relay = Relay::start().await;
    let alice = relay.register(12).await;
    let bob = relay.register(12).await;

    // Undecodable protobuf (length prefix beyond the end; wrong wire type).
    expect_error(
        relay
            .send_raw(&alice.token, &bob.id, b"\x12\x10abc".to_vec())
            .await,
        400,
    )
    .await;
    expect_error(
        relay
            .send_raw(&alice.token, &bob.id, b"\x0a\x01x".to_vec())
            .await,
        400,
    )
    .await;
    // Unknown (404) or malformed (400) recipient.
    let m = message(2, b"x");
    expect_error(
        relay
            .send(&alice.token, &uuid::Uuid::new_v4().to_string(), &m)
            .await,
        404,
    )
    .await;
    expect_error(relay.send(&alice.token, "not-a-uuid", &m).await, 400).await;
    // Not even UTF-8 once percent-decoded: still the JSON error body.
    expect_error(relay.send(&alice.token, "%FF", &m).await, 400).await;
    // Unauthenticated.
    let resp = relay
        .http
        .post(relay.url(&format!("/v1/messages/{}", bob.id)))
        .body(m.encode_to_vec())
        .send()
        .await;
    expect_error(resp.unwrap(), 401).await;
    expect_error(
        relay.send(&format!("{}x", alice.token), &bob.id, &m).await,
        401,
    )
    .await;

    // application/octet-stream is accepted as well.
    let resp = relay
        .http
        .post(relay.url(&format!("/v1/messages/{}", bob.id)))
        .bearer_auth(&alice.token)
        .header("content-type", "application/octet-stream")
        .body(message(2, b"octet").encode_to_vec())
        .send()
        .await
        .unwrap();
    expect_empty(resp, 201).await;

    // None of the rejected sends was queued.
    let mut socket = relay.connect(&bob.token).await;
    assert_eq!(socket.envelope().await.message.unwrap().content, b"octet");
}

/// --max-message-bytes is enforced while reading: a declared Content-Length
/// over the limit is refused without the body being sent, and a chunked
/// body is cut off once it passes the limit.
#[backend_test]
async fn message_body_limit_is_enforced_while_reading() {
    let relay = Relay::start_with(&["--max-message-bytes", "4096"]).await;
    let alice = relay.register(12).await;
    let bob = relay.register(12).await;

    let fits = message(2, &random_bytes(4000));
    assert!(fits.encode_to_vec().len() <= 4096);
    relay.send_ok(&alice.token, &bob.id, &fits).await;

    let too_big = message(2, &random_bytes(5000));
    expect_error_in(
        relay.send(&alice.token, &bob.id, &too_big).await,
        &[400, 413],
    )
    .await;

    let head = |extra: &str| {
        format!(
            "POST /v1/messages/{} HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/x-protobuf\r\n{extra}\r\n",
            bob.id, alice.token
        )
        .into_bytes()
    };
    // Content-Length of 1 MiB, no body sent at all: must still be answered.
    let resp = raw_streaming(relay.addr(), head("Content-Length: 1048576\r\n"), vec![]).await;
    resp.assert_error(&[400, 413]);

    // Chunked, no Content-Length, 64 KiB of a valid-looking message.
    let mut body = EncryptedMessage {
        r#type: 2,
        content: random_bytes(64 * 1024),
    }
    .encode_to_vec();
    let chunks: Vec<Vec<u8>> = body.chunks_mut(4096).map(|c| http_chunk(c)).collect();
    let resp = raw_streaming(relay.addr(), head("Transfer-Encoding: chunked\r\n"), chunks).await;
    resp.assert_error(&[400, 413]);

    // Only the message that fit was queued, intact.
    let mut socket = relay.connect(&bob.token).await;
    assert_eq!(socket.envelope().await.message.unwrap(), fits);
    relay
        .send_ok(&alice.token, &bob.id, &message(2, b"after"))
        .await;
    assert_eq!(
        socket.envelope().await.message.unwrap().content,
        b"after",
        "nothing else was queued"
    );
}

/// Messages that arrive while the recipient connects, reads and reconnects
/// must be neither lost, duplicated nor reordered: every connection sees a
/// gap-free run that starts right after the last acknowledged message.
#[backend_test]
async fn messages_sent_around_reconnects_are_not_lost_or_reordered() {
    const TOTAL: usize = 150;
    let relay = Relay::start().await;
    let alice = relay.register(12).await;
    let bob = relay.register(12).await;

    let sender = {
        let http = relay.http.clone();
        let url = relay.url(&format!("/v1/messages/{}", bob.id));
        let token = alice.token.clone();
        tokio::spawn(async move {
            for i in 0..TOTAL {
                let resp = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/x-protobuf")
                    .body(message(2, format!("{i}").as_bytes()).encode_to_vec())
                    .send()
                    .await
                    .expect("send");
                assert_eq!(resp.status().as_u16(), 201);
            }
        })
    };

    let mut next = 0usize;
    while next < TOTAL {
        let mut socket = relay.connect(&bob.token).await;
        for _ in 0..17 {
            if next == TOTAL {
                break;
            }
            let env = socket.envelope().await;
            let seq: usize = String::from_utf8(env.message.unwrap().content)
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(seq, next, "expected message {next}, got {seq}");
            socket.ack_each(&[&env.id]).await;
            next += 1;
        }
        // Envelopes still in flight stay unacknowledged: redelivered next time.
        socket.sync_skipping().await;
        socket.close().await;
    }
    sender.await.expect("sender task");
    assert_queue_empty(&relay, &alice, &bob).await;
}

/// A client that vanishes without a close handshake (network loss) keeps
/// the ACKs the server already read.
#[backend_test]
async fn acks_survive_an_abrupt_disconnect() {
    let relay = Relay::start().await;
    let alice = relay.register(12).await;
    let bob = relay.register(12).await;
    relay
        .send_ok(&alice.token, &bob.id, &message(2, b"one"))
        .await;
    relay
        .send_ok(&alice.token, &bob.id, &message(2, b"two"))
        .await;
    let mut socket = relay.connect(&bob.token).await;
    let envs = socket.envelopes(2).await;
    socket.ack_each(&[&envs[0].id]).await;
    socket.sync().await;
    drop(socket); // TCP closed, no WebSocket close frame

    let mut socket = relay.connect(&bob.token).await;
    assert_eq!(
        socket.envelope().await.id,
        envs[1].id,
        "only the unacknowledged message is redelivered"
    );
}

/// Several senders at once while the recipient is online: every message
/// arrives exactly once and each sender's messages keep their order.
#[backend_test]
async fn concurrent_senders_to_an_online_recipient_lose_nothing() {
    concurrent_senders_to_one_recipient(4, 50, 16, Duration::ZERO).await;
}

/// A burst bigger than what a session buffers in notifications, to a
/// recipient that stops reading for a while (its socket fills, the relay's
/// send waits): no message is skipped, duplicated or reordered per sender
/// when the session falls behind and catches up from the store.
#[backend_test]
async fn a_burst_to_a_stalled_reader_loses_nothing() {
    concurrent_senders_to_one_recipient(8, 40, 16 * 1024, Duration::from_secs(1)).await;
}

async fn concurrent_senders_to_one_recipient(
    senders_n: usize,
    each: usize,
    size: usize,
    stall: Duration,
) {
    let relay = Relay::start().await;
    let bob = relay.register(12).await;
    let mut senders = Vec::new();
    for _ in 0..senders_n {
        senders.push(relay.register(12).await);
    }
    let mut socket = relay.connect(&bob.token).await;

    let tasks: Vec<_> = senders
        .iter()
        .enumerate()
        .map(|(s, sender)| {
            let http = relay.http.clone();
            let url = relay.url(&format!("/v1/messages/{}", bob.id));
            let token = sender.token.clone();
            tokio::spawn(async move {
                for i in 0..each {
                    let mut content = format!("{s}:{i}:").into_bytes();
                    content.resize(size.max(content.len()), b'.');
                    let resp = http
                        .post(&url)
                        .bearer_auth(&token)
                        .header("content-type", "application/x-protobuf")
                        .body(message(2, &content).encode_to_vec())
                        .send()
                        .await
                        .expect("send");
                    assert_eq!(resp.status().as_u16(), 201);
                }
            })
        })
        .collect();

    tokio::time::sleep(stall).await;
    let mut next = vec![0usize; senders_n];
    let mut ids = HashSet::new();
    for _ in 0..senders_n * each {
        let env = socket.envelope().await;
        assert!(
            ids.insert(env.id.clone()),
            "envelope {} delivered twice",
            env.id
        );
        let text = String::from_utf8(env.message.unwrap().content).unwrap();
        let mut parts = text.split(':');
        let (s, i): (usize, usize) = (
            parts.next().unwrap().parse().unwrap(),
            parts.next().unwrap().parse().unwrap(),
        );
        assert_eq!(env.source_user_id, senders[s].id);
        assert_eq!(
            i, next[s],
            "sender {s}: expected message {}, got {i}",
            next[s]
        );
        next[s] += 1;
        socket.ack_each(&[&env.id]).await;
    }
    for t in tasks {
        t.await.expect("sender task");
    }
    socket.sync().await;
    socket.close().await;
    assert_queue_empty(&relay, &senders[0], &bob).await;
}
