//! Connection handling as real clients meet it: answers sent before a
//! request body was read reach a client that is still sending it.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// How often each early rejection is tried: a reset is a race, so one
/// lucky pass proves little.
const ROUNDS: usize = 10;

/// Sends `body` (with its Content-Length) ROUNDS times through one pooled
/// reqwest client and expects the JSON error every time, never a broken pipe
/// or connection reset.
async fn rejected_every_time(
    relay: &Relay,
    path: &str,
    token: Option<&str>,
    body: &[u8],
    status: u16,
) {
    for round in 0..ROUNDS {
        let mut req = relay
            .http
            .post(relay.url(path))
            .header("content-type", "application/octet-stream")
            .body(body.to_vec());
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) => panic!("{path}, round {round}: no answer, {e:?}"),
        };
        expect_error_in(resp, &[status]).await;
    }
}

#[backend_test]
async fn early_rejections_reach_a_client_still_sending_its_body() {
    const LIMIT: usize = 1024 * 1024;
    let limit = LIMIT.to_string();
    let relay = Relay::start_with(&[
        "--storage-max-size-bytes",
        &limit,
        "--max-message-bytes",
        &limit,
    ])
    .await;
    let alice = relay.register(12).await;
    let bob = relay.register(12).await;
    let over = vec![0x41u8; 3 * LIMIT];
    rejected_every_time(&relay, "/v1/attachments", Some(&alice.token), &over, 400).await;
    let to_bob = format!("/v1/messages/{}", bob.id);
    rejected_every_time(&relay, &to_bob, Some(&alice.token), &over, 400).await;
    // Unauthenticated: refused before any of the 5 MiB is read.
    let upload = vec![0x42u8; 5 * 1024 * 1024];
    rejected_every_time(&relay, "/v1/attachments", None, &upload, 401).await;
    // The connections that lingered did not take the relay down with them.
    let resp = relay
        .http
        .get(relay.url(&format!("/v1/keys/{}", bob.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// Reads until EOF (or a reset): the server closed the connection.
async fn expect_server_close<R: AsyncRead + Unpin>(stream: &mut R) {
    let mut sink = [0u8; 1024];
    let closed = tokio::time::timeout(TIMEOUT, async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the connection was not closed");
}

/// A body that trickles in (slow-loris) is cut off after the body-read
/// timeout with a JSON 408, and the connection is closed.
#[backend_test]
async fn a_trickling_body_is_answered_408_and_closed() {
    let relay = Relay::start_with(&["--body-read-timeout-secs", "1"]).await;
    let alice = relay.register(12).await;
    let bob = relay.register(12).await;
    for path in [
        "/v1/attachments".to_string(),
        format!("/v1/messages/{}", bob.id),
    ] {
        let stream = TcpStream::connect(relay.addr()).await.unwrap();
        let (mut reader, mut writer) = stream.into_split();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: r\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n",
            alice.token
        );
        writer.write_all(head.as_bytes()).await.unwrap();
        // One byte every 100 ms: far from the declared 100000 in the
        // test's lifetime; stops once the server is gone.
        let trickle = tokio::spawn(async move {
            for _ in 0..600 {
                if writer.write_all(b"x").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let resp = tokio::time::timeout(TIMEOUT, read_response(&mut reader))
            .await
            .unwrap_or_else(|_| panic!("{path}: no answer to a trickling body"))
            .unwrap();
        resp.assert_error(&[408]);
        assert_eq!(resp.header("connection"), Some("close"), "{path}");
        expect_server_close(&mut reader).await;
        trickle.abort();
    }
}

/// A kept-alive connection with no request in progress is closed after the
/// keep-alive timeout.
#[backend_test]
async fn idle_keep_alive_connections_are_closed() {
    let relay = Relay::start_with(&["--keep-alive-timeout-secs", "1"]).await;
    let mut stream = TcpStream::connect(relay.addr()).await.unwrap();
    stream
        .write_all(b"GET /openapi.yaml HTTP/1.1\r\nHost: r\r\n\r\n")
        .await
        .unwrap();
    let resp = tokio::time::timeout(TIMEOUT, read_response(&mut stream))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("connection"), None, "kept alive");
    // hyper's own header timer (30 s) would close it only after TIMEOUT.
    expect_server_close(&mut stream).await;
}

/// The keep-alive timeout is for HTTP connections between requests: an
/// idle WebSocket session outlives it.
#[backend_test]
async fn websockets_are_not_subject_to_the_keep_alive_timeout() {
    let relay = Relay::start_with(&["--keep-alive-timeout-secs", "1"]).await;
    let alice = relay.register(12).await;
    let bob = relay.register(12).await;
    let mut gateway = relay.connect(&bob.token).await;
    gateway.sync().await;
    // No event to wait for: the claim is that nothing happens meanwhile.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    relay
        .send_ok(&alice.token, &bob.id, &message(1, b"still here"))
        .await;
    let envelope = gateway.envelope().await;
    assert_eq!(
        envelope.message.map(|m| m.content),
        Some(b"still here".to_vec())
    );
}
