//! Measurements behind docs/deploy.md ("What was measured"), not
//! assertions: `cargo test --test cluster -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use crate::cluster;
use crate::support::*;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Send → live delivery latency, and send throughput with 8 concurrent
/// senders, on three PostgreSQL+Redis nodes and on one SQLite relay.
#[tokio::test]
#[ignore = "measurement; run with --ignored --nocapture"]
async fn measure_delivery_latency_and_send_throughput() {
    let Some(nodes) = cluster("cluster::measure", &[]).await else {
        return;
    };
    let single = Relay::start_node(None, &[], &[]).await;
    for (name, send_nodes, receive_node) in [
        (
            "cluster (send node 0 → socket on node 1)",
            vec![&nodes[0], &nodes[2]],
            &nodes[1],
        ),
        ("single SQLite relay", vec![&single], &single),
    ] {
        let alice = send_nodes[0].register(12).await;
        let bob = send_nodes[0].register(12).await;
        let mut socket = receive_node.connect(&bob.token).await;
        socket.sync().await;
        let mut latencies = Vec::new();
        for i in 0..200u32 {
            let start = Instant::now();
            send_nodes[0]
                .send_ok(&alice.token, &bob.id, &message(1, &i.to_be_bytes()))
                .await;
            let e = socket.envelope().await;
            latencies.push(start.elapsed());
            socket.ack_each(&[&e.id]).await;
        }
        latencies.sort();
        let total = 1600;
        let start = Instant::now();
        let senders = (0..8).map(|s| {
            let node = send_nodes[s % send_nodes.len()];
            let (token, to) = (alice.token.clone(), bob.id.clone());
            async move {
                for i in 0..total / 8 {
                    node.send_ok(&token, &to, &message(1, format!("{s}-{i}").as_bytes()))
                        .await;
                }
            }
        });
        futures::future::join_all(senders).await;
        let rate = total as f64 / start.elapsed().as_secs_f64();
        eprintln!(
            "{name}: send→receive p50 {:?} p99 {:?}; {total} sends by 8 clients: {rate:.0} msg/s",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
        );
    }
}
