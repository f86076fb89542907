//! POST /v1/attachments and GET /v1/attachments/{id}: streaming, size limit, TTL.

use std::time::Duration;

use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::support::*;

/// Deterministic pseudo-random bytes (xorshift), so a body can be produced
/// piecewise and compared without holding two copies.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

async fn upload(relay: &Relay, token: &str, body: Vec<u8>) -> reqwest::Response {
    relay
        .http
        .post(relay.url("/v1/attachments"))
        .bearer_auth(token)
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .expect("upload sent")
}

async fn download(relay: &Relay, token: &str, id: &str) -> reqwest::Response {
    relay
        .http
        .get(relay.url(&format!("/v1/attachments/{id}")))
        .bearer_auth(token)
        .send()
        .await
        .expect("download sent")
}

/// Uploads, asserting 201 `{id, expiresAt}`; returns the id.
async fn upload_ok(relay: &Relay, token: &str, body: Vec<u8>, ttl: i64) -> String {
    let before = now_secs();
    let v = expect_json(upload(relay, token, body).await, 201).await;
    let id = v["id"].as_str().expect("id");
    let parsed = uuid::Uuid::parse_str(id).expect("id is a UUID");
    assert_eq!(id, parsed.hyphenated().to_string(), "lower-case hyphenated");
    let expires = v["expiresAt"]
        .as_i64()
        .expect("expiresAt is an integer (UNIX seconds)");
    assert!(
        (before + ttl - 2..=now_secs() + ttl + 2).contains(&expires),
        "expiresAt {expires} ≈ now + {ttl}"
    );
    id.to_string()
}

#[backend_test]
async fn twenty_mib_round_trip_is_byte_exact_and_streamed() {
    const SIZE: usize = 20 * 1024 * 1024;
    let relay = Relay::start().await;
    let alice = relay.register(12).await;
    let bob = relay.register(12).await;
    let peak_before = relay.server.peak_rss_bytes().expect("peak rss");

    let data = pattern(SIZE, 0x5eed);
    let want = Sha256::digest(&data);
    // Streamed from the client too (chunked, 256 KiB pieces).
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(256 * 1024).map(|c| Ok(c.to_vec())).collect();
    drop(data);
    let resp = relay
        .http
        .post(relay.url("/v1/attachments"))
        .bearer_auth(&alice.token)
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(pieces)))
        .send()
        .await
        .unwrap();
    let v = expect_json(resp, 201).await;
    let id = v["id"].as_str().expect("id").to_string();

    // Someone else downloads it (ids are shared inside encrypted messages).
    let resp = download(&relay, &bob.token, &id).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_request_id(resp.headers());
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(ct.as_deref(), Some("application/octet-stream"));
    let mut hasher = Sha256::new();
    let mut len = 0usize;
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("download chunk");
        len += chunk.len();
        hasher.update(&chunk);
    }
    assert_eq!(len, SIZE);
    assert_eq!(hasher.finalize(), want, "byte-exact round trip");

    let peak_after = relay.server.peak_rss_bytes().expect("peak rss");
    let growth = peak_after.saturating_sub(peak_before);
    eprintln!(
        "server peak RSS {} KiB -> {} KiB",
        peak_before / 1024,
        peak_after / 1024
    );
    assert!(
        growth < (SIZE as u64) / 2,
        "server peak RSS grew by {} MiB for a 20 MiB attachment: it is buffered, not streamed",
        growth / (1024 * 1024)
    );
}

#[backend_test]
async fn attachment_round_trip_and_errors() {
    let relay = Relay::start().await;
    let user = relay.register(12).await;
    let data = pattern(100_000, 7);
    let id = upload_ok(&relay, &user.token, data.clone(), 2_592_000).await;
    let resp = download(&relay, &user.token, &id).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), data.as_slice());

    expect_error(
        download(&relay, &user.token, &uuid::Uuid::new_v4().to_string()).await,
        404,
    )
    .await;
    expect_error(download(&relay, &user.token, "not-a-uuid").await, 404).await;
    expect_error(download(&relay, &user.token, "%FF").await, 404).await;
    let resp = relay
        .http
        .get(relay.url(&format!("/v1/attachments/{id}")))
        .send()
        .await
        .unwrap();
    expect_error(resp, 401).await;
    let resp = relay
        .http
        .post(relay.url("/v1/attachments"))
        .body(vec![1u8; 10])
        .send()
        .await
        .unwrap();
    expect_error(resp, 401).await;
}

/// Over --storage-max-size-bytes → 400 JSON, with or without Content-Length,
/// refused before the body is read when the length is declared, and no
/// partial blob is left behind.
#[backend_test]
async fn oversize_attachment_is_400_with_and_without_content_length() {
    const LIMIT: usize = 65_536;
    let relay = Relay::start_with(&["--storage-max-size-bytes", "65536"]).await;
    let user = relay.register(12).await;

    // Exactly at the limit is fine.
    let data = pattern(LIMIT, 9);
    let id = upload_ok(&relay, &user.token, data.clone(), 2_592_000).await;
    assert_eq!(
        download(&relay, &user.token, &id)
            .await
            .bytes()
            .await
            .unwrap()
            .as_ref(),
        data.as_slice()
    );

    // One byte over, with Content-Length (reqwest sets it for a Vec body).
    // Rejected requests go through an unpooled client: whether a connection
    // stays usable after an early rejection is `limits::early_rejections_*`.
    let unpooled = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let resp = unpooled
        .post(relay.url("/v1/attachments"))
        .bearer_auth(&user.token)
        .body(pattern(LIMIT + 1, 10))
        .send()
        .await
        .unwrap();
    expect_error(resp, 400).await;

    let head = |extra: &str| {
        format!(
            "POST /v1/attachments HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/octet-stream\r\n{extra}\r\n",
            user.token
        )
        .into_bytes()
    };
    // A declared 50 MiB with no body sent: answered from the header alone.
    let resp = raw_streaming(relay.addr(), head("Content-Length: 52428800\r\n"), vec![]).await;
    resp.assert_error(&[400]);

    // The same with `Expect: 100-continue` (curl does this for big uploads):
    // the answer is the final 400, never an invitation to send the body.
    let resp = raw_streaming(
        relay.addr(),
        head("Content-Length: 52428800\r\nExpect: 100-continue\r\n"),
        vec![],
    )
    .await;
    resp.assert_error(&[400]);

    // Chunked, no Content-Length: 256 KiB in 8 KiB chunks.
    let chunks: Vec<Vec<u8>> = pattern(256 * 1024, 11)
        .chunks(8192)
        .map(http_chunk)
        .collect();
    let resp = raw_streaming(relay.addr(), head("Transfer-Encoding: chunked\r\n"), chunks).await;
    resp.assert_error(&[400]);

    // Also through a client library's streaming body.
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..32).map(|i| Ok(pattern(8192, i))).collect();
    let resp = unpooled
        .post(relay.url("/v1/attachments"))
        .bearer_auth(&user.token)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(pieces)))
        .send()
        .await;
    if let Ok(resp) = resp {
        expect_error(resp, 400).await;
    } // else: the server closed mid-upload after answering; the raw test above checks the answer.

    // The rejected uploads left no blob behind.
    let only_one = eventually(Duration::from_secs(5), || async {
        relay.attachment_files() == 1
    })
    .await;
    assert!(
        only_one,
        "{} files under attachments/, expected only the accepted one",
        relay.attachment_files()
    );
    // And the server is still serving.
    assert_eq!(
        download(&relay, &user.token, &id).await.status().as_u16(),
        200
    );
}

#[backend_test]
async fn attachments_expire_after_the_ttl() {
    let relay =
        Relay::start_with(&["--attachment-ttl-secs", "3", "--cleanup-interval-secs", "1"]).await;
    let user = relay.register(12).await;
    let id = upload_ok(&relay, &user.token, pattern(10_000, 3), 3).await;
    assert_eq!(
        download(&relay, &user.token, &id).await.status().as_u16(),
        200,
        "available before the TTL"
    );
    assert_eq!(
        relay.attachment_files(),
        1,
        "the blob is stored under <data-dir>/attachments"
    );

    let gone = eventually(Duration::from_secs(20), || async {
        download(&relay, &user.token, &id).await.status().as_u16() == 404
    })
    .await;
    assert!(gone, "attachment still served long after its TTL");
    let deleted = eventually(Duration::from_secs(10), || async {
        relay.attachment_files() == 0
    })
    .await;
    assert!(deleted, "the expired blob was not deleted from disk");
}
