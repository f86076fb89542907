//! Connection handling as real clients meet it: answers sent before a
//! request body was read reach a client that is still sending it.

use crate::support::*;

/// How often each early rejection is tried: a reset is a race, so one
/// lucky pass proves little.
const ROUNDS: usize = 10;

/// Sends `body` (with its Content-Length) ROUNDS times through one pooled
/// reqwest client and expects the JSON error every time, never a broken pipe
/// or connection reset.
async fn rejected_every_time(
    relay: &Relay,
    path: &str,
    token: Option<&str>,
    body: &[u8],
    status: u16,
) {
    for round in 0..ROUNDS {
        let mut req = relay
            .http
            .post(relay.url(path))
            .header("content-type", "application/octet-stream")
            .body(body.to_vec());
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) => panic!("{path}, round {round}: no answer, {e:?}"),
        };
        expect_error_in(resp, &[status]).await;
    }
}

#[tokio::test]
async fn early_rejections_reach_a_client_still_sending_its_body() {
    const LIMIT: usize = 1024 * 1024;
    let limit = LIMIT.to_string();
    let relay = Relay::start_with(&[
        "--storage-max-size-bytes",
        &limit,
        "--max-message-bytes",
        &limit,
    ])
    .await;
    let alice = relay.register(12).await;
    let bob = relay.register(12).await;
    let over = vec![0x41u8; 3 * LIMIT];
    rejected_every_time(&relay, "/v1/attachments", Some(&alice.token), &over, 400).await;
    let to_bob = format!("/v1/messages/{}", bob.id);
    rejected_every_time(&relay, &to_bob, Some(&alice.token), &over, 400).await;
    // Unauthenticated: refused before any of the 5 MiB is read.
    let upload = vec![0x42u8; 5 * 1024 * 1024];
    rejected_every_time(&relay, "/v1/attachments", None, &upload, 401).await;
    // The connections that lingered did not take the relay down with them.
    let resp = relay
        .http
        .get(relay.url(&format!("/v1/keys/{}", bob.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
