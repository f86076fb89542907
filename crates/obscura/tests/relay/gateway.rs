//! GET /v1/gateway: handshake, PreKeyStatus, one socket per user, robustness.

use futures::SinkExt;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::support::*;

/// Expects the handshake to be refused with `status` and a JSON error.
async fn expect_handshake_refused(relay: &Relay, url: String, status: u16) {
    match tokio_tungstenite::connect_async(url).await {
        Err(tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), status, "handshake status");
            assert!(
                resp.headers().contains_key("x-request-id"),
                "x-request-id on a refused handshake"
            );
            let body = resp.body().clone().unwrap_or_default();
            error_text(&String::from_utf8_lossy(&body));
        }
        Err(e) => panic!("expected an HTTP {status} refusal, got {e}"),
        Ok(_) => panic!("handshake accepted, expected {status}"),
    }
    let _ = relay;
}

#[backend_test]
async fn handshake_requires_a_valid_token() {
    let relay = Relay::start().await;
    let user = relay.register(12).await;
    let base = format!("ws://{}/v1/gateway", relay.addr());
    expect_handshake_refused(&relay, base.clone(), 401).await;
    expect_handshake_refused(&relay, format!("{base}?token="), 401).await;
    expect_handshake_refused(&relay, format!("{base}?token=garbage"), 401).await;
    expect_handshake_refused(&relay, format!("{base}?token={}x", user.token), 401).await;
    // A refresh token is not an access token.
    expect_handshake_refused(&relay, format!("{base}?token={}", user.refresh_token), 401).await;
    let (_ws, resp) = tokio_tungstenite::connect_async(relay.gateway_url(&user.token))
        .await
        .expect("valid token");
    assert_eq!(resp.status().as_u16(), 101);
    assert!(
        resp.headers().contains_key("x-request-id"),
        "x-request-id on the 101 too"
    );
}

#[backend_test]
async fn pre_key_status_on_connect_only_below_threshold() {
    let relay = Relay::start().await;
    let sender = relay.register(12).await;

    // 9 < 10: welcome frame.
    let low = relay.register(9).await;
    relay
        .send_ok(&sender.token, &low.id, &message(2, b"queued"))
        .await;
    let mut socket = relay.connect(&low.token).await;
    let status = socket.pre_key_status().await;
    assert_eq!(
        (status.one_time_pre_key_count, status.min_threshold),
        (9, 10)
    );
    assert_eq!(
        socket.envelope().await.message.unwrap().content,
        b"queued",
        "then the queue"
    );

    // 10 is not below 10: the queued message comes first.
    let enough = relay.register(10).await;
    relay
        .send_ok(&sender.token, &enough.id, &message(2, b"queued"))
        .await;
    let mut socket = relay.connect(&enough.token).await;
    assert_eq!(
        socket.envelope().await.message.unwrap().content,
        b"queued",
        "no PreKeyStatus at the threshold"
    );
}

#[backend_test]
async fn pre_key_status_threshold_is_configurable() {
    let relay = Relay::start_with(&["--prekey-min-threshold", "3"]).await;
    let user = relay.register(2).await;
    let mut socket = relay.connect(&user.token).await;
    let status = socket.pre_key_status().await;
    assert_eq!(
        (status.one_time_pre_key_count, status.min_threshold),
        (2, 3)
    );
}

/// Falling below the threshold during a session (bundles fetched by others)
/// pushes a fresh PreKeyStatus.
#[backend_test]
async fn pre_key_status_pushed_when_crossing_the_threshold() {
    let relay = Relay::start().await;
    let sender = relay.register(12).await;
    let user = relay.register(11).await;
    relay
        .send_ok(&sender.token, &user.id, &message(2, b"fence"))
        .await;
    let mut socket = relay.connect(&user.token).await;
    assert_eq!(
        socket.envelope().await.message.unwrap().content,
        b"fence",
        "11 keys: no welcome status"
    );

    relay.bundle(&user.id).await; // 10 left: not below
    relay.bundle(&user.id).await; // 9 left: crossed
    let status = socket.pre_key_status().await;
    assert_eq!(
        (status.one_time_pre_key_count, status.min_threshold),
        (9, 10)
    );

    // Refilled above the threshold, then drained below it again: a fresh crossing.
    let mut device = user.device;
    let body = device.refill_json(2, 5); // 14 keys
    expect_empty(relay.upload_keys(&user.token, &body).await, 200).await;
    for _ in 0..4 {
        relay.bundle(&user.id).await; // down to 10
    }
    relay
        .send_ok(&sender.token, &user.id, &message(2, b"fence 2"))
        .await;
    assert_eq!(
        socket.envelope().await.message.unwrap().content,
        b"fence 2",
        "no status at 10 keys"
    );
    relay.bundle(&user.id).await; // 9: crossed again
    let status = socket.pre_key_status().await;
    assert_eq!(
        (status.one_time_pre_key_count, status.min_threshold),
        (9, 10)
    );
}

#[backend_test]
async fn pre_key_status_with_no_keys_at_all() {
    let relay = Relay::start().await;
    let user = relay.register(0).await;
    let mut socket = relay.connect(&user.token).await;
    let status = socket.pre_key_status().await;
    assert_eq!(
        (status.one_time_pre_key_count, status.min_threshold),
        (0, 10)
    );
}

/// Live sockets per user the relay keeps (`fanout::local::MAX_SESSIONS_PER_USER`).
const SESSIONS_PER_USER: usize = 4;

/// Two tabs, or a phone and a desktop page: every socket of a user gets
/// every message (clients deduplicate by id), and the first ACK deletes it.
#[backend_test]
async fn several_connections_of_one_user_each_receive_every_message() {
    let relay = Relay::start().await;
    let sender = relay.register(12).await;
    let user = relay.register(12).await;
    let mut first = relay.connect(&user.token).await;
    let mut second = relay.connect(&user.token).await;
    relay
        .send_ok(&sender.token, &user.id, &message(2, b"to both"))
        .await;
    let a = first.envelope().await;
    let b = second.envelope().await;
    assert_eq!(
        (a.id.as_str(), a.message.unwrap().content),
        (b.id.as_str(), b"to both".to_vec())
    );
    second.ack_each(&[&b.id]).await;
    second.sync().await;
    assert!(first.is_open().await && second.is_open().await);
    first.close().await;
    second.close().await;
    // Acknowledged once, gone for every socket.
    let mut third = relay.connect(&user.token).await;
    relay
        .send_ok(&sender.token, &user.id, &message(2, b"fence"))
        .await;
    assert_eq!(third.envelope().await.message.unwrap().content, b"fence");
}

/// Past the per-user limit the oldest socket is closed (4000 `replaced`),
/// so a client reconnecting in a loop cannot pile up sessions.
#[backend_test]
async fn past_the_limit_a_new_connection_replaces_the_oldest() {
    let relay = Relay::start().await;
    let sender = relay.register(12).await;
    let user = relay.register(12).await;
    let mut sockets = Vec::new();
    for _ in 0..SESSIONS_PER_USER {
        sockets.push(relay.connect(&user.token).await);
    }
    let mut newest = relay.connect(&user.token).await;
    let close = sockets[0]
        .expect_closed()
        .await
        .expect("a close frame, not a dropped connection");
    assert_eq!(u16::from(close.code), 4000);
    assert_eq!(close.reason.as_str(), "replaced");
    for socket in &mut sockets[1..] {
        assert!(socket.is_open().await);
    }
    relay
        .send_ok(&sender.token, &user.id, &message(2, b"to the new socket"))
        .await;
    assert_eq!(
        newest.envelope().await.message.unwrap().content,
        b"to the new socket"
    );
}

/// Garbage from a client never takes the server down; a fresh connection works.
#[backend_test]
async fn malformed_frames_do_not_break_the_server() {
    let relay = Relay::start().await;
    let sender = relay.register(12).await;
    let user = relay.register(12).await;
    let mut socket = relay.connect(&user.token).await;
    let _ = socket
        .ws
        .send(Message::binary(vec![0xff, 0xff, 0xff, 0x01, 0x02]))
        .await;
    let _ = socket.ws.send(Message::text("hello")).await;
    let _ = socket.ws.send(Message::binary(vec![0u8; 70_000])).await;
    drop(socket);

    let mut socket = relay.connect(&user.token).await;
    relay
        .send_ok(&sender.token, &user.id, &message(2, b"still works"))
        .await;
    assert_eq!(
        socket.envelope().await.message.unwrap().content,
        b"still works"
    );
}

/// What the replaced socket received but never acknowledged is delivered
/// to the new one.
/// A new socket gets what is still unacknowledged, while the old one lives.
#[backend_test]
async fn a_new_connection_gets_what_is_unacknowledged() {
    let relay = Relay::start().await;
    let sender = relay.register(12).await;
    let user = relay.register(12).await;
    let mut first = relay.connect(&user.token).await;
    relay
        .send_ok(&sender.token, &user.id, &message(2, b"m1"))
        .await;
    let env = first.envelope().await;
    let mut second = relay.connect(&user.token).await;
    assert_eq!(second.envelope().await.id, env.id);
    assert!(first.is_open().await);
}

/// Simultaneous connections of one user settle on the per-user limit of
/// live sockets, and a message reaches every survivor.
#[backend_test]
async fn concurrent_connections_settle_on_the_per_user_limit() {
    let relay = Relay::start().await;
    let sender = relay.register(12).await;
    let user = relay.register(12).await;
    let total = SESSIONS_PER_USER + 2;
    let mut sockets =
        futures::future::join_all((0..total).map(|_| relay.connect(&user.token))).await;
    let mut open = vec![true; sockets.len()];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        for (socket, open) in sockets.iter_mut().zip(open.iter_mut()) {
            if *open {
                *open = socket.is_open().await;
            }
        }
        let n = open.iter().filter(|o| **o).count();
        assert!(n >= SESSIONS_PER_USER, "too many closed: {open:?}");
        if n == SESSIONS_PER_USER {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "more than {SESSIONS_PER_USER} sockets stayed open for one user: {open:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    relay
        .send_ok(&sender.token, &user.id, &message(2, b"to the survivors"))
        .await;
    for (socket, _) in sockets.iter_mut().zip(&open).filter(|(_, o)| **o) {
        assert_eq!(
            socket.envelope().await.message.unwrap().content,
            b"to the survivors"
        );
    }
}

/// Besides `?token=`, the relay accepts `Authorization: Bearer` on the
/// handshake (server author's note in the contract); both are checked.
#[backend_test]
async fn handshake_accepts_a_bearer_header() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let relay = Relay::start().await;
    let user = relay.register(12).await;
    let url = format!("ws://{}/v1/gateway", relay.addr());
    let mut req = url.clone().into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", user.token).parse().unwrap(),
    );
    let (_ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("bearer header accepted");
    assert_eq!(resp.status().as_u16(), 101);

    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}x", user.token).parse().unwrap(),
    );
    match tokio_tungstenite::connect_async(req).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 401),
        other => panic!(
            "a bad bearer must be refused with 401, got {:?}",
            other.map(|(_, r)| r.status())
        ),
    }
}

/// Idle sockets are cheap: 200 of them must not cost the server anywhere
/// near tungstenite's default buffers (128 KiB read buffer per connection).
#[backend_test]
async fn idle_sockets_stay_cheap() {
    const SOCKETS: u64 = 200;
    let relay = Relay::start().await;
    let mut users = Vec::new();
    for _ in 0..SOCKETS {
        users.push(relay.register(12).await);
    }
    // Warm up one connection so one-time allocations are not counted.
    let warm = relay.connect(&users[0].token).await;
    warm.close().await;
    let before = relay.server.rss_bytes().expect("rss");
    let mut sockets = Vec::new();
    for user in &users {
        let mut socket = relay.connect(&user.token).await;
        socket.sync().await;
        sockets.push(socket);
    }
    let after = relay.server.rss_bytes().expect("rss");
    let per_socket = after.saturating_sub(before) / SOCKETS;
    eprintln!(
        "server RSS {} KiB -> {} KiB: {} B per idle socket",
        before / 1024,
        after / 1024,
        per_socket
    );
    assert!(
        per_socket < 48 * 1024,
        "{per_socket} bytes of server memory per idle WebSocket"
    );
}

/// WebSockets over HTTP/2 (RFC 8441 extended CONNECT, cleartext with prior
/// knowledge): the same gateway, the same token check, the same frames.
#[backend_test]
async fn gateway_works_over_http2_extended_connect() {
    use futures::StreamExt;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use obscura_proto::web_socket_frame::Payload;
    use prost::Message as _;
    use tokio_tungstenite::tungstenite::protocol::Role;

    let relay = Relay::start().await;
    let sender = relay.register(12).await;
    let user = relay.register(12).await;

    let tcp = tokio::net::TcpStream::connect(relay.addr()).await.unwrap();
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("HTTP/2 with prior knowledge");
    tokio::spawn(conn);
    let connect = |token: String| {
        hyper::Request::builder()
            .method(hyper::Method::CONNECT)
            .uri(format!("http://{}/v1/gateway?token={token}", relay.addr()))
            .header("sec-websocket-version", "13")
            .extension(hyper::ext::Protocol::from_static("websocket"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };

    let refused = h2
        .send_request(connect(format!("{}x", user.token)))
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401, "bad token over HTTP/2");

    let resp = h2.send_request(connect(user.token.clone())).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "extended CONNECT accepted");
    let upgraded = hyper::upgrade::on(resp).await.expect("HTTP/2 stream");
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        TokioIo::new(upgraded),
        Role::Client,
        None,
    )
    .await;

    relay
        .send_ok(&sender.token, &user.id, &message(2, b"over h2"))
        .await;
    let envelope = loop {
        let msg = tokio::time::timeout(TIMEOUT, ws.next())
            .await
            .expect("an envelope within the timeout")
            .expect("stream open")
            .expect("frame");
        let Message::Binary(bytes) = msg else {
            continue;
        };
        match obscura_proto::WebSocketFrame::decode(bytes.as_ref())
            .unwrap()
            .payload
        {
            Some(Payload::Envelope(e)) => break e,
            _ => continue,
        }
    };
    assert_eq!(envelope.message.unwrap().content, b"over h2");
    let ack = obscura_proto::WebSocketFrame {
        payload: Some(Payload::Ack(obscura_proto::AckMessage {
            message_id: envelope.id.clone(),
            message_ids: vec![],
        })),
    };
    ws.send(Message::Binary(ack.encode_to_vec().into()))
        .await
        .unwrap();

    // Closing flushes the session's ACKs before a successor may start.
    ws.close(None).await.unwrap();
    while let Ok(Some(Ok(_))) = tokio::time::timeout(TIMEOUT, ws.next()).await {}
    // Acknowledged over HTTP/2: an HTTP/1.1 socket gets only what follows.
    let mut again = relay.connect(&user.token).await;
    relay
        .send_ok(&sender.token, &user.id, &message(2, b"fence"))
        .await;
    assert_eq!(again.envelope().await.message.unwrap().content, b"fence");
}
