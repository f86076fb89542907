//! The management listener (Prometheus `/metrics`, `/livez`, `/readyz`),
//! request ids and structured logs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::common::{BIN, Guardian, Metrics, err, eventually, identity, random_bytes};

const REQUESTS: &str = "obscura_guardian_http_requests_total";
const DURATION: &str = "obscura_guardian_http_request_duration_seconds";
const OPS: &str = "obscura_guardian_vault_operations_total";
const AUTH: &str = "obscura_guardian_auth_total";
const RATE_LIMITED: &str = "obscura_guardian_rate_limited_total";
const PEERS: &str = "obscura_guardian_peers";
const HEARTBEATS: &str = "obscura_guardian_heartbeats_total";
const SHARES: &str = "obscura_guardian_stored_shares";

fn op(m: &Metrics, op: &str, outcome: &str) -> f64 {
    m.value(OPS, &[("op", op), ("outcome", outcome)])
}

fn auth(m: &Metrics, step: &str, outcome: &str) -> f64 {
    m.value(AUTH, &[("step", step), ("outcome", outcome)])
}

#[tokio::test]
async fn metrics_are_exposed_and_move_with_requests() {
    let g = Guardian::start(&[]).await;
    let before = g.scrape().await;
    // Described series exist from the start, gauges included.
    for state in ["unknown", "alive", "suspect", "dead"] {
        assert_eq!(before.value(PEERS, &[("state", state)]), 0.0, "{state}");
        assert!(before.has(PEERS, &[("state", state)]), "{state}");
    }
    assert!(before.has(SHARES, &[]));
    assert_eq!(op(&before, "push", "stored"), 0.0);

    // V1: stored, stale, found, not found, rejected.
    let id = identity();
    assert_eq!(g.push(&id, b"one", 1).await.0, 200);
    assert_eq!(g.push(&id, b"old", 1).await.0, 400);
    assert_eq!(g.push("nothex", b"x", 2).await.0, 400);
    assert_eq!(g.pull(&id).await.0, 200);
    assert_eq!(g.pull(&identity()).await.0, 404);
    // Auth and V2, including a secret name that must not become a label.
    let token = g.session(&identity(), "v2").await;
    let name = "my-very-own-secret-name";
    assert_eq!(g.put_secret(&token, name, b"s", 1).await.0, 200);
    assert_eq!(g.get_secret(&token, name).await.0, 200);
    let secrets = "/v2/vault/secrets";
    assert_eq!(g.v2(Method::GET, secrets, &token, None).await.0, 200);
    let path = format!("{secrets}/{name}");
    assert_eq!(g.v2(Method::DELETE, &path, &token, None).await.0, 200);
    assert_eq!(g.get_secret(&token, name).await.0, 404);
    assert_eq!(g.get_secret("bogus", name).await.0, 401);
    let (st, ch) = g
        .post("/v1/vault/auth/challenge", &json!({"identity": id}))
        .await;
    assert_eq!(st, 200);
    let mut forged = crate::common::redeem_body(&id, &ch);
    forged["tag"] = json!(STANDARD.encode([0u8; 32]));
    assert_eq!(g.post("/v1/vault/auth/session", &forged).await.0, 401);
    assert_eq!(g.get("/no/such/route").await, (404, err("not found")));

    let after = g.scrape().await;
    for (o, outcome, n) in [
        ("push", "stored", 1.0),
        ("push", "stale_version", 1.0),
        ("push", "rejected", 1.0),
        ("pull", "found", 1.0),
        ("pull", "not_found", 1.0),
        ("put", "stored", 1.0),
        ("get", "found", 1.0),
        ("get", "not_found", 1.0),
        ("get", "unauthenticated", 1.0),
        ("list", "listed", 1.0),
        ("delete", "deleted", 1.0),
    ] {
        assert_eq!(op(&after, o, outcome), n, "{o} {outcome}");
    }
    for (step, outcome, n) in [
        ("challenge", "issued", 2.0),
        ("session", "issued", 1.0),
        ("session", "invalid", 1.0),
        ("session_token", "ok", 5.0),
        ("session_token", "invalid", 1.0),
    ] {
        assert_eq!(auth(&after, step, outcome), n, "{step} {outcome}");
    }
    let push_ok = [
        ("method", "POST"),
        ("route", "/v1/vault/push"),
        ("status", "200"),
    ];
    assert_eq!(after.value(REQUESTS, &push_ok), 1.0);
    assert_eq!(
        after.value(REQUESTS, &[("route", "/v1/vault/push"), ("status", "400")]),
        2.0
    );
    assert_eq!(
        after.value(
            REQUESTS,
            &[("route", "/v2/vault/secrets/:name"), ("method", "GET")]
        ),
        3.0
    );
    assert_eq!(
        after.value(REQUESTS, &[("route", "unmatched"), ("status", "404")]),
        1.0
    );
    // Latency histograms per route, in the documented buckets.
    assert_eq!(
        after.value(DURATION, &[("route", "/v1/vault/push"), ("method", "POST")]),
        3.0
    );
    assert_eq!(after.value(SHARES, &[]), 1.0);
    // Raw paths never become labels.
    assert!(
        after
            .0
            .samples
            .iter()
            .all(|s| s.labels.get("route").is_none_or(|r| !r.contains(name))),
        "a secret name leaked into a route label"
    );
}

#[tokio::test]
async fn rate_limit_rejections_are_counted_by_scope() {
    let g = Guardian::start(&[
        "--rate-limit-ip-per-min",
        "1",
        "--rate-limit-ip-burst",
        "3",
        "--rate-limit-identity-per-min",
        "1",
        "--rate-limit-identity-burst",
        "1",
    ])
    .await;
    let id = identity();
    assert_eq!(g.pull(&id).await.0, 404);
    assert_eq!(g.pull(&id).await.0, 429); // identity burst spent
    assert_eq!(g.pull(&identity()).await.0, 404);
    assert_eq!(g.pull(&identity()).await.0, 429); // IP burst spent
    let m = g.scrape().await;
    assert_eq!(m.value(RATE_LIMITED, &[("scope", "identity")]), 1.0);
    assert_eq!(m.value(RATE_LIMITED, &[("scope", "ip")]), 1.0);
    assert_eq!(op(&m, "pull", "rate_limited"), 2.0);
    assert_eq!(
        m.value(REQUESTS, &[("route", "/v1/vault/pull"), ("status", "429")]),
        2.0
    );
}

#[tokio::test]
async fn peer_liveness_gauges_follow_the_peer() {
    let b = Guardian::start(&[]).await;
    let b_peer = b.server.addr("peer").to_string();
    let a = Guardian::start(&["--peers", &b_peer, "--heartbeat-interval-ms", "200"]).await;
    let alive = |m: &Metrics| m.value(PEERS, &[("state", "alive")]);
    let dead = |m: &Metrics| m.value(PEERS, &[("state", "dead")]);
    eventually(20, "peer reported alive", || async {
        alive(&a.scrape().await) == 1.0
    })
    .await;
    assert!(a.scrape().await.value(HEARTBEATS, &[("outcome", "acked")]) >= 1.0);
    drop(b);
    eventually(20, "peer reported dead", || async {
        let m = a.scrape().await;
        dead(&m) == 1.0 && alive(&m) == 0.0
    })
    .await;
    assert!(a.scrape().await.value(HEARTBEATS, &[("outcome", "missed")]) >= 1.0);
}

/// A peer that answers one message per connection and then closes it (the
/// reference guardian's listener): every heartbeat is still acked, none is
/// counted as missed, and the timestamp is in Unix seconds.
#[tokio::test]
async fn heartbeats_to_a_one_message_per_connection_peer_are_never_missed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer = listener.local_addr().unwrap().to_string();
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut frame = [0u8; 6 + 18];
            if s.read_exact(&mut frame).await.is_err() {
                continue;
            }
            assert_eq!(&frame[..6], &[1, 0x01, 0, 0, 0, 18], "heartbeat header");
            let ts = u64::from_be_bytes(frame[16..24].try_into().unwrap());
            s.write_all(&[1, 0x02, 0, 0, 0, 0]).await.unwrap();
            let _ = seen_tx.send(ts);
            // dropped: one message per connection
        }
    });
    let a = Guardian::start(&["--peers", &peer, "--heartbeat-interval-ms", "100"]).await;
    for _ in 0..6 {
        let ts = tokio::time::timeout(Duration::from_secs(10), seen_rx.recv())
            .await
            .expect("a heartbeat within 10 s")
            .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(
            ts.abs_diff(now) <= 5,
            "timestamp {ts} is not Unix seconds (now {now})"
        );
    }
    let m = a.scrape().await;
    assert!(m.value(HEARTBEATS, &[("outcome", "acked")]) >= 5.0);
    assert_eq!(m.value(HEARTBEATS, &[("outcome", "missed")]), 0.0);
    assert_eq!(m.value(PEERS, &[("state", "alive")]), 1.0);
}

#[tokio::test]
async fn livez_and_readyz_report_the_guardian_state() {
    let g = Guardian::start(&[]).await;
    let get = |path: &'static str| {
        let req = g.client.get(g.mgmt_url(path));
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(get("/livez").await, (200, json!({"status": "ok"})));
    assert_eq!(get("/readyz").await, (200, json!({"status": "ready"})));
    // Storage unusable (its layout gone): not ready, but still alive.
    let vaults = g.data_dir().join("vaults");
    let moved = g.data_dir().join("vaults.away");
    std::fs::rename(&vaults, &moved).unwrap();
    let (st, v) = get("/readyz").await;
    assert_eq!((st, &v["status"]), (503, &json!("not ready")), "{v}");
    assert_eq!(get("/livez").await.0, 200);
    std::fs::rename(&moved, &vaults).unwrap();
    assert_eq!(get("/readyz").await.0, 200);
    assert_eq!(get("/nothing").await.0, 404);
}

#[tokio::test]
async fn request_ids_are_echoed_or_created_on_every_answer() {
    let g = Guardian::start(&[]).await;
    let send = |path: &str, id: Option<&str>| {
        let mut req = g.client.post(g.url(path)).body("{}");
        if let Some(id) = id {
            req = req.header("x-request-id", id);
        }
        async move {
            let r = req.send().await.unwrap();
            let id = r
                .headers()
                .get("x-request-id")
                .map(|v| v.to_str().unwrap().to_string());
            (r.status().as_u16(), id)
        }
    };
    // Echoed, on a success, an error and an unknown route alike.
    assert_eq!(
        send("/v1/vault/pull", Some("client-chosen.42")).await,
        (400, Some("client-chosen.42".into()))
    );
    assert_eq!(
        send("/nowhere", Some("abc")).await,
        (404, Some("abc".into()))
    );
    let r = g
        .client
        .get(g.url("/v1/vault/health"))
        .header("x-request-id", "h-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "h-1");
    // Absent or unusable: a fresh UUID each time.
    let (_, a) = send("/v1/vault/pull", None).await;
    let (_, b) = send("/v1/vault/pull", Some("has spaces")).await;
    for id in [&a, &b] {
        let id = id.as_deref().expect("request id");
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    }
    assert_ne!(a, b);
}

/// A guardian whose stderr (its logs) goes to a file; killed on drop.
struct Logged {
    _child: tokio::process::Child,
    addrs: HashMap<String, SocketAddr>,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Logged {
    async fn start(extra: &[&str]) -> Self {
        let dir = obscura_testkit::data_dir();
        let log = dir.path().join("stderr.log");
        let data = dir.path().join("data");
        let mut child = tokio::process::Command::new(BIN)
            .args([
                "guardian",
                "--listen",
                "127.0.0.1:0",
                "--peer-listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(&data)
            .args(extra)
            .env("OBSCURA_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut addrs = HashMap::new();
        while !(addrs.contains_key("http") && addrs.contains_key("peer")) {
            let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
                .await
                .expect("guardian reports its listeners")
                .unwrap()
                .expect("guardian running");
            if let ["listening", name, addr] = line.split_whitespace().collect::<Vec<_>>()[..] {
                addrs.insert(name.to_string(), addr.parse().unwrap());
            }
        }
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            _child: child,
            addrs,
            log,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addrs["http"])
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

#[tokio::test]
async fn json_logs_carry_the_request_id_and_no_secrets() {
    let g = Logged::start(&["--log-format", "json"]).await;
    let client = reqwest::Client::new();
    let post = |path: &str, rid: &str, body: Value| {
        client
            .post(g.url(path))
            .header("x-request-id", rid)
            .json(&body)
            .send()
    };
    let id = identity();
    let share = STANDARD.encode(random_bytes(48));
    let r = post(
        "/v1/vault/push",
        "rid-push-1",
        json!({"identity": id, "share": share, "version": 1}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let ch: Value = post(
        "/v2/vault/auth/challenge",
        "rid-ch",
        json!({"identity": id}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let session: Value = post(
        "/v2/vault/auth/session",
        "rid-sess",
        crate::common::redeem_body(&id, &ch),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let token = session["session_token"].as_str().unwrap().to_string();
    let secret = STANDARD.encode(random_bytes(48));
    let r = client
        .put(g.url("/v2/vault/secrets/logged"))
        .header("x-request-id", "rid-put-1")
        .header("x-session-token", &token)
        .json(&json!({"share": secret, "version": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The blocking write's own log line sits in the request's span.
    eventually(20, "the secret write logged", || async {
        g.lines().iter().any(|l| l.contains("secret stored"))
    })
    .await;
    let lines = g.lines();
    let parsed: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let in_request = |msg: &str, rid: &str| {
        parsed
            .iter()
            .any(|v| v["fields"]["message"] == msg && v["span"]["request_id"] == rid)
    };
    assert!(in_request("share stored", "rid-push-1"), "{lines:#?}");
    assert!(in_request("secret stored", "rid-put-1"), "{lines:#?}");
    assert!(in_request("request answered", "rid-sess"), "{lines:#?}");
    for secret_text in [
        share.as_str(),
        secret.as_str(),
        token.as_str(),
        ch["nonce"].as_str().unwrap(),
        ch["tag"].as_str().unwrap(),
    ] {
        assert!(
            lines.iter().all(|l| !l.contains(secret_text)),
            "logged: {secret_text}"
        );
    }
}

#[tokio::test]
async fn text_logs_are_the_default_and_show_the_request_span() {
    let g = Logged::start(&[]).await;
    let r = reqwest::Client::new()
        .get(g.url("/v1/vault/health"))
        .header("x-request-id", "rid-text")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually(20, "the request logged", || async {
        g.lines()
            .iter()
            .any(|l| l.contains("request answered") && l.contains("rid-text"))
    })
    .await;
    assert!(g.lines().iter().all(|l| !l.starts_with('{')));
}
