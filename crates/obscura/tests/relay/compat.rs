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
