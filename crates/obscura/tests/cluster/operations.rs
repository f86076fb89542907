//! Operating a cluster: readiness reflects every backend; clean-up jobs run
//! on one node at a time and move when that node dies.

use std::time::Duration;

use serde_json::Value;
use sqlx::Connection;
use uuid::Uuid;

use crate::support::*;
use crate::{cluster, cluster_on};

/// `/readyz` names database, Redis and storage; an outage of one turns
/// the node unready (503 JSON naming it) without touching the others.
#[tokio::test]
async fn readyz_reflects_every_backend() {
    let Some(nodes) = cluster("cluster::readyz_reflects_every_backend", &[]).await else {
        return;
    };
    let node = &nodes[0];
    let ready = expect_json(
        node.http
            .get(node.mgmt_url("/readyz"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    for backend in ["database", "redis", "storage"] {
        assert_eq!(ready["checks"][backend], "ok", "{ready}");
    }

    node.deployment.as_ref().unwrap().s3.kill();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let last = loop {
        let resp = node
            .http
            .get(node.mgmt_url("/readyz"))
            .send()
            .await
            .unwrap();
        if resp.status().as_u16() == 503 {
            break resp.json::<Value>().await.expect("503 body is JSON");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still ready with the object store gone"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(last["checks"]["storage"], "failing", "{last}");
    assert_eq!(last["checks"]["database"], "ok", "{last}");
    assert!(
        last["error"].as_str().unwrap().contains("storage"),
        "{last}"
    );
}

/// The `cleanup` lease row: (holder, expiry in ms).
async fn lease(url: &str, schema: &str) -> Option<(Uuid, i64)> {
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .expect("test connects to PostgreSQL");
    let row: Option<(Uuid, i64)> = sqlx::query_as(&format!(
        "SELECT holder, expires_at_ms FROM \"{schema}\".job_leases WHERE name = 'cleanup'"
    ))
    .fetch_optional(&mut conn)
    .await
    .expect("lease query");
    let _ = conn.close().await;
    row
}

/// Three nodes, one clean-up holder, renewing its lease; when the holder
/// is killed another node takes the job over once the lease expires.
#[tokio::test]
async fn cleanup_runs_on_one_node_and_moves_when_it_dies() {
    let extra = ["--cleanup-interval-secs", "1"];
    let Some((deployment, mut nodes)) = cluster_on(
        "cluster::cleanup_runs_on_one_node_and_moves_when_it_dies",
        &extra,
    )
    .await
    else {
        return;
    };
    let (url, schema) = (&deployment.services.database_url, &deployment.schema);

    // Observe a few intervals: one holder, lease renewed.
    let mut holders = std::collections::HashSet::new();
    let mut expiries = Vec::new();
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        if let Some((holder, expires)) = lease(url, schema).await {
            holders.insert(holder);
            expiries.push(expires);
        }
    }
    assert_eq!(holders.len(), 1, "the lease flip-flopped between nodes");
    assert!(
        expiries.first() < expiries.last(),
        "the holder renews its lease"
    );
    let first = *holders.iter().next().unwrap();

    // Kill nodes until the holder was among them; the job must move.
    for victim in 0..nodes.len() {
        nodes[victim].server.kill().await;
        let moved = eventually(Duration::from_secs(8), || async {
            lease(url, schema).await.is_some_and(|(h, _)| h != first)
        })
        .await;
        if moved {
            return;
        }
        if victim == nodes.len() - 1 {
            break;
        }
    }
    // The last node standing was the holder all along: a new node takes over.
    let args = crate::node_args(&deployment, &extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    nodes.push(Relay::start_node(Some(deployment.clone()), &args, &[]).await);
    let moved = eventually(Duration::from_secs(8), || async {
        lease(url, schema).await.is_some_and(|(h, _)| h != first)
    })
    .await;
    assert!(moved, "nobody took the clean-up over from a dead holder");
}
