//! Requests exactly as the existing clients send them (OkHttp adds a
//! charset to JSON; the web client labels even bodiless GETs as JSON).

use serde_json::json;

use crate::support::*;

#[backend_test]
async fn json_with_charset_and_labelled_bodiless_requests_work() {
    let relay = Relay::start().await;
    let device = Device::new(12);
    let username = unique_name("okhttp");
    let body = device
        .registration_json(&username, "a long enough password")
        .to_string();
    let resp = relay
        .http
        .post(relay.url("/v1/users"))
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .unwrap();
    let auth = expect_json(resp, 201).await;
    let token = auth["token"].as_str().unwrap().to_string();
    let id = jwt_claims(&token)["sub"].as_str().unwrap().to_string();

    let resp = relay
        .http
        .post(relay.url("/v1/sessions"))
        .header("content-type", "application/json; charset=utf-8")
        .body(json!({"username": username, "password": "a long enough password"}).to_string())
        .send()
        .await
        .unwrap();
    expect_json(resp, 200).await;

    // The web client sends Content-Type: application/json on every request.
    let resp = relay
        .http
        .get(relay.url(&format!("/v1/keys/{id}")))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    expect_json(resp, 200).await;

    let resp = relay
        .http
        .put(relay.url("/v1/push-tokens"))
        .bearer_auth(&token)
        .header("content-type", "application/json; charset=utf-8")
        .body(json!({"token": "fcm"}).to_string())
        .send()
        .await
        .unwrap();
    expect_empty(resp, 200).await;

    // The web client URL-encodes the token in the gateway query string.
    let url = format!(
        "ws://{}/v1/gateway?token={}",
        relay.addr(),
        token.replace('.', "%2E")
    );
    let (_ws, resp) = tokio_tungstenite::connect_async(url)
        .await
        .expect("percent-encoded token accepted");
    assert_eq!(resp.status().as_u16(), 101);
}

/// A web client served from another origin (e.g. GitHub Pages) needs CORS:
/// off by default, `--cors-allowed-origins` answers preflights before any
/// routing or authentication and labels answers for the allowed origins.
#[backend_test]
async fn cors_is_off_by_default_and_answers_allowed_origins() {
    let preflight = |relay: &Relay, origin: &str| {
        relay
            .http
            .request(reqwest::Method::OPTIONS, relay.url("/v1/users"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,authorization",
            )
            .send()
    };
    let allow_origin =
        |resp: &reqwest::Response| resp.headers().get("access-control-allow-origin").cloned();

    let relay = Relay::start().await;
    let resp = preflight(&relay, "https://app.example").await.unwrap();
    assert_eq!(allow_origin(&resp), None);

    let relay = Relay::start_with(&["--cors-allowed-origins", "https://app.example"]).await;
    let resp = preflight(&relay, "https://app.example").await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    assert_eq!(allow_origin(&resp).unwrap(), "https://app.example");
    let allowed = resp.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("content-type"),
        "{allowed}"
    );
    // Another origin gets no permission.
    let resp = preflight(&relay, "https://evil.example").await.unwrap();
    assert_eq!(allow_origin(&resp), None);
    // A real request from the allowed origin is labelled, errors included.
    let resp = relay
        .http
        .get(relay.url("/v1/keys/not-a-uuid"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(allow_origin(&resp).unwrap(), "https://app.example");
    let exposed = resp.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(exposed.contains("x-request-id"), "{exposed}");
    expect_error(resp, 404).await;
}
