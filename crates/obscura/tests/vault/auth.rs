//! Challenge/session authentication: happy path, tampering, replay, expiry,
//! and V1's optional Bearer token.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::common::{Guardian, err, identity, redeem_body};

async fn challenge(g: &Guardian, id: &str, prefix: &str) -> Value {
    let (st, ch) = g
        .post(
            &format!("/{prefix}/vault/auth/challenge"),
            &json!({ "identity": id }),
        )
        .await;
    assert_eq!(st, 200, "{ch}");
    ch
}

#[tokio::test]
async fn challenge_session_and_use_on_both_prefixes() {
    let g = Guardian::start(&[]).await;
    let id = identity();
    for prefix in ["v1", "v2"] {
        let ch = challenge(&g, &id, prefix).await;
        assert_eq!(
            STANDARD
                .decode(ch["nonce"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
        assert_eq!(
            STANDARD.decode(ch["tag"].as_str().unwrap()).unwrap().len(),
            32
        );
        assert!(ch["created_ns"].as_i64().unwrap() > 0);
        assert_eq!(ch["expires_in_seconds"], 60);
        let (st, s) = g
            .post(
                &format!("/{prefix}/vault/auth/session"),
                &redeem_body(&id, &ch),
            )
            .await;
        assert_eq!(st, 200);
        assert_eq!(s["expires_in_seconds"], 3600);
        let token = s["session_token"].as_str().unwrap();
        STANDARD.decode(token).expect("token is base64");

        // The token works for V2 and as a V1 Bearer for the same identity.
        assert_eq!(
            g.put_secret(token, &format!("k-{prefix}"), b"x", 1).await.0,
            200
        );
        let push = g
            .client
            .post(g.url("/v1/vault/push"))
            .bearer_auth(token)
            .body(json!({"identity": id, "share": "AQ==", "version": if prefix == "v1" { 1 } else { 2 }}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(push.status(), 200);
    }
}

#[tokio::test]
async fn tampered_challenges_are_rejected() {
    let g = Guardian::start(&[]).await;
    let id = identity();
    let ch = challenge(&g, &id, "v1").await;
    let flip = |b64: &Value| {
        let mut raw = STANDARD.decode(b64.as_str().unwrap()).unwrap();
        raw[0] ^= 1;
        STANDARD.encode(raw)
    };
    let mut bad_nonce = redeem_body(&id, &ch);
    bad_nonce["nonce"] = json!(flip(&ch["nonce"]));
    let mut bad_tag = redeem_body(&id, &ch);
    bad_tag["tag"] = json!(flip(&ch["tag"]));
    let mut bad_time = redeem_body(&id, &ch);
    bad_time["created_ns"] = json!(ch["created_ns"].as_i64().unwrap() + 1);
    let mut other_id = redeem_body(&identity(), &ch);
    other_id["identity"] = json!(identity());
    let mut short_nonce = redeem_body(&id, &ch);
    short_nonce["nonce"] = json!(STANDARD.encode([0u8; 16]));
    let mut text_time = redeem_body(&id, &ch);
    text_time["created_ns"] = json!(ch["created_ns"].to_string());
    let mut future = redeem_body(&id, &ch);
    future["created_ns"] = json!(i64::MAX);
    for body in [
        bad_nonce,
        bad_tag,
        bad_time,
        other_id,
        short_nonce,
        text_time,
        future,
    ] {
        assert_eq!(
            g.post("/v1/vault/auth/session", &body).await,
            (401, err("invalid challenge")),
            "{body}"
        );
    }
    // The untampered challenge works, and again within its TTL on either
    // prefix (as in the reference: a client may retry after a lost answer).
    for prefix in ["v1", "v2", "v1"] {
        let (status, body) = g
            .post(
                &format!("/{prefix}/vault/auth/session"),
                &redeem_body(&id, &ch),
            )
            .await;
        assert_eq!(status, 200, "{prefix}: {body}");
        assert!(body["session_token"].is_string(), "{body}");
    }
}

#[tokio::test]
async fn auth_request_validation() {
    let g = Guardian::start(&[]).await;
    let id = identity();
    assert_eq!(
        g.post_raw("/v1/vault/auth/challenge", Vec::new()).await,
        (400, err("empty body"))
    );
    assert_eq!(
        g.post("/v2/vault/auth/challenge", &json!({})).await,
        (400, err("missing identity field"))
    );
    assert_eq!(
        g.post("/v1/vault/auth/challenge", &json!({"identity": "ab"}))
            .await,
        (400, err("identity must be exactly 64 hex characters"))
    );
    assert_eq!(
        g.post(
            "/v1/vault/auth/challenge",
            &json!({"identity": "x".repeat(64)})
        )
        .await,
        (400, err("identity must be hex"))
    );
    let ch = challenge(&g, &id, "v1").await;
    for (field, msg) in [
        ("identity", "missing identity field"),
        ("nonce", "missing nonce field"),
        ("tag", "missing tag field"),
        ("created_ns", "missing created_ns field"),
    ] {
        let mut body = redeem_body(&id, &ch);
        body.as_object_mut().unwrap().remove(field);
        assert_eq!(
            g.post("/v1/vault/auth/session", &body).await,
            (400, err(msg))
        );
    }
    assert_eq!(
        g.get("/v1/vault/auth/challenge").await,
        (405, err("method not allowed"))
    );
}

#[tokio::test]
async fn expired_challenges_and_sessions_are_rejected() {
    let g = Guardian::start(&["--challenge-ttl-secs", "1", "--session-ttl-secs", "1"]).await;
    let id = identity();
    let ch = challenge(&g, &id, "v2").await;
    let token = g.session(&id, "v2").await;
    assert_eq!(
        g.v2(reqwest::Method::GET, "/v2/vault/secrets", &token, None)
            .await
            .0,
        200
    );
    // Time is what this test is about: let both lifetimes pass.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(
        g.post("/v2/vault/auth/session", &redeem_body(&id, &ch))
            .await,
        (401, err("challenge expired"))
    );
    assert_eq!(
        g.v2(reqwest::Method::GET, "/v2/vault/secrets", &token, None)
            .await,
        (401, err("invalid session token"))
    );
}

#[tokio::test]
async fn v1_bearer_must_be_valid_and_for_the_same_identity() {
    let g = Guardian::start(&[]).await;
    let (alice, bob) = (identity(), identity());
    let bob_token = g.session(&bob, "v1").await;
    let alice_token = g.session(&alice, "v1").await;
    let send = |path: &'static str, auth: String, body: Value| {
        let req = g
            .client
            .post(g.url(path))
            .header("authorization", auth)
            .body(body.to_string());
        async move { crate::common::status_json(req.send().await.unwrap()).await }
    };
    let push_body = json!({"identity": alice, "share": "AQ==", "version": 1});
    for auth in [
        format!("Bearer {bob_token}"),
        "Bearer garbage".into(),
        format!("Basic {alice_token}"),
    ] {
        assert_eq!(
            send("/v1/vault/push", auth.clone(), push_body.clone()).await,
            (401, err("invalid session token"))
        );
        assert_eq!(
            send("/v1/vault/pull", auth, json!({"identity": alice})).await,
            (401, err("invalid session token"))
        );
    }
    assert_eq!(
        g.pull(&alice).await.0,
        404,
        "a rejected push stored nothing"
    );
    assert_eq!(
        send("/v1/vault/push", format!("Bearer {alice_token}"), push_body)
            .await
            .0,
        200
    );
    assert_eq!(
        send(
            "/v1/vault/pull",
            format!("Bearer {alice_token}"),
            json!({"identity": alice})
        )
        .await
        .0,
        200
    );
}
