//! A node dies (SIGKILL) while messages stream: nothing that was answered
//! 201 is lost; the client reconnects to another node and gets it all.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::cluster;
use crate::support::*;

const MESSAGES: usize = 120;

#[tokio::test]
async fn sigkill_mid_stream_loses_no_accepted_message() {
    let Some(mut nodes) =
        cluster("cluster::sigkill_mid_stream_loses_no_accepted_message", &[]).await
    else {
        return;
    };
    let alice = nodes[0].register(12).await;
    let bob = nodes[0].register(12).await;
    let mut socket = nodes[1].connect(&bob.token).await;
    socket.sync().await;

    // Content → envelope ids seen, per connection; the ACK of the first
    // connection's last messages may die with the node (at-least-once).
    let mut first_seen: HashMap<Vec<u8>, String> = HashMap::new();
    let mut accepted: HashSet<Vec<u8>> = HashSet::new();
    let mut killed = false;
    for i in 0..MESSAGES {
        let content = format!("message {i}").into_bytes();
        // Round-robin over the nodes still alive; a refused request is not 201.
        let via = if killed { [0, 2][i % 2] } else { i % 3 };
        let resp = nodes[via]
            .http
            .post(nodes[via].url(&format!("/v1/messages/{}", bob.id)))
            .bearer_auth(&alice.token)
            .body(prost::Message::encode_to_vec(&message(1, &content)))
            .send()
            .await;
        if matches!(&resp, Ok(r) if r.status().as_u16() == 201) {
            accepted.insert(content);
        }
        if !killed {
            // Read (and acknowledge) what has arrived so far.
            while let Next::Frame(frame) = socket.next_within(Duration::from_millis(20)).await {
                if let Some(obscura_proto::web_socket_frame::Payload::Envelope(e)) = frame.payload {
                    let content = e.message.unwrap().content;
                    assert!(
                        first_seen.insert(content, e.id.clone()).is_none(),
                        "delivered twice on one connection"
                    );
                    socket.ack_each(&[&e.id]).await;
                }
            }
        }
        if i == MESSAGES / 3 {
            nodes[1].server.kill().await;
            killed = true;
        }
    }
    assert!(
        accepted.len() >= MESSAGES * 2 / 3,
        "most sends were accepted"
    );

    // Reconnect to another node: everything accepted and not acknowledged
    // (or acknowledged only to the dead node) arrives, each once.
    let mut socket = nodes[2].connect(&bob.token).await;
    let mut second_seen: HashMap<Vec<u8>, String> = HashMap::new();
    let mut duplicates = 0;
    let missing = |seen1: &HashMap<Vec<u8>, String>, seen2: &HashMap<Vec<u8>, String>| {
        accepted
            .iter()
            .filter(|c| !seen1.contains_key(*c) && !seen2.contains_key(*c))
            .count()
    };
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while missing(&first_seen, &second_seen) > 0 {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match socket.next_within(left).await {
            Next::Frame(frame) => {
                if let Some(obscura_proto::web_socket_frame::Payload::Envelope(e)) = frame.payload {
                    let content = e.message.unwrap().content;
                    if let Some(earlier) = first_seen.get(&content) {
                        // Redelivered: its ACK went to the killed node. Same envelope.
                        assert_eq!(earlier, &e.id, "a redelivery keeps its id");
                        duplicates += 1;
                    }
                    assert!(
                        second_seen.insert(content, e.id.clone()).is_none(),
                        "delivered twice on one connection"
                    );
                    socket.ack_each(&[&e.id]).await;
                }
            }
            other => panic!(
                "{} accepted messages never arrived ({other:?})",
                missing(&first_seen, &second_seen)
            ),
        }
    }
    eprintln!(
        "accepted {}, delivered before the kill {}, after {}, redelivered (ACK lost with the node) {duplicates}",
        accepted.len(),
        first_seen.len(),
        second_seen.len()
    );
}
