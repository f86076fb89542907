//! POST /v1/users and POST /v1/sessions (login).

use obscura_keys::{KeyPair, PublicKey};
use rand_core::OsRng;
use serde_json::{Value, json};

use crate::support::*;

#[backend_test]
async fn register_returns_auth_response_with_jwt() {
    let relay = Relay::start().await;
    let device = Device::new(5);
    let username = unique_name("alice");
    let before = now_secs();
    let resp = relay
        .post_json(
            "/v1/users",
            &device.registration_json(&username, "a long enough password"),
        )
        .await;
    let auth = expect_json(resp, 201).await;

    let token = auth["token"].as_str().expect("token string");
    let header = jwt_header(token);
    assert_eq!(header["alg"], "HS256", "algorithm pinned to HS256");
    let claims = jwt_claims(token);
    let sub = claims["sub"].as_str().expect("sub");
    let parsed = uuid::Uuid::parse_str(sub).expect("sub is a UUID");
    assert_eq!(
        sub,
        parsed.hyphenated().to_string(),
        "sub is a lower-case hyphenated UUID"
    );
    assert!(
        claims["iat"].is_i64() || claims["iat"].is_u64(),
        "iat claim: {claims}"
    );
    let exp = claims["exp"].as_i64().expect("exp claim");
    assert_eq!(
        auth["expiresAt"].as_i64(),
        Some(exp),
        "expiresAt is the access token's exp"
    );
    // Default access-token TTL is 900 s.
    assert!(
        (before + 850..=now_secs() + 950).contains(&exp),
        "exp {exp} not ~15 min ahead"
    );

    let refresh = auth["refreshToken"].as_str().expect("refreshToken string");
    let raw = base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        refresh.trim_end_matches('='),
    )
    .expect("refresh token is base64url");
    assert!(raw.len() >= 32, "refresh token carries >= 32 random bytes");

    // The token authenticates.
    let resp = relay
        .http
        .put(relay.url("/v1/push-tokens"))
        .bearer_auth(token)
        .json(&json!({"token": "fcm-token"}))
        .send()
        .await
        .unwrap();
    expect_empty(resp, 200).await;
}

#[backend_test]
async fn duplicate_username_is_409() {
    let relay = Relay::start().await;
    let user = relay.register(1).await;
    let again = Device::new(1).registration_json(&user.username, "another long password");
    let resp = relay.post_json("/v1/users", &again).await;
    expect_error(resp, 409).await;
    // The original account is untouched: its password still logs in.
    let resp = relay.login(&user.username, &user.password).await;
    expect_json(resp, 200).await;
}

/// Each case mutates a valid registration; all must be 400 JSON and none may
/// leave a partial account behind (the username stays free).
#[backend_test]
async fn registration_validation_rejects_with_400() {
    let relay = Relay::start().await;
    let device = Device::new(3);
    let username = unique_name("val");
    let good = device.registration_json(&username, "twelve chars");
    let id_pub = device.identity.public().to_bytes();
    let spk_pub = device.signed.key.public().to_bytes();
    let sig = device.signed.signature;

    let other = KeyPair::generate(&mut OsRng);
    let mut flipped_sign_bit = sig;
    flipped_sign_bit[63] ^= 0x80;
    let mut corrupted = sig;
    corrupted[0] ^= 0x01;
    let mut wrong_type = id_pub;
    wrong_type[0] = 0x06;
    let mut otpk_wrong_type = device.otpks[0].1.public().to_bytes();
    otpk_wrong_type[0] = 0x07;

    let set = |path: &[&str], value: Value| -> Value {
        let mut body = good.clone();
        let mut slot = &mut body;
        for p in path {
            slot = match p.parse::<usize>() {
                Ok(i) => &mut slot[i],
                Err(_) => &mut slot[*p],
            };
        }
        *slot = value;
        body
    };
    let remove = |key: &str| -> Value {
        let mut body = good.clone();
        body.as_object_mut().unwrap().remove(key);
        body
    };
    let many_otpks: Vec<Value> = (0..101)
        .map(|i| otpk_json(i, &KeyPair::generate(&mut OsRng)))
        .collect();
    let mut dup_otpks = device.otpks_json();
    dup_otpks[1]["keyId"] = dup_otpks[0]["keyId"].clone();

    let cases: Vec<(&str, Value)> = vec![
        ("empty password", set(&["password"], json!(""))),
        ("empty username", set(&["username"], json!(""))),
        (
            "username of 65 characters",
            set(&["username"], json!("u".repeat(65))),
        ),
        (
            "identity key of 32 bytes",
            set(&["identityKey"], json!(b64(&id_pub[1..]))),
        ),
        (
            "identity key of 34 bytes",
            set(
                &["identityKey"],
                json!(b64(&[&id_pub[..], &[0u8]].concat())),
            ),
        ),
        (
            "identity key with type byte 0x06",
            set(&["identityKey"], json!(b64(&wrong_type))),
        ),
        (
            "identity key not base64",
            set(&["identityKey"], json!("not base64 !!!")),
        ),
        (
            "signed pre-key of 32 bytes",
            set(&["signedPreKey", "publicKey"], json!(b64(&spk_pub[1..]))),
        ),
        (
            "one-time pre-key with type byte 0x07",
            set(
                &["oneTimePreKeys", "0", "publicKey"],
                json!(b64(&otpk_wrong_type)),
            ),
        ),
        (
            "signature of 63 bytes",
            set(&["signedPreKey", "signature"], json!(b64(&sig[..63]))),
        ),
        (
            "signature with a flipped bit",
            set(&["signedPreKey", "signature"], json!(b64(&corrupted))),
        ),
        (
            "signature with the sign bit flipped",
            set(
                &["signedPreKey", "signature"],
                json!(b64(&flipped_sign_bit)),
            ),
        ),
        (
            "signature by another key",
            set(
                &["signedPreKey", "signature"],
                json!(b64(&other.sign(&spk_pub, &mut OsRng))),
            ),
        ),
        (
            "signature over the 32-byte key instead of the 33-byte serialization",
            set(
                &["signedPreKey", "signature"],
                json!(b64(&device.identity.sign(&spk_pub[1..], &mut OsRng))),
            ),
        ),
        (
            "duplicate one-time pre-key ids",
            set(&["oneTimePreKeys"], json!(dup_otpks)),
        ),
        (
            "101 one-time pre-keys",
            set(&["oneTimePreKeys"], json!(many_otpks)),
        ),
        ("registrationId missing", remove("registrationId")),
        (
            "registrationId negative",
            set(&["registrationId"], json!(-1)),
        ),
        (
            "registrationId not a number",
            set(&["registrationId"], json!("42")),
        ),
        (
            "registrationId beyond u32",
            set(&["registrationId"], json!(4_294_967_296u64)),
        ),
        (
            "negative one-time pre-key id",
            set(&["oneTimePreKeys", "0", "keyId"], json!(-1)),
        ),
        (
            "signed pre-key id beyond u32",
            set(&["signedPreKey", "keyId"], json!(4_294_967_296u64)),
        ),
        ("signedPreKey missing", remove("signedPreKey")),
        ("identityKey missing", remove("identityKey")),
        ("password missing", remove("password")),
        ("oneTimePreKeys missing", remove("oneTimePreKeys")),
    ];
    for (what, body) in cases {
        let resp = relay.post_json("/v1/users", &body).await;
        let status = resp.status().as_u16();
        assert_eq!(status, 400, "{what}: expected 400, got {status}");
        expect_error(resp, 400).await;
    }

    // JSON syntax errors are 400 JSON too.
    let resp = relay
        .http
        .post(relay.url("/v1/users"))
        .header("content-type", "application/json")
        .body("{\"username\": ")
        .send()
        .await
        .unwrap();
    expect_error(resp, 400).await;

    // Nothing above created the account.
    let resp = relay.post_json("/v1/users", &good).await;
    expect_json(resp, 201).await;
}

/// The contract sets no password minimum and real clients allow short
/// ones (the web client: 4 characters), so one character is enough by
/// default; `--min-password-chars` raises it.
#[backend_test]
async fn short_passwords_are_accepted_unless_the_operator_sets_a_minimum() {
    let relay = Relay::start().await;
    for password in ["pin4", "x"] {
        let body = Device::new(1).registration_json(&unique_name("short"), password);
        expect_json(relay.post_json("/v1/users", &body).await, 201).await;
    }
    let strict = Relay::start_with(&["--min-password-chars", "12"]).await;
    let body = Device::new(1).registration_json(&unique_name("strict"), "elevenchars");
    let error = expect_error(strict.post_json("/v1/users", &body).await, 400).await;
    assert!(error.contains("at least 12 characters"), "{error}");
    let body = Device::new(1).registration_json(&unique_name("strict"), "twelve chars");
    expect_json(strict.post_json("/v1/users", &body).await, 201).await;
}

#[backend_test]
async fn registration_boundaries_are_accepted() {
    let relay = Relay::start().await;
    // 64-character username, 12-character password, no one-time pre-keys.
    let name = format!("{}{}", unique_name("b"), "x".repeat(64))
        .chars()
        .take(64)
        .collect::<String>();
    let resp = relay
        .post_json(
            "/v1/users",
            &Device::new(0).registration_json(&name, "twelve chars"),
        )
        .await;
    expect_json(resp, 201).await;
    // Exactly 100 one-time pre-keys.
    let resp = relay
        .post_json(
            "/v1/users",
            &Device::new(100).registration_json(&unique_name("c"), "twelve chars"),
        )
        .await;
    expect_json(resp, 201).await;
}

/// libsignal puts the sign bit of the Edwards key in signature byte 63;
/// about half of real signatures have it set. Both must verify.
#[backend_test]
async fn xeddsa_signatures_with_both_sign_bits_are_accepted() {
    let relay = Relay::start().await;
    let mut seen = [false, false];
    let mut tries = 0;
    while !(seen[0] && seen[1]) {
        tries += 1;
        assert!(tries < 200, "could not generate both sign-bit values");
        let device = Device::new(1);
        let bit = (device.signed.signature[63] >> 7) as usize;
        if seen[bit] {
            continue;
        }
        seen[bit] = true;
        let user = relay.register_device(device).await;
        let bundle = relay.bundle(&user.id).await;
        let sig = unb64(bundle["signedPreKey"]["signature"].as_str().unwrap());
        assert_eq!(
            sig,
            user.device.signed.signature.to_vec(),
            "signature returned byte-exact"
        );
        assert_eq!(sig[63] >> 7, bit as u8);
        let identity =
            PublicKey::from_bytes(&unb64(bundle["identityKey"].as_str().unwrap())).unwrap();
        let spk = unb64(bundle["signedPreKey"]["publicKey"].as_str().unwrap());
        identity
            .verify_signature(&spk, &sig)
            .expect("bundle verifies like a client re-verifies it");
    }
}

#[backend_test]
async fn login_succeeds_and_rejects_bad_credentials() {
    let relay = Relay::start().await;
    let user = relay.register(1).await;

    let auth = expect_json(relay.login(&user.username, &user.password).await, 200).await;
    let token = auth["token"].as_str().unwrap();
    assert_eq!(jwt_claims(token)["sub"].as_str(), Some(user.id.as_str()));
    assert_eq!(
        auth["expiresAt"].as_i64(),
        jwt_claims(token)["exp"].as_i64()
    );
    assert!(
        auth["refreshToken"]
            .as_str()
            .is_some_and(|r| !r.is_empty() && r != user.refresh_token)
    );

    let wrong = expect_error(relay.login(&user.username, "not the password!").await, 401).await;
    let unknown = expect_error(
        relay
            .login(&unique_name("nobody"), "not the password!")
            .await,
        401,
    )
    .await;
    assert_eq!(
        wrong, unknown,
        "the error must not reveal whether the username exists"
    );

    // Missing field: 400 JSON, not a framework plain-text rejection.
    let resp = relay
        .post_json("/v1/sessions", &json!({"username": user.username}))
        .await;
    expect_error(resp, 400).await;
}

/// Ten simultaneous registrations of one username: exactly one wins.
#[backend_test]
async fn concurrent_registrations_of_one_username_create_one_account() {
    let relay = Relay::start().await;
    let username = unique_name("race");
    let bodies: Vec<_> = (0..10)
        .map(|_| Device::new(1).registration_json(&username, "a long enough password"))
        .collect();
    let responses =
        futures::future::join_all(bodies.iter().map(|b| relay.post_json("/v1/users", b))).await;
    let mut created = 0;
    for resp in responses {
        match resp.status().as_u16() {
            201 => created += 1,
            409 => {
                expect_error(resp, 409).await;
            }
            other => panic!(
                "unexpected status {other}: {}",
                resp.text().await.unwrap_or_default()
            ),
        }
    }
    assert_eq!(
        created, 1,
        "exactly one registration of {username} succeeds"
    );
}
