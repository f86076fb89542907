//! `obscura bench vault`: push and pull throughput and latency against a
//! guardian, over keep-alive connections. Phases run one after the other:
//! V1 push, V1 pull, V2 PUT, V2 GET. Each of the `C` workers owns one
//! identity (so versions only go up without coordination) with one V2
//! session, set up before the clock starts.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::{StatusCode, Url};
use serde::Serialize;
use serde_json::json;
use tokio::time::Instant;

use crate::report::{Errors, Latency, LatencySummary, Table, emit, rate, request_error_kind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    V1Push,
    V1Pull,
    V2Put,
    V2Get,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::V1Push => "v1 push",
            Phase::V1Pull => "v1 pull",
            Phase::V2Put => "v2 put",
            Phase::V2Get => "v2 get",
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct VaultArgs {
    /// Base URL of the guardian's client API.
    #[arg(long, value_parser = crate::base_url)]
    pub url: Url,
    /// Concurrent keep-alive clients (one identity each).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Decoded share size in bytes.
    #[arg(long, default_value_t = 1024)]
    pub share_size: usize,
    /// Operations per phase.
    #[arg(long, default_value_t = 20_000)]
    pub ops: u64,
    /// Phases to run, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "v1-push,v1-pull,v2-put,v2-get"
    )]
    pub phases: Vec<Phase>,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    pub phase: Phase,
    pub ops: u64,
    pub ok: u64,
    pub secs: f64,
    pub ops_per_sec: f64,
    pub latency: LatencySummary,
    pub errors: Errors,
}

#[derive(Debug, Clone, Serialize)]
pub struct VaultReport {
    pub concurrency: usize,
    pub share_size: usize,
    pub phases: Vec<PhaseReport>,
}

/// One worker's identity and session, and its next version number.
struct Worker {
    identity: String,
    session: String,
    version: u64,
}

struct Client {
    http: reqwest::Client,
    base: Url,
    /// Base64 of the share, identical for every write (the guardian does not care).
    share_b64: String,
}

impl Client {
    fn url(&self, path: &str) -> anyhow::Result<Url> {
        Ok(self.base.join(path)?)
    }

    async fn setup(&self) -> anyhow::Result<Worker> {
        let identity = hex::encode(rand::random::<[u8; 32]>());
        let challenge: serde_json::Value = self
            .ok_json(
                self.http
                    .post(self.url("v2/vault/auth/challenge")?)
                    .json(&json!({ "identity": identity })),
            )
            .await?;
        let mut session_req = challenge.clone();
        session_req["identity"] = json!(identity);
        let session: serde_json::Value = self
            .ok_json(
                self.http
                    .post(self.url("v2/vault/auth/session")?)
                    .json(&session_req),
            )
            .await?;
        let session = session["session_token"]
            .as_str()
            .context("no session_token")?
            .to_owned();
        let mut w = Worker {
            identity,
            session,
            version: 1,
        };
        // Something to pull and get, whatever phases follow.
        for phase in [Phase::V1Push, Phase::V2Put] {
            if let Err(kind) = self.op(phase, &mut w).await {
                bail!("setup {} failed: {kind}", phase.name());
            }
        }
        Ok(w)
    }

    async fn ok_json(&self, req: reqwest::RequestBuilder) -> anyhow::Result<serde_json::Value> {
        let r = req.send().await?;
        let status = r.status();
        if !status.is_success() {
            bail!("{status}: {}", r.text().await.unwrap_or_default());
        }
        Ok(r.json().await?)
    }

    /// One operation; `Err(kind)` on failure.
    async fn op(&self, phase: Phase, w: &mut Worker) -> Result<(), String> {
        let url = |p: &str| self.url(p).map_err(|_| "url".to_string());
        let req = match phase {
            Phase::V1Push => {
                w.version += 1;
                self.http.post(url("v1/vault/push")?).json(&json!({
                    "identity": w.identity, "share": self.share_b64, "version": w.version,
                }))
            }
            Phase::V1Pull => self
                .http
                .post(url("v1/vault/pull")?)
                .json(&json!({ "identity": w.identity })),
            Phase::V2Put => {
                w.version += 1;
                self.http
                    .put(url("v2/vault/secrets/bench")?)
                    .header("x-session-token", &w.session)
                    .json(&json!({ "share": self.share_b64, "version": w.version }))
            }
            Phase::V2Get => self
                .http
                .get(url("v2/vault/secrets/bench")?)
                .header("x-session-token", &w.session),
        };
        match req.send().await {
            Ok(r) if r.status() == StatusCode::OK => {
                // Read the body: keep-alive needs it, and a pull is not done before.
                r.bytes()
                    .await
                    .map(|_| ())
                    .map_err(|e| request_error_kind(&e).to_string())
            }
            Ok(r) => Err(r.status().as_u16().to_string()),
            Err(e) => Err(request_error_kind(&e).to_string()),
        }
    }
}

pub async fn run(args: VaultArgs) -> anyhow::Result<()> {
    let report = measure(&args).await?;
    let mut table = Table::new(format!(
        "vault: {} keep-alive clients, {} B shares",
        report.concurrency, report.share_size
    ));
    for p in &report.phases {
        table.row(
            p.phase.name(),
            format!(
                "{} ok in {:.2} s = {:.0} ops/s; errors {}",
                p.ok,
                p.secs,
                p.ops_per_sec,
                p.errors.describe()
            ),
        );
        table.latency(&format!("{} latency", p.phase.name()), &p.latency);
    }
    emit(&table, &report, args.json.as_deref())
}

pub async fn measure(args: &VaultArgs) -> anyhow::Result<VaultReport> {
    if args.share_size == 0 {
        bail!("--share-size must be at least 1");
    }
    let concurrency = args.concurrency.max(1);
    let client = Arc::new(Client {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(30))
            .build()?,
        base: args.url.clone(),
        share_b64: STANDARD.encode(vec![0xA5u8; args.share_size]),
    });
    eprintln!("setting up {concurrency} identities…");
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        workers.push(client.setup().await?);
    }
    let mut phases = Vec::new();
    for &phase in &args.phases {
        let next = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let tasks: Vec<_> = workers
            .drain(..)
            .map(|mut w| {
                let client = client.clone();
                let next = next.clone();
                let ops = args.ops;
                tokio::spawn(async move {
                    let mut latency = Latency::new();
                    let mut errors = Errors::default();
                    while next.fetch_add(1, Ordering::Relaxed) < ops {
                        let t = Instant::now();
                        match client.op(phase, &mut w).await {
                            Ok(()) => latency.record(t.elapsed()),
                            Err(kind) => errors.add(kind),
                        }
                    }
                    (w, latency, errors)
                })
            })
            .collect();
        let mut latency = Latency::new();
        let mut errors = Errors::default();
        for t in tasks {
            let (w, l, e) = t.await?;
            workers.push(w);
            latency.merge(&l);
            errors.merge(&e);
        }
        let elapsed = start.elapsed();
        phases.push(PhaseReport {
            phase,
            ops: args.ops,
            ok: latency.len(),
            secs: elapsed.as_secs_f64(),
            ops_per_sec: rate(latency.len(), elapsed),
            latency: latency.summary(),
            errors,
        });
    }
    Ok(VaultReport {
        concurrency,
        share_size: args.share_size,
        phases,
    })
}
