//! PUT /v1/push-tokens.

use serde_json::{Value, json};

use crate::support::*;

async fn put(relay: &Relay, token: Option<&str>, body: Value) -> reqwest::Response {
    let mut req = relay.http.put(relay.url("/v1/push-tokens")).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

#[backend_test]
async fn push_token_is_registered_and_replaced() {
    let relay = Relay::start().await;
    let user = relay.register(12).await;
    expect_empty(
        put(&relay, Some(&user.token), json!({"token": "fcm:abc"})).await,
        200,
    )
    .await;
    expect_empty(
        put(&relay, Some(&user.token), json!({"token": "fcm:def"})).await,
        200,
    )
    .await;
    // Clients may say which service the token is for.
    expect_empty(
        put(
            &relay,
            Some(&user.token),
            json!({"token": "apns-0123", "type": "apns"}),
        )
        .await,
        200,
    )
    .await;
    let body = json!({"token": "fcm-xyz", "platform": "android"});
    expect_empty(put(&relay, Some(&user.token), body).await, 200).await;
}

#[backend_test]
async fn push_token_errors() {
    let relay = Relay::start().await;
    let user = relay.register(12).await;
    expect_error(
        put(&relay, Some(&user.token), json!({"token": ""})).await,
        400,
    )
    .await;
    expect_error(put(&relay, Some(&user.token), json!({})).await, 400).await;
    expect_error(
        put(&relay, Some(&user.token), json!({"token": 5})).await,
        400,
    )
    .await;
    let resp = relay
        .http
        .put(relay.url("/v1/push-tokens"))
        .bearer_auth(&user.token)
        .header("content-type", "application/json")
        .body("{\"token\":")
        .send()
        .await
        .unwrap();
    expect_error(resp, 400).await;
    expect_error(put(&relay, None, json!({"token": "x"})).await, 401).await;
    let resp = relay
        .http
        .get(relay.url("/v1/push-tokens"))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    expect_error(resp, 405).await;
}
