//! A node loses Redis (a TCP proxy between it and Redis is cut): it turns
//! unready, its shared rate limiter follows `--rate-limit-redis-failure`,
//! and messages for its clients still arrive — by the store poll — then
//! everything recovers when Redis is back.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::node_args;
use crate::support::*;
use obscura_testkit::backends::Backend;

/// Forwards every connection on an ephemeral port to `upstream`; cutting it
/// closes the listener and every forwarded connection.
struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    tasks: JoinSet<()>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let mut proxy = Proxy {
            addr: "127.0.0.1:0".parse().unwrap(),
            upstream,
            tasks: JoinSet::new(),
        };
        proxy.listen().await;
        proxy
    }

    async fn listen(&mut self) {
        let listener = TcpListener::bind(self.addr).await.expect("proxy binds");
        self.addr = listener.local_addr().unwrap();
        let upstream = self.upstream;
        self.tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
    }

    /// Redis becomes unreachable for whoever goes through the proxy.
    fn cut(&mut self) {
        self.tasks.abort_all();
    }

    /// The same address works again.
    async fn restore(&mut self) {
        self.listen().await;
    }
}

#[tokio::test]
async fn a_node_without_redis_degrades_and_loses_nothing() {
    let Some(Backend::Postgres(services)) =
        Backend::postgres("cluster::a_node_without_redis_degrades_and_loses_nothing")
    else {
        return;
    };
    let deployment = services.deployment().await.expect("deployment");
    let redis: SocketAddr = services
        .redis_url
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .parse()
        .expect("redis URL is host:port");
    let mut proxy = Proxy::start(redis).await;
    let mut cut_off = deployment.clone();
    cut_off.services.redis_url = format!("redis://{}", proxy.addr);

    let args = node_args(&deployment, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let healthy = Relay::start_node(Some(deployment.clone()), &args, &[]).await;
    // The node under test polls its sessions' queues every second and
    // refuses requests while it cannot reach the shared limiter.
    let mut args = node_args(&deployment, &[]);
    args.retain(|a| a != "--delivery-poll-secs" && a != "3600");
    args.extend(
        [
            "--delivery-poll-secs",
            "1",
            "--rate-limit-redis-failure",
            "closed",
            "--redis-timeout-ms",
            "300",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let node = Relay::start_node(Some(cut_off), &args, &[]).await;

    let alice = healthy.register(12).await;
    let bob = healthy.register(12).await;
    let mut socket = node.connect(&bob.token).await;
    socket.sync().await;
    healthy
        .send_ok(&alice.token, &bob.id, &message(1, b"before"))
        .await;
    let e = socket.envelope().await;
    assert_eq!(e.message.unwrap().content, b"before");
    socket.ack_each(&[&e.id]).await;

    proxy.cut();
    let readyz = |relay: &Relay| {
        let url = relay.mgmt_url("/readyz");
        let http = relay.http.clone();
        async move {
            let resp = http.get(url).send().await.unwrap();
            (
                resp.status().as_u16(),
                resp.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let unready = eventually(TIMEOUT, || async { readyz(&node).await.0 == 503 }).await;
    assert!(unready, "readyz still 200 without Redis");
    assert_eq!(readyz(&node).await.1["checks"]["redis"], "failing");
    assert_eq!(
        readyz(&healthy).await.0,
        200,
        "the other node is unaffected"
    );

    // Fail closed: the node cannot consult the shared buckets.
    let resp = node
        .http
        .put(node.url("/v1/push-tokens"))
        .bearer_auth(&bob.token)
        .json(&serde_json::json!({"token": "t"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    assert!(resp.headers().contains_key("retry-after"));

    // The notification is lost; the poll still delivers.
    healthy
        .send_ok(&alice.token, &bob.id, &message(1, b"during the outage"))
        .await;
    let e = socket.envelope().await;
    assert_eq!(e.message.unwrap().content, b"during the outage");
    socket.ack_each(&[&e.id]).await;

    proxy.restore().await;
    let ready = eventually(Duration::from_secs(20), || async {
        readyz(&node).await.0 == 200
    })
    .await;
    assert!(ready, "the node did not recover when Redis came back");
    expect_empty(
        node.http
            .put(node.url("/v1/push-tokens"))
            .bearer_auth(&bob.token)
            .json(&serde_json::json!({"token": "t"}))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
}
