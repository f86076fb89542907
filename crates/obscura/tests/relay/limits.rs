//! Rate limits, X-Forwarded-For trust, request ids, unknown routes, JSON
//! rejections, body limits on JSON routes, raw path tricks.

use std::collections::HashSet;

use serde_json::json;
use tokio_tungstenite::tungstenite;

use crate::support::*;

/// A 429 carries `retry-after` in whole seconds ≥ 1, the request id and a JSON error.
async fn assert_429(resp: reqwest::Response, request_id: &str) {
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap_or("").to_string());
    let echoed = resp
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap_or("").to_string());
    expect_error(resp, 429).await;
    let retry = retry.expect("429 carries retry-after");
    let secs: u64 = retry
        .parse()
        .unwrap_or_else(|_| panic!("retry-after is whole seconds, got {retry:?}"));
    assert!(secs >= 1, "retry-after >= 1");
    assert_eq!(
        echoed.as_deref(),
        Some(request_id),
        "client request id echoed on 429"
    );
}

/// Sends `make()` up to `max` times; returns how many were let through
/// before the first 429, asserting that 429's shape.
async fn requests_until_429<F, Fut>(max: usize, mut make: F) -> usize
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = reqwest::Result<reqwest::Response>>,
{
    for i in 0..max {
        let rid = format!("rl-{}", uuid::Uuid::new_v4());
        let resp = make(rid.clone()).await.expect("request sent");
        if resp.status().as_u16() == 429 {
            assert_429(resp, &rid).await;
            return i;
        }
    }
    panic!("no 429 after {max} requests");
}

#[backend_test]
async fn auth_endpoints_are_rate_limited_per_ip() {
    let relay = Relay::start_with(&[
        "--auth-rate-limit-per-sec",
        "1",
        "--auth-rate-limit-burst",
        "2",
    ])
    .await;
    let login = |rid: String| {
        relay
            .http
            .post(relay.url("/v1/sessions"))
            .header("x-request-id", rid)
            .json(&json!({"username": "nobody-here", "password": "wrong password"}))
            .send()
    };
    let passed = requests_until_429(6, login).await;
    assert!(
        passed >= 2,
        "the burst of 2 is allowed before limiting ({passed} passed)"
    );

    let register = |rid: String| {
        let body = Device::new(1).registration_json(&unique_name("rl"), "long enough password");
        relay
            .http
            .post(relay.url("/v1/users"))
            .header("x-request-id", rid)
            .json(&body)
            .send()
    };
    requests_until_429(6, register).await;

    // The strict auth bucket does not spill over onto other routes, not
    // even token refresh (no password is hashed there).
    let resp = relay.get_bundle(&uuid::Uuid::new_v4().to_string()).await;
    expect_error(resp, 404).await;
    let resp = refresh(&relay, uuid::Uuid::new_v4().to_string())
        .await
        .unwrap();
    expect_error(resp, 401).await;
}

fn refresh(
    relay: &Relay,
    rid: String,
) -> impl std::future::Future<Output = reqwest::Result<reqwest::Response>> {
    relay
        .http
        .post(relay.url("/v1/sessions/refresh"))
        .header("x-request-id", rid)
        .json(&json!({"refreshToken": "not a refresh token"}))
        .send()
}

#[backend_test]
async fn bundle_fetch_refresh_and_gateway_handshake_are_rate_limited_per_ip() {
    let relay =
        Relay::start_with(&["--ip-rate-limit-per-sec", "1", "--ip-rate-limit-burst", "3"]).await;
    let user = relay.register(12).await;
    let passed = requests_until_429(8, |rid| {
        relay
            .http
            .get(relay.url(&format!("/v1/keys/{}", user.id)))
            .header("x-request-id", rid)
            .send()
    })
    .await
    .min(3);
    assert_eq!(passed, 3, "the burst of 3 is allowed");
    // Token refresh shares the per-IP bucket, which is now empty.
    requests_until_429(4, |rid| refresh(&relay, rid)).await;

    let mut sockets = Vec::new();
    for attempt in 0..8 {
        match relay.try_connect(&user.token).await {
            Ok(gw) => sockets.push(gw),
            Err(tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status().as_u16(), 429, "handshake refusal status");
                let retry = resp
                    .headers()
                    .get("retry-after")
                    .expect("retry-after on 429")
                    .to_str()
                    .unwrap();
                assert!(
                    retry.parse::<u64>().is_ok_and(|s| s >= 1),
                    "retry-after {retry:?}"
                );
                assert!(resp.headers().contains_key("x-request-id"));
                error_text(&String::from_utf8_lossy(
                    &resp.body().clone().unwrap_or_default(),
                ));
                return;
            }
            Err(e) => panic!("attempt {attempt}: unexpected error {e}"),
        }
    }
    panic!("gateway handshake never rate limited");
}

#[backend_test]
async fn authenticated_routes_are_rate_limited_per_user() {
    let relay = Relay::start_with(&["--rate-limit-per-sec", "1", "--rate-limit-burst", "3"]).await;
    let alice = relay.register(12).await;
    let bob = relay.register(12).await;
    let put = |token: String, rid: String| {
        relay
            .http
            .put(relay.url("/v1/push-tokens"))
            .bearer_auth(token)
            .header("x-request-id", rid)
            .json(&json!({"token": "t"}))
            .send()
    };
    let passed = requests_until_429(8, |rid| put(alice.token.clone(), rid)).await;
    assert!(passed >= 3, "the burst of 3 is allowed ({passed} passed)");
    // Without a client id, the 429 still carries a generated one.
    let resp = relay
        .http
        .put(relay.url("/v1/push-tokens"))
        .bearer_auth(&alice.token)
        .json(&json!({"token": "t"}))
        .send()
        .await
        .unwrap();
    let rid = resp
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_string());
    expect_error(resp, 429).await;
    assert!(
        uuid::Uuid::parse_str(&rid.unwrap()).is_ok(),
        "generated x-request-id on 429 is a UUID"
    );
    // Bob has his own bucket.
    expect_empty(put(bob.token.clone(), "bob".into()).await.unwrap(), 200).await;

    // retry-after is honest: once it has passed (plus slack), alice may go on.
    let recovered = eventually(std::time::Duration::from_secs(3), || async {
        put(alice.token.clone(), "again".into())
            .await
            .unwrap()
            .status()
            .as_u16()
            == 200
    })
    .await;
    assert!(
        recovered,
        "still limited well after retry-after at 1 request/s"
    );
}

#[backend_test]
async fn x_forwarded_for_is_ignored_from_an_untrusted_peer() {
    let relay =
        Relay::start_with(&["--ip-rate-limit-per-sec", "1", "--ip-rate-limit-burst", "2"]).await;
    let user = relay.register(12).await;
    let mut n = 0;
    let passed = requests_until_429(6, |rid| {
        n += 1;
        relay
            .http
            .get(relay.url(&format!("/v1/keys/{}", user.id)))
            .header("x-request-id", rid)
            .header("x-forwarded-for", format!("198.51.100.{n}"))
            .send()
    })
    .await;
    assert!(
        passed <= 3,
        "a spoofed X-Forwarded-For bought {passed} requests past a burst of 2"
    );
}

#[backend_test]
async fn x_forwarded_for_is_honoured_from_a_trusted_proxy() {
    let relay = Relay::start_with(&[
        "--ip-rate-limit-per-sec",
        "1",
        "--ip-rate-limit-burst",
        "2",
        "--trusted-proxies",
        "127.0.0.1/32",
    ])
    .await;
    let user = relay.register(12).await;
    let fetch = |xff: String| {
        relay
            .http
            .get(relay.url(&format!("/v1/keys/{}", user.id)))
            .header("x-forwarded-for", xff)
            .send()
    };
    // Distinct clients behind the proxy: separate buckets.
    for i in 0..8 {
        let resp = fetch(format!("203.0.113.{i}")).await.unwrap();
        assert_eq!(
            resp.status().as_u16(),
            200,
            "client {i} behind the trusted proxy has its own bucket"
        );
    }
    // One client that prepends made-up entries: the rightmost untrusted entry counts.
    let mut limited = false;
    for i in 0..6 {
        let resp = fetch(format!("192.0.2.{i}, 203.0.113.200")).await.unwrap();
        if resp.status().as_u16() == 429 {
            assert!(i >= 2, "burst of 2 honoured");
            limited = true;
            break;
        }
    }
    assert!(
        limited,
        "prepending fake X-Forwarded-For entries escaped the rate limit"
    );
}

#[backend_test]
async fn request_id_is_echoed_or_generated_on_every_response() {
    let relay = Relay::start().await;
    let user = relay.register(12).await;
    let id = user.id.clone();
    type Req<'a> = Box<dyn Fn() -> reqwest::RequestBuilder + 'a>;
    let requests: Vec<(&str, u16, Req<'_>)> = vec![
        (
            "200",
            200,
            Box::new(|| relay.http.get(relay.url(&format!("/v1/keys/{id}")))),
        ),
        (
            "201",
            201,
            Box::new(|| {
                relay
                    .http
                    .post(relay.url(&format!("/v1/messages/{id}")))
                    .bearer_auth(&user.token)
                    .header("content-type", "application/octet-stream")
                    .body(vec![0x08, 0x02])
            }),
        ),
        (
            "400",
            400,
            Box::new(|| {
                relay
                    .http
                    .post(relay.url("/v1/users"))
                    .header("content-type", "application/json")
                    .body("{")
            }),
        ),
        (
            "401",
            401,
            Box::new(|| {
                relay
                    .http
                    .put(relay.url("/v1/push-tokens"))
                    .json(&json!({"token": "t"}))
            }),
        ),
        (
            "404",
            404,
            Box::new(|| relay.http.get(relay.url("/v1/no-such-route"))),
        ),
        (
            "405",
            405,
            Box::new(|| relay.http.get(relay.url("/v1/users"))),
        ),
    ];
    let mut generated = HashSet::new();
    for (what, status, make) in &requests {
        let sent = format!("client-{what}-{}", uuid::Uuid::new_v4());
        let resp = make().header("x-request-id", &sent).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), *status, "{what}");
        assert_eq!(
            resp.headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok()),
            Some(sent.as_str()),
            "{what} echoes"
        );

        let resp = make().send().await.unwrap();
        assert_eq!(resp.status().as_u16(), *status, "{what}");
        let rid = resp
            .headers()
            .get("x-request-id")
            .expect("generated x-request-id")
            .to_str()
            .unwrap()
            .to_string();
        let parsed = uuid::Uuid::parse_str(&rid)
            .unwrap_or_else(|_| panic!("{what}: generated id {rid:?} is a UUID"));
        assert_eq!(parsed.get_version_num(), 4, "UUID v4");
        assert!(generated.insert(rid), "generated ids are unique");
    }
    // An id that is not 1–128 characters of [A-Za-z0-9._:-] is not echoed
    // (nor logged): a fresh UUID replaces it.
    for unusable in ["a b", "x\u{7f}y", "é", &"x".repeat(129)] {
        let resp = requests[0].2()
            .header("x-request-id", unusable)
            .send()
            .await;
        // reqwest refuses some header values itself; those never reach us.
        let Ok(resp) = resp else { continue };
        let rid = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        assert!(
            uuid::Uuid::parse_str(&rid).is_ok(),
            "{unusable:?} → {rid:?}"
        );
    }
}

/// A declared body far over any JSON limit is refused from the header, before
/// a byte of it is read (raw socket: the body is never sent).
#[backend_test]
async fn oversized_json_body_is_refused_from_content_length() {
    let relay = Relay::start().await;
    let resp = raw_exchange(
        relay.addr(),
        b"POST /v1/users HTTP/1.1\r\nHost: r\r\nX-Request-Id: raw-413\r\nContent-Type: application/json\r\n\
          Content-Length: 67108864\r\nConnection: close\r\n\r\n",
    )
    .await;
    resp.assert_error(&[400, 413]);
    assert_eq!(resp.header("x-request-id"), Some("raw-413"));

    let resp = raw_exchange(
        relay.addr(),
        b"POST /v1/users HTTP/1.1\r\nHost: r\r\nContent-Type: application/json\r\n\
          Content-Length: 67108864\r\nConnection: close\r\n\r\n",
    )
    .await;
    resp.assert_error(&[400, 413]);
    let rid = resp.header("x-request-id").unwrap_or_default();
    assert!(
        uuid::Uuid::parse_str(rid).is_ok(),
        "generated x-request-id {rid:?} is a UUID"
    );
}

#[backend_test]
async fn unknown_routes_and_wrong_methods_are_json() {
    let relay = Relay::start().await;
    for path in [
        "/",
        "/v1",
        "/v1/nope",
        "/v2/users",
        "/v1/users/extra/segments",
    ] {
        let resp = relay.http.get(relay.url(path)).send().await.unwrap();
        expect_error(resp, 404).await;
    }
    let id = uuid::Uuid::new_v4();
    let cases = [
        (reqwest::Method::GET, "/v1/users".to_string()),
        (reqwest::Method::DELETE, "/v1/users".to_string()),
        (reqwest::Method::GET, "/v1/sessions".to_string()),
        (reqwest::Method::GET, "/v1/sessions/refresh".to_string()),
        (reqwest::Method::GET, "/v1/keys".to_string()),
        (reqwest::Method::POST, format!("/v1/keys/{id}")),
        (reqwest::Method::GET, format!("/v1/messages/{id}")),
        (reqwest::Method::DELETE, format!("/v1/attachments/{id}")),
        (reqwest::Method::POST, "/v1/push-tokens".to_string()),
    ];
    for (method, path) in cases {
        let resp = relay
            .http
            .request(method.clone(), relay.url(&path))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 405, "{method} {path}");
        expect_error(resp, 405).await;
    }
}

#[backend_test]
async fn json_rejections_are_json_errors() {
    let relay = Relay::start().await;
    let post = |path: &str, ct: Option<&str>, body: &'static str| {
        let mut req = relay.http.post(relay.url(path)).body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        req.send()
    };
    let json_ct = Some("application/json");
    expect_error(post("/v1/users", json_ct, "").await.unwrap(), 400).await;
    expect_error(post("/v1/users", json_ct, "[]").await.unwrap(), 400).await;
    expect_error(
        post("/v1/users", json_ct, "{\"username\": 5}")
            .await
            .unwrap(),
        400,
    )
    .await;
    expect_error(
        post(
            "/v1/sessions",
            json_ct,
            "{\"username\": \"a\", \"password\": ",
        )
        .await
        .unwrap(),
        400,
    )
    .await;
    expect_error(
        post("/v1/sessions/refresh", json_ct, "{}").await.unwrap(),
        400,
    )
    .await;
    // A body without a JSON content type: rejected, but as JSON.
    expect_error_in(post("/v1/users", None, "{}").await.unwrap(), &[400, 415]).await;
    expect_error_in(
        post("/v1/sessions", Some("text/plain"), "{}")
            .await
            .unwrap(),
        &[400, 415],
    )
    .await;
}

/// Raw bytes, because HTTP libraries resolve `..` before sending.
#[backend_test]
async fn path_traversal_reaches_nothing() {
    let relay = Relay::start().await;
    let user = relay.register(12).await;
    for path in [
        "/v1/attachments/../../jwt-secret",
        "/v1/attachments/..%2f..%2fjwt-secret",
        "/v1/attachments/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/v1/attachments/..",
        "/v1/keys/..%2f..%2fusers",
    ] {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: r\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            user.token
        );
        let resp = raw_exchange(relay.addr(), req.as_bytes()).await;
        assert!(
            resp.status == 404 || resp.status == 400,
            "{path}: got {}",
            resp.status
        );
        resp.assert_error(&[400, 404]);
    }
}

/// After answering an over-limit request without reading its body, the
/// server either says `Connection: close` or keeps the connection usable;
/// silently dropping it makes a keep-alive client's next request fail.
#[backend_test]
async fn early_rejections_leave_the_connection_usable_or_say_close() {
    use tokio::io::AsyncWriteExt;
    let relay = Relay::start_with(&[
        "--storage-max-size-bytes",
        "65536",
        "--max-message-bytes",
        "4096",
    ])
    .await;
    let alice = relay.register(12).await;
    let bob = relay.register(12).await;
    let cases = [
        (
            "/v1/attachments".to_string(),
            65_537usize,
            true,
            &[400u16][..],
        ),
        (
            format!("/v1/messages/{}", bob.id),
            4_097,
            true,
            &[400, 413][..],
        ),
        // Unauthenticated: refused before the (small, legal) body is read.
        ("/v1/attachments".to_string(), 1_000, false, &[401][..]),
        (format!("/v1/messages/{}", bob.id), 1_000, false, &[401][..]),
    ];
    let mut failures = Vec::new();
    for (path, len, authenticated, statuses) in cases {
        let mut stream = tokio::net::TcpStream::connect(relay.addr()).await.unwrap();
        let auth = if authenticated {
            format!("Authorization: Bearer {}\r\n", alice.token)
        } else {
            String::new()
        };
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: r\r\n{auth}\
             Content-Type: application/octet-stream\r\nContent-Length: {len}\r\n\r\n"
        )
        .into_bytes();
        request.extend(std::iter::repeat_n(0x41u8, len));
        stream.write_all(&request).await.unwrap();
        let first = tokio::time::timeout(TIMEOUT, read_response(&mut stream))
            .await
            .unwrap()
            .unwrap();
        first.assert_error(statuses);
        if first
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            continue;
        }
        // Keep-alive was implied: the next request on this connection must work.
        let probe = format!("GET /v1/keys/{} HTTP/1.1\r\nHost: r\r\n\r\n", bob.id);
        let sent = stream.write_all(probe.as_bytes()).await;
        let second = tokio::time::timeout(TIMEOUT, read_response(&mut stream)).await;
        if !(sent.is_ok() && matches!(&second, Ok(Ok(r)) if r.status == 200)) {
            failures.push(format!(
                "{path}: {} without `Connection: close`, then the connection was dropped ({sent:?}, {second:?})",
                first.status
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
