//! V1 API: info endpoints, push/pull error tables, round trips, keep-alive,
//! rate limits, concurrency.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{Guardian, err, identity, parse_response, random_bytes, raw_request};

#[tokio::test]
async fn info_endpoints_return_documented_json() {
    let g = Guardian::start(&["--threshold", "3"]).await;
    let (st, v) = g.get("/v1/vault/health").await;
    assert_eq!((st, v), (200, json!({"status": "ok", "version": "0.1.0"})));

    let (st, v) = g.get("/v1/vault/status").await;
    assert_eq!(st, 200);
    assert_eq!(v["status"], "ok");
    assert_eq!(v["client_port"], g.server.addr("http").port());
    assert_eq!(v["peer_port"], g.server.addr("peer").port());
    assert_eq!(v["data_dir"], g.data_dir().display().to_string());

    let (st, v) = g.get("/v1/vault/guardians").await;
    assert_eq!(st, 200);
    let http = g.server.addr("http");
    assert_eq!(
        v,
        json!({"guardians": [{"address": http.ip().to_string(), "port": http.port()}], "threshold": 3, "total": 1})
    );
}

#[tokio::test]
async fn push_error_table() {
    let g = Guardian::start(&[]).await;
    let id = identity();
    let ok_share = STANDARD.encode(b"x");
    let rows: Vec<(Vec<u8>, &str)> = vec![
        (Vec::new(), "empty body"),
        (vec![b' '; 1024 * 1024 + 1], "request body too large"),
        (br#"{"share":"eA==","version":1}"#.to_vec(), "missing identity field"),
        (b"not json".to_vec(), "missing identity field"),
        (json!({"identity": id, "version": 1}).to_string().into_bytes(), "missing share field"),
        (json!({"identity": "abc", "share": ok_share, "version": 1}).to_string().into_bytes(), "identity must be exactly 64 hex characters"),
        (json!({"identity": "g".repeat(64), "share": ok_share, "version": 1}).to_string().into_bytes(), "identity must be hex"),
        (json!({"identity": id, "share": "not*base64", "version": 1}).to_string().into_bytes(), "invalid base64 in share"),
        (json!({"identity": id, "share": STANDARD.encode(vec![1u8; 512 * 1024 + 1]), "version": 1}).to_string().into_bytes(), "share data too large"),
        (json!({"identity": id, "share": "", "version": 1}).to_string().into_bytes(), "share data is empty"),
        (json!({"identity": id, "share": ok_share}).to_string().into_bytes(), "missing or invalid version field"),
        (format!(r#"{{"identity":"{id}","share":"{ok_share}","version":-1}}"#).into_bytes(), "missing or invalid version field"),
        (format!(r#"{{"identity":"{id}","share":"{ok_share}","version":1.5}}"#).into_bytes(), "missing or invalid version field"),
        (format!(r#"{{"identity":"{id}","share":"{ok_share}","version":"1"}}"#).into_bytes(), "missing or invalid version field"),
        (format!(r#"{{"identity":"{id}","share":"{ok_share}","version":18446744073709551616}}"#).into_bytes(), "missing or invalid version field"),
    ];
    for (body, expected) in rows {
        let (st, v) = g.post_raw("/v1/vault/push", body).await;
        assert_eq!((st, v), (400, err(expected)), "row {expected}");
    }

    assert_eq!(
        g.push(&id, b"v5", 5).await,
        (200, json!({"status": "stored"}))
    );
    for stale in [5, 4, 0] {
        assert_eq!(
            g.push(&id, b"old", stale).await,
            (
                400,
                err("version must be greater than current stored version")
            )
        );
    }
    assert_eq!(g.pull(&id).await.1["share"], STANDARD.encode(b"v5"));

    for method in [
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let resp = g
            .client
            .request(method, g.url("/v1/vault/push"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            crate::common::status_json(resp).await,
            (405, err("method not allowed"))
        );
    }
}

#[tokio::test]
async fn pull_error_table_and_unknown_paths() {
    let g = Guardian::start(&[]).await;
    let id = identity();
    assert_eq!(
        g.post_raw("/v1/vault/pull", Vec::new()).await,
        (400, err("empty body"))
    );
    let big = format!(r#"{{"identity":"{id}","pad":"{}"}}"#, "x".repeat(4096));
    assert_eq!(
        g.post_raw("/v1/vault/pull", big).await,
        (400, err("request body too large"))
    );
    assert_eq!(
        g.post("/v1/vault/pull", &json!({"id": id})).await,
        (400, err("missing identity field"))
    );
    assert_eq!(
        g.pull("abcd").await,
        (400, err("identity must be exactly 64 hex characters"))
    );
    assert_eq!(
        g.pull(&"Z".repeat(64)).await,
        (400, err("identity must be hex"))
    );
    assert_eq!(g.pull(&id).await, (404, err("share not found")));
    assert_eq!(
        g.get("/v1/vault/pull").await,
        (405, err("method not allowed"))
    );
    assert_eq!(g.get("/v1/vault/nothing").await, (404, err("not found")));
    assert_eq!(g.get("/").await, (404, err("not found")));
    assert_eq!(
        g.post("/v1/vault/health", &json!({})).await,
        (405, err("method not allowed"))
    );
}

#[tokio::test]
async fn oversized_declared_body_is_refused_before_it_is_sent() {
    let g = Guardian::start(&[]).await;
    // Only the headers are sent: the answer must not wait for 2 MB of body.
    let req = "POST /v1/vault/push HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\nConnection: close\r\n\r\n";
    assert_eq!(
        raw_request(g.server.addr("http"), req).await,
        (400, err("request body too large"))
    );
}

#[tokio::test]
async fn v1_round_trips_are_byte_exact() {
    let g = Guardian::start(&[]).await;
    for (i, size) in [1usize, 1024, 512 * 1024].into_iter().enumerate() {
        let id = identity();
        let data = random_bytes(size);
        assert_eq!(g.push(&id, &data, i as u64 + 1).await.0, 200);
        let (st, v) = g.pull(&id).await;
        assert_eq!(st, 200);
        assert_eq!(
            STANDARD.decode(v["share"].as_str().unwrap()).unwrap(),
            data,
            "size {size}"
        );
    }
}

#[tokio::test]
async fn max_u64_version_and_case_insensitive_identity() {
    let g = Guardian::start(&[]).await;
    let id = identity();
    assert_eq!(g.push(&id.to_uppercase(), b"top", u64::MAX).await.0, 200);
    // Same identity in lower case: one directory, and nothing can go above 2^64-1.
    assert_eq!(g.pull(&id).await.1["share"], STANDARD.encode(b"top"));
    assert_eq!(g.push(&id, b"again", u64::MAX).await.0, 400);
    let dirs = std::fs::read_dir(g.data_dir().join("shares"))
        .unwrap()
        .count();
    assert_eq!(dirs, 1);
}

#[tokio::test]
async fn keep_alive_serves_two_requests_on_one_connection() {
    let g = Guardian::start(&[]).await;
    let mut s = TcpStream::connect(g.server.addr("http")).await.unwrap();
    for _ in 0..2 {
        s.write_all(b"GET /v1/vault/health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        // Read one response: headers, then Content-Length bytes.
        loop {
            let mut chunk = [0u8; 1024];
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "connection closed after a keep-alive request");
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.parse().unwrap())
                    })
                    .unwrap();
                if body.len() >= len {
                    break;
                }
            }
        }
        assert!(
            !String::from_utf8_lossy(&buf)
                .to_ascii_lowercase()
                .contains("connection: close")
        );
        assert_eq!(
            parse_response(&buf),
            (200, json!({"status": "ok", "version": "0.1.0"}))
        );
    }
}

#[tokio::test]
async fn slow_header_senders_are_disconnected() {
    let g = Guardian::start(&["--header-timeout-secs", "1"]).await;
    let mut s = TcpStream::connect(g.server.addr("http")).await.unwrap();
    s.write_all(b"GET /v1/vault/health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    // The server gives up on the half-sent request and closes (possibly after a 408).
    let r = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf)).await;
    assert!(r.is_ok(), "slow client still connected");
}

#[tokio::test]
async fn twenty_concurrent_pushes_of_one_version_have_one_winner() {
    let g = Guardian::start(&[]).await;
    let id = identity();
    let results = futures::future::join_all((0..20u8).map(|i| {
        let g = &g;
        let id = id.clone();
        async move { g.push(&id, &[i; 16], 7).await }
    }))
    .await;
    let winners: Vec<_> = results.iter().filter(|(st, _)| *st == 200).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for (st, v) in &results {
        assert!(
            *st == 200
                || (*st == 400 && *v == err("version must be greater than current stored version"))
        );
    }
}

#[tokio::test]
async fn rate_limits_answer_429_with_headers_and_spare_health() {
    let g = Guardian::start(&[
        "--rate-limit-identity-per-min",
        "1",
        "--rate-limit-identity-burst",
        "2",
        "--rate-limit-ip-per-min",
        "1",
        "--rate-limit-ip-burst",
        "4",
    ])
    .await;
    let id = identity();
    let pull = || {
        g.client
            .post(g.url("/v1/vault/pull"))
            .body(json!({"identity": id}).to_string())
            .send()
    };
    for _ in 0..2 {
        let r = pull().await.unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()["x-ratelimit-limit"], "4");
    }
    // Third request of this identity: identity limit (burst 2).
    let r = pull().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["x-ratelimit-limit"], "2");
    assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        err("rate limit exceeded")
    );
    // Fourth request from this IP is still allowed, the fifth is not (burst 4).
    let other = identity();
    assert_eq!(g.pull(&other).await.0, 404);
    let r = g
        .client
        .post(g.url("/v1/vault/pull"))
        .body(json!({"identity": identity()}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["x-ratelimit-limit"], "4");
    assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
    // Health and status are exempt.
    for _ in 0..10 {
        assert_eq!(g.get("/v1/vault/health").await.0, 200);
        assert_eq!(g.get("/v1/vault/status").await.0, 200);
    }
}

#[tokio::test]
async fn slow_bodies_are_cut_off() {
    let g = Guardian::start(&["--body-timeout-secs", "1"]).await;
    // Ten bytes promised, two sent: the guardian answers 408 instead of waiting forever.
    let req = "POST /v1/vault/pull HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\n{\"";
    let mut s = TcpStream::connect(g.server.addr("http")).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf))
        .await
        .expect("answered")
        .unwrap();
    assert_eq!(parse_response(&buf), (408, err("request body timeout")));
}

#[tokio::test]
async fn answers_to_unread_bodies_close_the_connection() {
    let g = Guardian::start(&[]).await;
    // Refused before its body was read: the connection cannot be reused, and says so.
    let r = g
        .client
        .put(g.url("/v2/vault/secrets/x"))
        .header("x-session-token", "bogus")
        .body(vec![b'x'; 10_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["connection"], "close");
    // A request whose body was read keeps the connection open.
    let r = g
        .client
        .post(g.url("/v1/vault/pull"))
        .body(json!({"identity": identity()}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().get("connection").is_none());
}

#[tokio::test]
async fn options_come_from_environment_variables() {
    let dir = obscura_testkit::data_dir();
    let envs = [
        ("OBSCURA_GUARDIAN_THRESHOLD", "5"),
        ("OBSCURA_GUARDIAN_MAX_SECRETS", "1"),
    ];
    let g = Guardian::start_with_env(dir.path(), &[], &envs).await;
    assert_eq!(g.get("/v1/vault/guardians").await.1["threshold"], 5);
    let token = g.session(&identity(), "v2").await;
    assert_eq!(g.put_secret(&token, "first", b"x", 1).await.0, 200);
    assert_eq!(
        g.put_secret(&token, "second", b"x", 1).await,
        (409, err("too many secrets"))
    );
}

#[tokio::test]
async fn clients_that_never_read_are_disconnected() {
    let g = Guardian::start(&["--write-timeout-secs", "1"]).await;
    let id = identity();
    assert_eq!(g.push(&id, &random_bytes(512 * 1024), 1).await.0, 200);
    // 40 pipelined pulls of a 512 KiB share (~28 MB of answers), never read:
    // far more than the socket buffers hold, so the guardian's writes block.
    let body = json!({ "identity": id }).to_string();
    let one = format!(
        "POST /v1/vault/pull HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(g.server.addr("http")).await.unwrap();
    s.write_all(one.repeat(40).as_bytes()).await.unwrap();
    // Time is the subject here: let the write timeout pass.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // A live connection would now deliver all 40 answers and stay open; a
    // closed one ends (EOF or reset) with fewer.
    let mut buf = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf)).await;
    assert!(ended.is_ok(), "connection still open");
    let answers = String::from_utf8_lossy(&buf)
        .matches("HTTP/1.1 200")
        .count();
    assert!(answers < 40, "all {answers} answers delivered");
}
