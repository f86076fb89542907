//! GET /v1/keys/{userId} (bundles, one-time pre-key consumption) and
//! POST /v1/keys (refill, signed pre-key rotation, device takeover).

use std::collections::HashSet;

use obscura_keys::KeyPair;
use rand_core::OsRng;
use serde_json::{Value, json};

use crate::support::*;

/// The one-time pre-key id of a bundle, `None` when the bundle says null.
fn otpk_id(bundle: &Value) -> Option<u64> {
    let obj = bundle.as_object().expect("bundle is an object");
    assert!(
        obj.contains_key("oneTimePreKey"),
        "oneTimePreKey must be present (null when exhausted): {bundle}"
    );
    let otpk = &bundle["oneTimePreKey"];
    if otpk.is_null() {
        None
    } else {
        Some(otpk["keyId"].as_u64().expect("keyId"))
    }
}

#[backend_test]
async fn bundle_is_served_byte_exact() {
    let relay = Relay::start().await;
    let user = relay.register(3).await;
    let bundle = relay.bundle(&user.id).await;
    let d = &user.device;
    assert_eq!(
        bundle["registrationId"].as_u64(),
        Some(u64::from(d.registration_id))
    );
    assert_eq!(
        unb64(bundle["identityKey"].as_str().unwrap()),
        d.identity.public().to_bytes()
    );
    assert_eq!(
        bundle["signedPreKey"]["keyId"].as_u64(),
        Some(u64::from(d.signed.id))
    );
    assert_eq!(
        unb64(bundle["signedPreKey"]["publicKey"].as_str().unwrap()),
        d.signed.key.public().to_bytes()
    );
    assert_eq!(
        unb64(bundle["signedPreKey"]["signature"].as_str().unwrap()),
        d.signed.signature
    );
    let id = otpk_id(&bundle).expect("a one-time pre-key is available");
    let served = unb64(bundle["oneTimePreKey"]["publicKey"].as_str().unwrap());
    assert_eq!(
        Some(served.as_slice()),
        d.otpk_public(id).as_ref().map(|k| &k[..]),
        "one-time pre-key byte-exact"
    );
}

#[backend_test]
async fn bundle_for_unknown_or_malformed_user_is_404() {
    let relay = Relay::start().await;
    expect_error(
        relay.get_bundle(&uuid::Uuid::new_v4().to_string()).await,
        404,
    )
    .await;
    expect_error(relay.get_bundle("not-a-uuid").await, 404).await;
    // Not UTF-8 once percent-decoded: the same JSON 404, not axum's text.
    expect_error(relay.get_bundle("%FF").await, 404).await;
}

#[backend_test]
async fn one_time_pre_keys_run_out_into_null() {
    let relay = Relay::start().await;
    let user = relay.register(2).await;
    let a = otpk_id(&relay.bundle(&user.id).await).expect("first key");
    let b = otpk_id(&relay.bundle(&user.id).await).expect("second key");
    assert_ne!(a, b, "a one-time pre-key is handed out once");
    let third = relay.bundle(&user.id).await;
    assert_eq!(otpk_id(&third), None);
    // The rest of the bundle is still served.
    assert!(third["signedPreKey"]["publicKey"].is_string());
}

/// 50 concurrent fetches: every non-null key distinct, exactly as many as
/// were uploaded, the rest null.
#[backend_test]
async fn one_time_pre_keys_are_consumed_exactly_once_under_concurrency() {
    let relay = Relay::start().await;
    for uploaded in [50usize, 40] {
        let user = relay.register(uploaded as u32).await;
        let fetches = (0..50).map(|_| relay.bundle(&user.id));
        let bundles = futures::future::join_all(fetches).await;
        let ids: Vec<u64> = bundles.iter().filter_map(otpk_id).collect();
        let distinct: HashSet<u64> = ids.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            ids.len(),
            "a one-time pre-key was handed out twice: {ids:?}"
        );
        assert_eq!(ids.len(), uploaded, "every uploaded key served once");
        for (bundle, id) in bundles.iter().filter_map(|b| otpk_id(b).map(|id| (b, id))) {
            let served = unb64(bundle["oneTimePreKey"]["publicKey"].as_str().unwrap());
            assert_eq!(
                Some(served.as_slice()),
                user.device.otpk_public(id).as_ref().map(|k| &k[..])
            );
        }
        assert_eq!(otpk_id(&relay.bundle(&user.id).await), None);
    }
}

#[backend_test]
async fn refill_appends_one_time_pre_keys_and_rotates_the_signed_pre_key() {
    let relay = Relay::start().await;
    let mut user = relay.register(1).await;
    let body = user.device.refill_json(2, 2);
    expect_empty(relay.upload_keys(&user.token, &body).await, 200).await;

    let mut ids = HashSet::new();
    for _ in 0..3 {
        let bundle = relay.bundle(&user.id).await;
        assert_eq!(bundle["signedPreKey"]["keyId"].as_u64(), Some(2));
        assert_eq!(
            unb64(bundle["signedPreKey"]["publicKey"].as_str().unwrap()),
            user.device.signed.key.public().to_bytes()
        );
        assert_eq!(
            unb64(bundle["signedPreKey"]["signature"].as_str().unwrap()),
            user.device.signed.signature
        );
        ids.insert(otpk_id(&bundle).expect("key available"));
    }
    assert_eq!(
        ids,
        HashSet::from([1, 2, 3]),
        "old and new one-time pre-keys all served"
    );
    assert_eq!(otpk_id(&relay.bundle(&user.id).await), None);
}

#[backend_test]
async fn signed_pre_key_id_must_strictly_increase() {
    let relay = Relay::start().await;
    let mut user = relay.register(0).await; // signed pre-key id 1
    for (id, expected) in [
        (1u32, 400u16),
        (0, 400),
        (5, 200),
        (5, 400),
        (3, 400),
        (6, 200),
    ] {
        let body = user.device.refill_json(id, 1);
        let resp = relay.upload_keys(&user.token, &body).await;
        if expected == 200 {
            expect_empty(resp, 200).await;
        } else {
            assert_eq!(
                resp.status().as_u16(),
                400,
                "signed pre-key id {id} must be rejected"
            );
            expect_error(resp, 400).await;
        }
    }
    // Only the one-time pre-keys of accepted uploads were stored: the 3rd
    // and 6th the device generated.
    let mut served = HashSet::new();
    loop {
        let bundle = relay.bundle(&user.id).await;
        assert_eq!(bundle["signedPreKey"]["keyId"].as_u64(), Some(6));
        let Some(id) = otpk_id(&bundle) else { break };
        assert!(served.insert(id), "key {id} served twice");
        assert!(
            served.len() <= 2,
            "keys from rejected uploads were stored: {served:?}"
        );
    }
    assert_eq!(served, HashSet::from([3, 6]));
}

#[backend_test]
async fn upload_validation() {
    let relay = Relay::start().await;
    let mut user = relay.register(1).await;
    let other = KeyPair::generate(&mut OsRng);

    let mut body = user.device.refill_json(2, 1);
    body["signedPreKey"]["signature"] = json!(b64(
        &other.sign(&user.device.signed.key.public().to_bytes(), &mut OsRng)
    ));
    expect_error(relay.upload_keys(&user.token, &body).await, 400).await;

    let mut body = user.device.refill_json(3, 1);
    let mut sig = user.device.signed.signature;
    sig[10] ^= 0x20;
    body["signedPreKey"]["signature"] = json!(b64(&sig));
    expect_error(relay.upload_keys(&user.token, &body).await, 400).await;

    let mut body = user.device.refill_json(4, 1);
    body["oneTimePreKeys"][0]["publicKey"] = json!(b64(&[5u8; 32]));
    expect_error(relay.upload_keys(&user.token, &body).await, 400).await;

    let body = user.device.refill_json(5, 101);
    assert_eq!(body["oneTimePreKeys"].as_array().unwrap().len(), 101);
    expect_error(relay.upload_keys(&user.token, &body).await, 400).await;

    let mut body = user.device.refill_json(6, 2);
    body["oneTimePreKeys"][1]["keyId"] = body["oneTimePreKeys"][0]["keyId"].clone();
    expect_error(relay.upload_keys(&user.token, &body).await, 400).await;

    let body = json!({"oneTimePreKeys": []});
    expect_error(relay.upload_keys(&user.token, &body).await, 400).await;

    let resp = relay
        .http
        .post(relay.url("/v1/keys"))
        .bearer_auth(&user.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    expect_error(resp, 400).await;

    // A new identity key without registrationId is not a valid takeover.
    let new_identity = KeyPair::generate(&mut OsRng);
    let spk = SignedPreKey::new(&new_identity, 10);
    let body = json!({
        "identityKey": b64(&new_identity.public().to_bytes()),
        "signedPreKey": spk.json(),
        "oneTimePreKeys": [],
    });
    expect_error(relay.upload_keys(&user.token, &body).await, 400).await;
    // Nothing changed.
    let bundle = relay.bundle(&user.id).await;
    assert_eq!(
        unb64(bundle["identityKey"].as_str().unwrap()),
        user.device.identity.public().to_bytes()
    );
    assert_eq!(bundle["signedPreKey"]["keyId"].as_u64(), Some(1));
}

/// At most 100 one-time pre-keys are kept per user; the oldest go first.
#[backend_test]
async fn at_most_100_one_time_pre_keys_are_kept_oldest_pruned() {
    let relay = Relay::start().await;
    let mut user = relay.register(100).await; // ids 1..=100
    let body = user.device.refill_json(2, 10); // ids 101..=110
    expect_empty(relay.upload_keys(&user.token, &body).await, 200).await;

    let mut served = HashSet::new();
    for _ in 0..100 {
        let id = otpk_id(&relay.bundle(&user.id).await).expect("100 keys kept");
        assert!(served.insert(id), "key {id} served twice");
    }
    assert_eq!(
        otpk_id(&relay.bundle(&user.id).await),
        None,
        "no more than 100 kept"
    );
    let expected: HashSet<u64> = (11..=110).collect();
    assert_eq!(served, expected, "the 10 oldest keys must have been pruned");
}

/// Takeover: new identity key → keys replaced, queue emptied, live socket closed.
#[backend_test]
async fn takeover_replaces_keys_deletes_messages_and_closes_the_socket() {
    let relay = Relay::start().await;
    let alice = relay.register(12).await;
    let bob = relay.register(12).await;
    relay
        .send_ok(&bob.token, &alice.id, &message(1, b"queued one"))
        .await;
    relay
        .send_ok(&bob.token, &alice.id, &message(2, b"queued two"))
        .await;

    let mut old_socket = relay.connect(&alice.token).await;
    assert_eq!(
        old_socket.envelope().await.message.unwrap().content,
        b"queued one"
    );
    assert_eq!(
        old_socket.envelope().await.message.unwrap().content,
        b"queued two"
    );

    let mut new_device = Device::new(0);
    new_device.registration_id = 777;
    new_device.signed = SignedPreKey::new(&new_device.identity, 7);
    let new_otpks = new_device.add_otpks(3);
    let body = json!({
        "identityKey": new_device.identity_b64(),
        "registrationId": 777,
        "signedPreKey": new_device.signed.json(),
        "oneTimePreKeys": new_otpks,
    });
    expect_empty(relay.upload_keys(&alice.token, &body).await, 200).await;

    old_socket.expect_closed().await;

    let mut served = HashSet::new();
    for _ in 0..3 {
        let bundle = relay.bundle(&alice.id).await;
        assert_eq!(
            unb64(bundle["identityKey"].as_str().unwrap()),
            new_device.identity.public().to_bytes()
        );
        assert_eq!(bundle["registrationId"].as_u64(), Some(777));
        assert_eq!(bundle["signedPreKey"]["keyId"].as_u64(), Some(7));
        assert_eq!(
            unb64(bundle["signedPreKey"]["signature"].as_str().unwrap()),
            new_device.signed.signature
        );
        let id = otpk_id(&bundle).expect("new keys available");
        let served_key = unb64(bundle["oneTimePreKey"]["publicKey"].as_str().unwrap());
        assert_eq!(
            Some(served_key.as_slice()),
            new_device.otpk_public(id).as_ref().map(|k| &k[..]),
            "only new keys"
        );
        served.insert(id);
    }
    assert_eq!(served.len(), 3);
    assert_eq!(
        otpk_id(&relay.bundle(&alice.id).await),
        None,
        "all old one-time pre-keys deleted"
    );

    // The old queue is gone: after the (expected) PreKeyStatus, the first
    // envelope is one sent after the takeover.
    let mut socket = relay.connect(&alice.token).await;
    relay
        .send_ok(&bob.token, &alice.id, &message(2, b"after takeover"))
        .await;
    let status = socket.pre_key_status().await;
    assert_eq!(status.one_time_pre_key_count, 0);
    assert_eq!(
        socket.envelope().await.message.unwrap().content,
        b"after takeover"
    );
}

/// Re-sending the stored identity key is a plain refill: nothing is deleted
/// and the live socket stays open.
#[backend_test]
async fn same_identity_key_is_a_refill_not_a_takeover() {
    let relay = Relay::start().await;
    let mut alice = relay.register(12).await;
    let bob = relay.register(12).await;
    relay
        .send_ok(&bob.token, &alice.id, &message(2, b"first"))
        .await;
    let mut socket = relay.connect(&alice.token).await;
    let first = socket.envelope().await;

    let mut body = alice.device.refill_json(2, 3);
    body["identityKey"] = json!(alice.device.identity_b64());
    body["registrationId"] = json!(alice.device.registration_id);
    expect_empty(relay.upload_keys(&alice.token, &body).await, 200).await;

    // Still connected: live delivery continues on the same socket.
    relay
        .send_ok(&bob.token, &alice.id, &message(2, b"second"))
        .await;
    let second = socket.envelope().await;
    assert_eq!(second.message.unwrap().content, b"second");
    socket.close().await;

    // Nothing was deleted: both unacknowledged messages come back.
    let mut socket = relay.connect(&alice.token).await;
    let again = socket.envelopes(2).await;
    assert_eq!(again[0].id, first.id);
    assert_eq!(again[1].id, second.id);

    // 12 + 3 one-time pre-keys, all distinct.
    let mut served = HashSet::new();
    for _ in 0..15 {
        assert!(served.insert(otpk_id(&relay.bundle(&alice.id).await).expect("15 keys")));
    }
    assert_eq!(otpk_id(&relay.bundle(&alice.id).await), None);
}

#[backend_test]
async fn max_one_time_pre_keys_is_configurable() {
    let relay = Relay::start_with(&["--max-one-time-prekeys", "5"]).await;
    let mut user = relay.register(5).await; // ids 1..=5
    let body = user.device.refill_json(2, 2); // ids 6, 7
    expect_empty(relay.upload_keys(&user.token, &body).await, 200).await;
    let mut served = HashSet::new();
    while let Some(id) = otpk_id(&relay.bundle(&user.id).await) {
        assert!(served.insert(id), "key {id} served twice");
        assert!(
            served.len() <= 5,
            "more than --max-one-time-prekeys kept: {served:?}"
        );
    }
    assert_eq!(
        served,
        HashSet::from([3, 4, 5, 6, 7]),
        "the two oldest pruned"
    );
}
