//! Wake-up pushes, end to end: the relay binary sends to stand-in provider
//! servers on loopback (UnifiedPush for real; FCM and APNs stand-ins speak
//! the providers' protocols and verify the relay's credentials).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::{Value, json};

use crate::standin::{Recorded, StandIn, always};
use crate::support::*;

/// The only payload a wake-up may carry.
const WAKE: &str = r#"{"type":"wake"}"#;

async fn put_token(relay: &Relay, user: &User, body: Value) {
    let resp = relay
        .http
        .put(relay.url("/v1/push-tokens"))
        .bearer_auth(&user.token)
        .json(&body)
        .send()
        .await
        .expect("request sent");
    expect_empty(resp, 200).await;
}

/// A relay that may POST to loopback UnifiedPush endpoints.
async fn relay_with(extra: &[&str]) -> Relay {
    let mut args = vec!["--unifiedpush-allow-private"];
    args.extend_from_slice(extra);
    Relay::start_with(&args).await
}

/// Registers a user whose wake-ups go to `path` on the UnifiedPush stand-in.
async fn up_user(relay: &Relay, up: &StandIn, path: &str) -> User {
    let user = relay.register(12).await;
    put_token(
        relay,
        &user,
        json!({"token": up.url(path), "type": "unifiedpush"}),
    )
    .await;
    user
}

/// Asserts that nothing identifying leaked into a provider request.
fn assert_content_free(request: &Recorded, secrets: &[&str]) {
    let all = request.everything();
    for secret in secrets {
        assert!(!all.contains(secret), "a push carried {secret:?}:\n{all}");
    }
}

#[tokio::test]
async fn a_wakeup_goes_once_to_an_offline_user_and_never_to_an_online_one() {
    let up = StandIn::start(always(201, "{}")).await;
    let relay = relay_with(&["--push-delay-ms", "300", "--push-throttle-secs", "0"]).await;
    let sender = relay.register(12).await;
    let online = up_user(&relay, &up, "/online").await;
    let offline = up_user(&relay, &up, "/offline").await;
    let fence = up_user(&relay, &up, "/fence").await;

    let mut gateway = relay.connect(&online.token).await;
    relay
        .send_ok(
            &sender.token,
            &online.id,
            &message(1, b"to the online user"),
        )
        .await;
    let envelope = gateway.envelope().await;
    relay
        .send_ok(&sender.token, &offline.id, &message(1, b"secret content"))
        .await;
    let pushes = up.wait_for("/offline", 1).await;
    // Jobs are due in order: once a later user's wake-up arrived, an earlier
    // duplicate or one for the online user would have arrived too.
    relay
        .send_ok(&sender.token, &fence.id, &message(1, b"fence"))
        .await;
    up.wait_for("/fence", 1).await;
    assert_eq!(up.to("/offline").len(), 1, "exactly one wake-up");
    assert!(up.to("/online").is_empty(), "no wake-up for a live socket");

    let push = &pushes[0];
    assert_eq!(push.method, "POST");
    assert_eq!(
        push.body,
        WAKE.as_bytes(),
        "the body is the constant wake-up"
    );
    assert_content_free(
        push,
        &[
            &offline.id,
            &offline.username,
            &sender.id,
            &sender.username,
            "secret content",
            &STANDARD.encode(b"secret content"),
            &envelope.id,
        ],
    );
    drop(gateway);
}

#[tokio::test]
async fn a_burst_of_messages_costs_one_wakeup() {
    let up = StandIn::start(always(201, "{}")).await;
    // No throttle: only coalescing can make ten messages one wake-up.
    let relay = relay_with(&["--push-delay-ms", "1500", "--push-throttle-secs", "0"]).await;
    let sender = relay.register(12).await;
    let user = up_user(&relay, &up, "/burst").await;
    let fence = up_user(&relay, &up, "/fence").await;
    for i in 0..10u8 {
        relay
            .send_ok(&sender.token, &user.id, &message(1, &[i]))
            .await;
    }
    up.wait_for("/burst", 1).await;
    relay
        .send_ok(&sender.token, &fence.id, &message(1, b"fence"))
        .await;
    up.wait_for("/fence", 1).await;
    assert_eq!(up.to("/burst").len(), 1, "ten messages, one wake-up");
}

#[tokio::test]
async fn connecting_before_the_delay_cancels_the_wakeup() {
    let up = StandIn::start(always(201, "{}")).await;
    let relay = relay_with(&["--push-delay-ms", "1500", "--push-throttle-secs", "0"]).await;
    let sender = relay.register(12).await;
    let user = up_user(&relay, &up, "/early").await;
    let fence = up_user(&relay, &up, "/fence").await;
    relay
        .send_ok(&sender.token, &user.id, &message(1, b"hello"))
        .await;
    let mut gateway = relay.connect(&user.token).await;
    let envelope = gateway.envelope().await;
    gateway.ack_bulk(&[&envelope.id]).await;
    gateway.sync().await;
    relay
        .send_ok(&sender.token, &fence.id, &message(1, b"fence"))
        .await;
    up.wait_for("/fence", 1).await;
    assert!(up.to("/early").is_empty(), "the app was awake already");
}

#[tokio::test]
async fn transient_failures_are_retried() {
    let up = StandIn::start(always(201, "{}")).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    up.set_responder(Arc::new(move |_| {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            (503, "{}".into())
        } else {
            (201, "{}".into())
        }
    }));
    let relay = relay_with(&["--push-delay-ms", "100"]).await;
    let sender = relay.register(12).await;
    let user = up_user(&relay, &up, "/flaky").await;
    relay
        .send_ok(&sender.token, &user.id, &message(1, b"x"))
        .await;
    let pushes = up.wait_for("/flaky", 2).await;
    assert!(pushes.iter().all(|p| p.body == WAKE.as_bytes()));
}

#[tokio::test]
async fn a_pending_wakeup_survives_a_crash() {
    let up = StandIn::start(always(201, "{}")).await;
    let mut relay = relay_with(&["--push-delay-ms", "2500"]).await;
    let sender = relay.register(12).await;
    let user = up_user(&relay, &up, "/after-restart").await;
    relay
        .send_ok(&sender.token, &user.id, &message(1, b"x"))
        .await;
    relay.server.kill().await;
    assert!(
        up.to("/after-restart").is_empty(),
        "the relay was killed before the wake-up was due"
    );
    relay.server.restart().await.expect("relay restarts");
    up.wait_for("/after-restart", 1).await;
}

#[tokio::test]
async fn unifiedpush_endpoints_are_checked_at_registration() {
    // Without --unifiedpush-allow-private: https and public hosts only.
    let relay = Relay::start().await;
    let user = relay.register(12).await;
    for endpoint in [
        "http://push.example.org/up",
        "https://127.0.0.1/up",
        "https://localhost/up",
        "not a url",
    ] {
        let resp = relay
            .http
            .put(relay.url("/v1/push-tokens"))
            .bearer_auth(&user.token)
            .json(&json!({"token": endpoint, "type": "unifiedpush"}))
            .send()
            .await
            .unwrap();
        expect_error(resp, 400).await;
    }
    let resp = relay
        .http
        .put(relay.url("/v1/push-tokens"))
        .bearer_auth(&user.token)
        .json(&json!({"token": "abc", "type": "carrier-pigeon"}))
        .send()
        .await
        .unwrap();
    expect_error(resp, 400).await;
    put_token(
        &relay,
        &user,
        json!({"token": "https://push.example.org/up/x", "platform": "unifiedpush"}),
    )
    .await;
}

/// A Google service account with a fresh RSA key; returns (JSON, public PEM).
fn service_account() -> (String, String) {
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("RSA key");
    let private = key.to_pkcs8_pem(LineEnding::LF).expect("PKCS#8 PEM");
    let public = key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("SPKI PEM");
    let account = json!({
        "type": "service_account",
        "project_id": "test-project",
        "private_key_id": "key-1",
        "private_key": private.as_str(),
        "client_email": "relay@test-project.iam.gserviceaccount.com",
        "token_uri": "https://oauth2.googleapis.com/token",
    });
    (account.to_string(), public)
}

const FCM_SEND: &str = "/v1/projects/test-project/messages:send";

/// An FCM stand-in: `/token` hands out `access-N`, the send endpoint
/// refuses `dead-token` as UNREGISTERED and accepts any other token.
async fn fcm_standin() -> StandIn {
    let issued = Arc::new(AtomicUsize::new(0));
    StandIn::start(Arc::new(move |r: &Recorded| match r.path.as_str() {
        "/token" => {
            let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
            (
                200,
                json!({"access_token": format!("access-{n}"), "expires_in": 3600, "token_type": "Bearer"})
                    .to_string(),
            )
        }
        FCM_SEND if r.json()["message"]["token"] == "dead-token" => (
            404,
            json!({"error": {"code": 404, "status": "NOT_FOUND", "details": [
                {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}
            ]}})
            .to_string(),
        ),
        FCM_SEND => (200, json!({"name": "projects/test-project/messages/1"}).to_string()),
        _ => (404, "{}".into()),
    }))
    .await
}

async fn fcm_relay(fcm: &StandIn, account_json: &str) -> Relay {
    let dir = obscura_testkit::data_dir();
    let path = dir.path().join("service-account.json");
    std::fs::write(&path, account_json).unwrap();
    let path = path.to_str().unwrap().to_owned();
    let endpoint = fcm.url("");
    let token_endpoint = fcm.url("/token");
    let relay = Relay::start_with(&[
        "--push-delay-ms",
        "200",
        "--push-throttle-secs",
        "0",
        "--fcm-service-account",
        &path,
        "--fcm-endpoint",
        &endpoint,
        "--fcm-token-endpoint",
        &token_endpoint,
    ])
    .await;
    // The key file may go once the relay has read it at start-up.
    drop(dir);
    relay
}

fn sends_to(fcm: &StandIn, token: &str) -> usize {
    fcm.to(FCM_SEND)
        .iter()
        .filter(|r| r.json()["message"]["token"] == token)
        .count()
}

#[tokio::test]
async fn fcm_exchanges_its_oauth_token_once_and_sends_data_only_messages() {
    let (account, public_pem) = service_account();
    let fcm = fcm_standin().await;
    let relay = fcm_relay(&fcm, &account).await;
    let sender = relay.register(12).await;
    let a = relay.register(12).await;
    let b = relay.register(12).await;
    // No "type": FCM, as before the field existed.
    put_token(&relay, &a, json!({"token": "token-a"})).await;
    put_token(
        &relay,
        &b,
        json!({"token": "token-b", "platform": "android"}),
    )
    .await;
    relay
        .send_ok(&sender.token, &a.id, &message(1, b"secret content"))
        .await;
    fcm.wait_for(FCM_SEND, 1).await;
    relay
        .send_ok(&sender.token, &b.id, &message(1, b"secret content"))
        .await;
    let sends = fcm.wait_for(FCM_SEND, 2).await;

    let exchanges = fcm.to("/token");
    assert_eq!(exchanges.len(), 1, "the access token is cached");
    let form: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(&exchanges[0].body)
            .into_owned()
            .collect();
    assert_eq!(
        form.get("grant_type").map(String::as_str),
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    );
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[fcm.url("/token")]);
    validation.set_issuer(&["relay@test-project.iam.gserviceaccount.com"]);
    let assertion = jsonwebtoken::decode::<Value>(
        &form["assertion"],
        &DecodingKey::from_rsa_pem(public_pem.as_bytes()).unwrap(),
        &validation,
    )
    .expect("the assertion is signed by the service account's key");
    assert_eq!(
        assertion.claims["scope"],
        "https://www.googleapis.com/auth/firebase.messaging"
    );
    assert_eq!(assertion.header.kid.as_deref(), Some("key-1"));

    for (send, (user, token)) in sends.iter().zip([(&a, "token-a"), (&b, "token-b")]) {
        assert_eq!(send.header("authorization"), Some("Bearer access-1"));
        let body = send.json();
        let message = &body["message"];
        assert_eq!(message["token"], token);
        assert_eq!(message["data"], json!({"type": "wake"}));
        assert_eq!(message["android"]["priority"], "HIGH");
        assert!(message.get("notification").is_none(), "data-only");
        assert_content_free(
            send,
            &[&user.id, &sender.id, &sender.username, "secret content"],
        );
    }
}

#[tokio::test]
async fn a_token_the_provider_calls_invalid_is_deleted() {
    let (account, _) = service_account();
    let fcm = fcm_standin().await;
    let relay = fcm_relay(&fcm, &account).await;
    let sender = relay.register(12).await;
    let dead = relay.register(12).await;
    let fence = relay.register(12).await;
    put_token(&relay, &dead, json!({"token": "dead-token", "type": "fcm"})).await;
    put_token(&relay, &fence, json!({"token": "fence-token"})).await;
    relay
        .send_ok(&sender.token, &dead.id, &message(1, b"1"))
        .await;
    fcm.wait_for(FCM_SEND, 1).await;
    // The relay has recorded the refusal once the metric counts it.
    let pruned = eventually(TIMEOUT, || async {
        crate::metrics::scrape(&relay).await.value(
            "obscura_relay_pushes_total",
            &[("outcome", "invalid_token")],
        ) >= 1.0
    })
    .await;
    assert!(pruned, "the refusal was recorded");
    // No throttle: with the token kept, this would be pushed again.
    relay
        .send_ok(&sender.token, &dead.id, &message(1, b"2"))
        .await;
    relay
        .send_ok(&sender.token, &fence.id, &message(1, b"fence"))
        .await;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while sends_to(&fcm, "fence-token") == 0 {
        assert!(tokio::time::Instant::now() < deadline, "fence push missing");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        sends_to(&fcm, "dead-token"),
        1,
        "the dead token was deleted"
    );
}

/// A `.p8`-style PKCS#8 PEM P-256 key and its public point (x, y base64url).
fn apns_key() -> (String, String, String) {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    let b64 = STANDARD.encode(pkcs8.as_ref());
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    );
    (
        pem,
        URL_SAFE_NO_PAD.encode(&point[1..33]),
        URL_SAFE_NO_PAD.encode(&point[33..65]),
    )
}

const LIVE_DEVICE: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
const GONE_DEVICE: &str = "0000000000000000000000000000000000000000000000000000000000000410";

#[tokio::test]
async fn apns_gets_an_http2_background_push_with_a_valid_es256_token() {
    let (pem, x, y) = apns_key();
    let apns = StandIn::start(Arc::new(|r: &Recorded| {
        if r.path.ends_with(GONE_DEVICE) {
            (410, json!({"reason": "Unregistered"}).to_string())
        } else {
            (200, String::new())
        }
    }))
    .await;
    let dir = obscura_testkit::data_dir();
    let key_file = dir.path().join("AuthKey_KEY123.p8");
    std::fs::write(&key_file, pem).unwrap();
    let endpoint = apns.url("");
    let relay = Relay::start_with(&[
        "--push-delay-ms",
        "200",
        "--push-throttle-secs",
        "0",
        "--apns-key-file",
        key_file.to_str().unwrap(),
        "--apns-key-id",
        "KEY123",
        "--apns-team-id",
        "TEAM456",
        "--apns-topic",
        "org.obscura.app",
        "--apns-endpoint",
        &endpoint,
    ])
    .await;
    let sender = relay.register(12).await;
    let live = relay.register(12).await;
    let gone = relay.register(12).await;
    put_token(&relay, &live, json!({"token": LIVE_DEVICE, "type": "apns"})).await;
    put_token(
        &relay,
        &gone,
        json!({"token": GONE_DEVICE, "platform": "ios"}),
    )
    .await;

    relay
        .send_ok(&sender.token, &live.id, &message(1, b"secret content"))
        .await;
    let live_path = format!("/3/device/{LIVE_DEVICE}");
    let push = apns.wait_for(&live_path, 1).await.remove(0);
    assert_eq!(push.version, axum::http::Version::HTTP_2, "APNs is HTTP/2");
    assert_eq!(push.header("apns-push-type"), Some("background"));
    assert_eq!(push.header("apns-priority"), Some("5"));
    assert_eq!(push.header("apns-topic"), Some("org.obscura.app"));
    assert_eq!(
        push.json(),
        json!({"aps": {"content-available": 1}, "type": "wake"})
    );
    let jwt = push
        .header("authorization")
        .and_then(|h| h.strip_prefix("bearer "))
        .expect("bearer provider token");
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_required_spec_claims(&["iss"]);
    validation.set_issuer(&["TEAM456"]);
    validation.validate_exp = false; // APNs tokens carry iat, not exp
    let token = jsonwebtoken::decode::<Value>(
        jwt,
        &DecodingKey::from_ec_components(&x, &y).unwrap(),
        &validation,
    )
    .expect("provider token verifies with the key's public half");
    assert_eq!(token.header.kid.as_deref(), Some("KEY123"));
    let iat = token.claims["iat"].as_i64().expect("iat");
    assert!((iat - now_secs()).abs() < 600, "iat is now");
    assert_content_free(
        &push,
        &[&live.id, &sender.id, &sender.username, "secret content"],
    );

    // 410 Unregistered: the token is deleted and not used again.
    let gone_path = format!("/3/device/{GONE_DEVICE}");
    relay
        .send_ok(&sender.token, &gone.id, &message(1, b"1"))
        .await;
    apns.wait_for(&gone_path, 1).await;
    let recorded = eventually(TIMEOUT, || async {
        crate::metrics::scrape(&relay).await.value(
            "obscura_relay_pushes_total",
            &[("provider", "apns"), ("outcome", "invalid_token")],
        ) >= 1.0
    })
    .await;
    assert!(recorded);
    relay
        .send_ok(&sender.token, &gone.id, &message(1, b"2"))
        .await;
    relay
        .send_ok(&sender.token, &live.id, &message(1, b"fence"))
        .await;
    apns.wait_for(&live_path, 2).await;
    assert_eq!(
        apns.to(&gone_path).len(),
        1,
        "the refused token was deleted"
    );
}

/// Two relay processes on one database (SQLite locks across processes as
/// PostgreSQL does across nodes): both workers race for the same jobs, and
/// the lease makes each wake-up go out once.
#[tokio::test]
async fn two_relays_on_one_database_send_each_wakeup_once() {
    let up = StandIn::start(always(201, "{}")).await;
    // A slow provider keeps jobs in flight past the other node's next poll.
    up.set_delay(std::time::Duration::from_millis(1500));
    let a = relay_with(&["--push-delay-ms", "200", "--push-throttle-secs", "0"]).await;
    let dir = a.dir.path().to_str().unwrap().to_owned();
    let b = obscura_testkit::Server::start(
        env!("CARGO_BIN_EXE_obscura"),
        &[
            "relay",
            "--listen",
            "127.0.0.1:0",
            "--mgmt-listen",
            "127.0.0.1:0",
            "--data-dir",
            &dir,
            "--unifiedpush-allow-private",
            "--push-delay-ms",
            "200",
            "--push-throttle-secs",
            "0",
        ],
        &[],
        &["http", "mgmt"],
    )
    .await
    .expect("second relay starts on the same data directory");
    let sender = a.register(12).await;
    let mut users = Vec::new();
    for i in 0..12 {
        users.push(up_user(&a, &up, &format!("/user-{i}")).await);
    }
    // Both nodes accept messages; both workers claim from the shared table.
    for (i, user) in users.iter().enumerate() {
        let base = if i % 2 == 0 { a.url("") } else { b.url("http") };
        let resp = a
            .http
            .post(format!("{base}/v1/messages/{}", user.id))
            .bearer_auth(&sender.token)
            .header("content-type", "application/x-protobuf")
            .body(prost::Message::encode_to_vec(&message(1, b"x")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201);
    }
    for i in 0..users.len() {
        up.wait_for(&format!("/user-{i}"), 1).await;
    }
    let fence = up_user(&a, &up, "/fence").await;
    a.send_ok(&sender.token, &fence.id, &message(1, b"fence"))
        .await;
    up.wait_for("/fence", 1).await;
    for i in 0..users.len() {
        assert_eq!(
            up.to(&format!("/user-{i}")).len(),
            1,
            "user {i} was woken once"
        );
    }
}
