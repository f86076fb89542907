//! Black-box tests of several `obscura relay` processes forming one
//! deployment: PostgreSQL (one schema), Redis (one key prefix) and an S3
//! server shared by three nodes on their own ports, as behind a load
//! balancer. Clients are pinned to nodes explicitly to prove what crosses
//! between them. Skipped (with a printed reason) without the services,
//! failed instead under `OBSCURA_REQUIRE_BACKENDS=1` (CI).
//!
//! The nodes poll the store only every hour here (`--delivery-poll-secs`),
//! so anything that arrives within the test's timeouts was pushed through
//! Redis, not found by a poll.

// The relay suite's fixtures (client keys, gateway client, assertions).
#[path = "../relay/support.rs"]
#[allow(unused_imports)]
mod support;

mod delivery;
mod failover;
mod limits;
mod measure;
mod operations;
mod outage;
mod startup;

use obscura_testkit::backends::{Backend, Deployment};
use support::Relay;

/// Three nodes of one fresh deployment, sharing a JWT secret (as every
/// node of a real deployment must), or `None` when the test is skipped.
pub async fn cluster(test: &str, extra: &[&str]) -> Option<Vec<Relay>> {
    cluster_on(test, extra).await.map(|(_, nodes)| nodes)
}

/// As [`cluster`], with the deployment (to add nodes or inspect services).
pub async fn cluster_on(test: &str, extra: &[&str]) -> Option<(Deployment, Vec<Relay>)> {
    let Backend::Postgres(services) = Backend::postgres(test)? else {
        return None;
    };
    let deployment = services
        .deployment()
        .await
        .expect("a PostgreSQL schema, Redis prefix and S3 server");
    let args = node_args(&deployment, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Relay::start_node(Some(deployment.clone()), &args, &[]).await);
    }
    Some((deployment, nodes))
}

/// Flags every node of `deployment` shares (besides its backends).
pub fn node_args(deployment: &Deployment, extra: &[&str]) -> Vec<String> {
    let secret = format!("cluster-test-secret-{}", deployment.schema);
    let mut args: Vec<String> = vec![
        "--jwt-secret".into(),
        secret,
        "--delivery-poll-secs".into(),
        "3600".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}
