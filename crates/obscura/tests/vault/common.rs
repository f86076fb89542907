//! Helpers shared by the vault tests.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use obscura_testkit::Server;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const BIN: &str = env!("CARGO_BIN_EXE_obscura");

/// A running guardian with its data directory and an HTTP client.
pub struct Guardian {
    pub server: Server,
    pub dir: Option<tempfile::TempDir>,
    pub client: reqwest::Client,
}

impl Guardian {
    /// A guardian on a fresh data directory, rate limits off unless `extra`
    /// sets them.
    pub async fn start(extra: &[&str]) -> Self {
        let dir = obscura_testkit::data_dir();
        let mut g = Self::start_in(dir.path(), extra).await;
        g.dir = Some(dir);
        g
    }

    pub async fn start_in(dir: &Path, extra: &[&str]) -> Self {
        Self::start_with_env(dir, extra, &[]).await
    }

    /// Like [`Guardian::start_in`], with environment variables.
    pub async fn start_with_env(dir: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Self {
        let dir = dir.to_str().expect("utf-8 path").to_string();
        let mut args = vec![
            "guardian",
            "--listen",
            "127.0.0.1:0",
            "--peer-listen",
            "127.0.0.1:0",
            "--mgmt-listen",
            "127.0.0.1:0",
            "--data-dir",
            &dir,
            "--rate-limit-ip-per-min",
            "0",
            "--rate-limit-identity-per-min",
            "0",
        ];
        args.extend_from_slice(extra);
        let server = Server::start(BIN, &args, envs, &["http", "peer", "mgmt"])
            .await
            .expect("guardian starts");
        Self {
            server,
            dir: None,
            client: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url("http"))
    }

    /// A URL on the management listener.
    pub fn mgmt_url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url("mgmt"))
    }

    /// Scrapes `/metrics` and parses it as Prometheus text exposition.
    pub async fn scrape(&self) -> Metrics {
        let resp = self
            .client
            .get(self.mgmt_url("/metrics"))
            .send()
            .await
            .expect("scrape");
        assert_eq!(resp.status(), 200);
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/plain"), "content-type {ct}");
        let text = resp.text().await.expect("metrics body");
        let lines = text.lines().map(|l| Ok(l.to_string()));
        Metrics(prometheus_parse::Scrape::parse(lines).expect("Prometheus text format"))
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.as_ref().expect("own data dir").path()
    }

    /// POSTs a raw body, returns (status, JSON body).
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let resp = self
            .client
            .post(self.url(path))
            .body(body)
            .send()
            .await
            .expect("request");
        status_json(resp).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, serde_json::to_vec(body).unwrap()).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        status_json(
            self.client
                .get(self.url(path))
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    pub async fn push(&self, id: &str, share: &[u8], version: u64) -> (u16, Value) {
        self.post(
            "/v1/vault/push",
            &json!({"identity": id, "share": STANDARD.encode(share), "version": version}),
        )
        .await
    }

    pub async fn pull(&self, id: &str) -> (u16, Value) {
        self.post("/v1/vault/pull", &json!({ "identity": id }))
            .await
    }

    /// Challenge → session on `prefix` ("v1" or "v2"); returns the token.
    pub async fn session(&self, id: &str, prefix: &str) -> String {
        let (st, ch) = self
            .post(
                &format!("/{prefix}/vault/auth/challenge"),
                &json!({ "identity": id }),
            )
            .await;
        assert_eq!(st, 200, "{ch}");
        let (st, s) = self
            .post(
                &format!("/{prefix}/vault/auth/session"),
                &redeem_body(id, &ch),
            )
            .await;
        assert_eq!(st, 200, "{s}");
        s["session_token"].as_str().expect("token").to_string()
    }

    /// A V2 request with `X-Session-Token`.
    pub async fn v2(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, self.url(path))
            .header("x-session-token", token);
        if let Some(b) = body {
            req = req.body(serde_json::to_vec(&b).unwrap());
        }
        status_json(req.send().await.expect("request")).await
    }

    pub async fn put_secret(
        &self,
        token: &str,
        name: &str,
        share: &[u8],
        version: u64,
    ) -> (u16, Value) {
        let body = json!({"share": STANDARD.encode(share), "version": version});
        self.v2(
            reqwest::Method::PUT,
            &format!("/v2/vault/secrets/{name}"),
            token,
            Some(body),
        )
        .await
    }

    pub async fn get_secret(&self, token: &str, name: &str) -> (u16, Value) {
        self.v2(
            reqwest::Method::GET,
            &format!("/v2/vault/secrets/{name}"),
            token,
            None,
        )
        .await
    }
}

/// The session request for a challenge response.
pub fn redeem_body(id: &str, ch: &Value) -> Value {
    json!({"identity": id, "nonce": ch["nonce"], "created_ns": ch["created_ns"], "tag": ch["tag"]})
}

pub async fn status_json(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = resp.bytes().await.expect("body");
    let v = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        panic!(
            "status {status}: not JSON ({ct}): {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });
    assert!(ct.starts_with("application/json"), "content-type {ct}");
    (status, v)
}

pub fn err(msg: &str) -> Value {
    json!({ "error": msg })
}

/// A random identity (64 lower-case hex characters).
pub fn identity() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|_| rand::random::<u8>()).collect()
}

/// Sends raw bytes (one request with `Connection: close`) and returns the
/// status and the body parsed as JSON. For what HTTP clients would normalise.
pub async fn raw_request(addr: std::net::SocketAddr, request: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("answer")
        .expect("read");
    parse_response(&buf)
}

pub fn parse_response(buf: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(buf);
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status: {text}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (
        status,
        serde_json::from_str(body).unwrap_or_else(|_| panic!("body not JSON: {text}")),
    )
}

/// Polls `check` until it returns true or `secs` pass.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One parsed scrape of `/metrics`.
pub struct Metrics(pub prometheus_parse::Scrape);

impl Metrics {
    /// The samples of `name` whose labels include all of `labels`.
    pub fn samples<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a prometheus_parse::Sample> + 'a {
        self.0.samples.iter().filter(move |s| {
            s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
    }

    /// Sum of the matching counter/gauge samples (0 when there is none), or
    /// of the observation counts of matching histograms.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        use prometheus_parse::Value;
        self.samples(name, labels)
            .map(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                Value::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
                Value::Summary(_) => 0.0,
            })
            .sum()
    }

    /// Whether a series `name` with these labels exists at all.
    pub fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.samples(name, labels).next().is_some()
    }
}
