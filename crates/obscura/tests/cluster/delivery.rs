//! Messages, replacement and takeover across nodes.

use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::cluster;
use crate::support::*;

/// A message accepted by one node reaches the recipient's socket on
/// another at once (pushed through Redis: the nodes' poll is an hour).
#[tokio::test]
async fn messages_cross_nodes_live() {
    let Some(nodes) = cluster("cluster::messages_cross_nodes_live", &[]).await else {
        return;
    };
    let alice = nodes[0].register(12).await;
    let bob = nodes[0].register(12).await;
    let mut bob_socket = nodes[1].connect(&bob.token).await;
    bob_socket.sync().await;
    let mut alice_socket = nodes[2].connect(&alice.token).await;
    alice_socket.sync().await;

    for (i, via) in [0, 2, 1].into_iter().enumerate() {
        let text = format!("to bob via node {via}");
        nodes[via]
            .send_ok(&alice.token, &bob.id, &message(1, text.as_bytes()))
            .await;
        let envelope = bob_socket.envelope().await;
        assert_eq!(
            envelope.message.unwrap().content,
            text.as_bytes(),
            "message {i}"
        );
        assert_eq!(envelope.source_user_id, alice.id);
        bob_socket.ack_each(&[&envelope.id]).await;
    }
    // And back, to a socket on the first node.
    nodes[1]
        .send_ok(&bob.token, &alice.id, &message(2, b"reply"))
        .await;
    assert_eq!(
        alice_socket.envelope().await.message.unwrap().content,
        b"reply"
    );
}

/// A second connection on another node replaces the first (one live
/// socket per user across the cluster), and only the new one receives.
#[tokio::test]
async fn a_connection_on_another_node_replaces_the_first() {
    let Some(nodes) = cluster(
        "cluster::a_connection_on_another_node_replaces_the_first",
        &[],
    )
    .await
    else {
        return;
    };
    let alice = nodes[0].register(12).await;
    let bob = nodes[0].register(12).await;
    let mut first = nodes[0].connect(&bob.token).await;
    first.sync().await;
    let mut second = nodes[1].connect(&bob.token).await;
    second.sync().await;

    let close = first.expect_closed().await.expect("a close frame");
    assert_eq!(close.code, CloseCode::Library(4000));
    assert_eq!(close.reason.as_str(), "replaced");

    nodes[2]
        .send_ok(&alice.token, &bob.id, &message(1, b"after replacement"))
        .await;
    assert_eq!(
        second.envelope().await.message.unwrap().content,
        b"after replacement"
    );
    assert!(second.is_open().await, "the newer connection stays open");
}

/// Device takeover through one node closes the user's socket on another.
#[tokio::test]
async fn takeover_on_one_node_closes_the_socket_on_another() {
    let Some(nodes) = cluster(
        "cluster::takeover_on_one_node_closes_the_socket_on_another",
        &[],
    )
    .await
    else {
        return;
    };
    let alice = nodes[0].register(12).await;
    let mut socket = nodes[1].connect(&alice.token).await;
    socket.sync().await;

    let mut new_device = Device::new(0);
    new_device.signed = SignedPreKey::new(&new_device.identity, 7);
    let otpks = new_device.add_otpks(3);
    let body = json!({
        "identityKey": new_device.identity_b64(),
        "registrationId": 4242,
        "signedPreKey": new_device.signed.json(),
        "oneTimePreKeys": otpks,
    });
    expect_empty(nodes[0].upload_keys(&alice.token, &body).await, 200).await;

    let close = socket.expect_closed().await.expect("a close frame");
    assert_eq!(close.code, CloseCode::Library(4000));
    assert_eq!(close.reason.as_str(), "takeover");
}
