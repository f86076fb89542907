//! Refresh-token rotation and reuse detection, logout, JWT validation.

use prost::Message as _;
use serde_json::json;

use crate::support::*;

async fn push_token_status(relay: &Relay, auth_header: Option<&str>) -> u16 {
    let mut req = relay
        .http
        .put(relay.url("/v1/push-tokens"))
        .json(&json!({"token": "t"}));
    if let Some(h) = auth_header {
        req = req.header("authorization", h);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    if status != 200 {
        expect_error(resp, status).await;
    }
    status
}

#[backend_test]
async fn refresh_rotates_and_the_old_token_dies_at_once() {
    let relay = Relay::start().await;
    let user = relay.register(1).await;

    let auth = expect_json(relay.refresh(&user.refresh_token).await, 200).await;
    let new_refresh = auth["refreshToken"].as_str().unwrap().to_string();
    let new_access = auth["token"].as_str().unwrap().to_string();
    assert_ne!(new_refresh, user.refresh_token);
    assert_eq!(
        jwt_claims(&new_access)["sub"].as_str(),
        Some(user.id.as_str())
    );
    assert_eq!(
        auth["expiresAt"].as_i64(),
        jwt_claims(&new_access)["exp"].as_i64()
    );
    assert_eq!(
        push_token_status(&relay, Some(&format!("Bearer {new_access}"))).await,
        200
    );

    // A second rotation from the new token works: the chain continues.
    let auth2 = expect_json(relay.refresh(&new_refresh).await, 200).await;
    assert!(
        auth2["refreshToken"]
            .as_str()
            .is_some_and(|r| r != new_refresh)
    );
}

#[backend_test]
async fn reusing_a_rotated_refresh_token_revokes_the_family() {
    // No grace: any reuse counts as theft (the grace has its own test).
    let relay = Relay::start_with(&["--refresh-reuse-grace-secs", "0"]).await;
    let user = relay.register(1).await;
    // An independent session (second login) must survive the revocation.
    let other = expect_json(relay.login(&user.username, &user.password).await, 200).await;
    let other_refresh = other["refreshToken"].as_str().unwrap().to_string();

    let r1 = expect_json(relay.refresh(&user.refresh_token).await, 200).await["refreshToken"]
        .as_str()
        .unwrap()
        .to_string();
    // Replay of the rotated token: rejected ...
    expect_error(relay.refresh(&user.refresh_token).await, 401).await;
    // ... and the token the rotation issued is dead too.
    expect_error(relay.refresh(&r1).await, 401).await;

    let again = expect_json(relay.refresh(&other_refresh).await, 200).await;
    assert!(again["token"].is_string());
}

#[backend_test]
async fn refresh_with_unknown_token_is_401() {
    let relay = Relay::start().await;
    expect_error(
        relay
            .refresh("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
            .await,
        401,
    )
    .await;
    expect_error(relay.refresh("").await, 401).await;
    // An access token is not a refresh token.
    let user = relay.register(1).await;
    expect_error(relay.refresh(&user.token).await, 401).await;
}

#[backend_test]
async fn logout_revokes_the_refresh_token() {
    let relay = Relay::start().await;
    let user = relay.register(1).await;
    let logout = |token: Option<String>, refresh: String| {
        let mut req = relay
            .http
            .delete(relay.url("/v1/sessions"))
            .json(&json!({"refreshToken": refresh}));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };

    // Missing bearer: 401, token untouched.
    expect_error(logout(None, user.refresh_token.clone()).await.unwrap(), 401).await;

    // Someone else's refresh token: 401, and it stays usable for its owner.
    let bob = relay.register(1).await;
    expect_error(
        logout(Some(user.token.clone()), bob.refresh_token.clone())
            .await
            .unwrap(),
        401,
    )
    .await;
    // Unknown refresh token: 401.
    expect_error(
        logout(Some(user.token.clone()), "bm90LWEtdG9rZW4".into())
            .await
            .unwrap(),
        401,
    )
    .await;

    // Own token: 200 with an empty, non-JSON body; the token is dead.
    expect_empty(
        logout(Some(user.token.clone()), user.refresh_token.clone())
            .await
            .unwrap(),
        200,
    )
    .await;
    expect_error(relay.refresh(&user.refresh_token).await, 401).await;

    expect_json(relay.refresh(&bob.refresh_token).await, 200).await;
}

#[backend_test]
async fn logout_revokes_the_rotated_family() {
    let relay = Relay::start().await;
    let user = relay.register(1).await;
    let auth = expect_json(relay.refresh(&user.refresh_token).await, 200).await;
    let r1 = auth["refreshToken"].as_str().unwrap().to_string();
    let access = auth["token"].as_str().unwrap().to_string();
    let resp = relay
        .http
        .delete(relay.url("/v1/sessions"))
        .bearer_auth(&access)
        .json(&json!({"refreshToken": r1}))
        .send();
    expect_empty(resp.await.unwrap(), 200).await;
    expect_error(relay.refresh(&r1).await, 401).await;
}

/// A relay started with a known secret lets the test mint tokens: a valid
/// one proves the secret is used; every tampered variant must be 401.
#[backend_test]
async fn forged_expired_and_alg_none_tokens_are_rejected() {
    let secret = "test-secret-0123456789abcdef0123456789abcdef";
    let relay =
        Relay::start_with(&["--jwt-secret", secret, "--access-token-ttl-secs", "120"]).await;
    let user = relay.register(1).await;
    let bob = relay.register(1).await;
    assert!(
        (now_secs() + 110..=now_secs() + 130).contains(&user.expires_at),
        "--access-token-ttl-secs honoured"
    );

    let hs256 = json!({"alg": "HS256", "typ": "JWT"});
    let now = now_secs();
    let claims = |sub: &str, exp: i64| json!({"sub": sub, "iat": now - 10, "exp": exp});

    let valid = mint_hs256(&hs256, &claims(&user.id, now + 600), secret.as_bytes());
    assert_eq!(
        push_token_status(&relay, Some(&format!("Bearer {valid}"))).await,
        200,
        "minted token with --jwt-secret"
    );

    let expired = mint_hs256(&hs256, &claims(&user.id, now - 600), secret.as_bytes());
    let wrong_secret = mint_hs256(
        &hs256,
        &claims(&user.id, now + 600),
        b"some other secret, same length....",
    );
    let hs512_header = mint_hs256(
        &json!({"alg": "HS512", "typ": "JWT"}),
        &claims(&user.id, now + 600),
        secret.as_bytes(),
    );
    let alg_none = {
        let t = mint_hs256(
            &json!({"alg": "none", "typ": "JWT"}),
            &claims(&user.id, now + 600),
            b"x",
        );
        let mut parts: Vec<&str> = t.split('.').collect();
        parts[2] = "";
        parts.join(".")
    };
    // Payload swapped to bob, signature of alice's token kept.
    let tampered = {
        let good: Vec<&str> = valid.split('.').collect();
        let bobs = mint_hs256(&hs256, &claims(&bob.id, now + 600), b"irrelevant");
        let bob_payload = bobs.split('.').nth(1).unwrap().to_string();
        format!("{}.{}.{}", good[0], bob_payload, good[2])
    };
    let no_exp = mint_hs256(
        &hs256,
        &json!({"sub": user.id, "iat": now}),
        secret.as_bytes(),
    );

    for (what, header) in [
        ("expired", format!("Bearer {expired}")),
        ("wrong secret", format!("Bearer {wrong_secret}")),
        ("HS512 header", format!("Bearer {hs512_header}")),
        ("alg none", format!("Bearer {alg_none}")),
        ("tampered payload", format!("Bearer {tampered}")),
        ("no exp claim", format!("Bearer {no_exp}")),
        ("garbage", "Bearer not.a.jwt".to_string()),
        ("empty bearer", "Bearer ".to_string()),
        ("basic scheme", "Basic dXNlcjpwYXNz".to_string()),
        ("token without scheme", user.token.clone()),
    ] {
        assert_eq!(
            push_token_status(&relay, Some(&header)).await,
            401,
            "{what} must be 401"
        );
    }
    assert_eq!(
        push_token_status(&relay, None).await,
        401,
        "missing Authorization must be 401"
    );

    // The gateway applies the same checks.
    for token in [&expired, &wrong_secret, &alg_none, &tampered] {
        match relay.try_connect(token).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status().as_u16(), 401)
            }
            Err(e) => panic!("expected a 401 handshake response, got {e}"),
            Ok(_) => panic!("gateway accepted a bad token"),
        }
    }
}

#[backend_test]
async fn every_authenticated_endpoint_requires_a_bearer() {
    let relay = Relay::start().await;
    let user = relay.register(1).await;
    let id = uuid::Uuid::new_v4();
    let requests = vec![
        (
            "POST /v1/keys",
            relay
                .http
                .post(relay.url("/v1/keys"))
                .json(&json!({"signedPreKey": {}, "oneTimePreKeys": []})),
        ),
        (
            "POST /v1/messages/{id}",
            relay
                .http
                .post(relay.url(&format!("/v1/messages/{}", user.id)))
                .body(message(2, b"x").encode_to_vec()),
        ),
        (
            "POST /v1/attachments",
            relay
                .http
                .post(relay.url("/v1/attachments"))
                .body(vec![1u8; 10]),
        ),
        (
            "GET /v1/attachments/{id}",
            relay.http.get(relay.url(&format!("/v1/attachments/{id}"))),
        ),
        (
            "PUT /v1/push-tokens",
            relay
                .http
                .put(relay.url("/v1/push-tokens"))
                .json(&json!({"token": "t"})),
        ),
        (
            "DELETE /v1/sessions",
            relay
                .http
                .delete(relay.url("/v1/sessions"))
                .json(&json!({"refreshToken": user.refresh_token})),
        ),
    ];
    for (what, req) in requests {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{what} without a bearer");
        expect_error(resp, 401).await;
    }
}

/// Two browser tabs refreshing with one token at once: the loser gets a 401
/// but the session family survives, so the winner's new token keeps working
/// (within `--refresh-reuse-grace-secs`, default 60 s).
#[backend_test]
async fn a_reuse_right_after_rotation_is_refused_without_revoking() {
    let relay = Relay::start().await;
    let user = relay.register(1).await;
    let rotated = expect_json(relay.refresh(&user.refresh_token).await, 200).await;
    expect_error(relay.refresh(&user.refresh_token).await, 401).await;
    let next = rotated["refreshToken"].as_str().unwrap();
    let again = expect_json(relay.refresh(next).await, 200).await;
    assert!(again["token"].is_string());
}

/// Ten simultaneous refreshes with one token: exactly one rotation succeeds.
#[backend_test]
async fn concurrent_refreshes_rotate_once() {
    let relay = Relay::start().await;
    let user = relay.register(1).await;
    let responses =
        futures::future::join_all((0..10).map(|_| relay.refresh(&user.refresh_token))).await;
    let mut ok = 0;
    for resp in responses {
        match resp.status().as_u16() {
            200 => ok += 1,
            401 => {
                expect_error(resp, 401).await;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(ok, 1, "one refresh token buys exactly one rotation");
}

/// --refresh-token-ttl-secs: a refresh token stops working after its TTL.
#[backend_test]
async fn refresh_tokens_expire() {
    let relay = Relay::start_with(&["--refresh-token-ttl-secs", "1"]).await;
    let issued = now_secs();
    let user = relay.register(1).await;
    // Wait on the wall clock (no server state to poll without rotating the token).
    while now_secs() < issued + 3 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    expect_error(relay.refresh(&user.refresh_token).await, 401).await;
}
