//! `obscura bench relay`: messages from random senders to random
//! recipients through `POST /v1/messages/{id}` and the gateway WebSockets,
//! with end-to-end latency and an exactly-once check.
//!
//! Closed loop: `C` senders each send their next message as soon as the
//! previous one was answered (maximum throughput). Open loop: message `i`
//! is due at `start + i / rate`, whatever happened before, and its latency
//! is measured from that due time, so a stalled server shows up as latency
//! instead of silently slowing the generator down (no coordinated omission).

pub mod api;
mod receiver;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use obscura_proto::EncryptedMessage;
use obscura_proto::encrypted_message::Type;
use prost::Message as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{StatusCode, Url};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ledger::{Ledger, Verdict};
use crate::probe::Probe;
use crate::report::{Errors, Latency, LatencySummary, Table, emit, rate, request_error_kind};
use receiver::Receiver;

#[derive(Debug, Clone, clap::Args)]
pub struct RelayArgs {
    /// Base URL of the relay's public API.
    #[arg(long, value_parser = crate::base_url)]
    pub url: Url,
    /// Users to register (each holds one gateway WebSocket).
    #[arg(long, default_value_t = 100)]
    pub users: u32,
    /// Messages to send.
    #[arg(long, default_value_t = 20_000)]
    pub messages: u64,
    /// Closed loop: concurrent senders (the default mode, 64).
    #[arg(long, conflicts_with = "rate")]
    pub concurrency: Option<usize>,
    /// Open loop: messages per second, on a fixed schedule.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Bytes of `EncryptedMessage.content` per message (min 32).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Registrations in flight at once (argon2 is costly on the server).
    #[arg(long, default_value_t = 8)]
    pub register_concurrency: usize,
    /// One-time pre-keys uploaded per user at registration.
    #[arg(long, default_value_t = 20)]
    pub prekeys: u32,
    /// Open loop: at most this many requests in flight (later ones wait,
    /// and the wait counts as latency).
    #[arg(long, default_value_t = 4096)]
    pub max_in_flight: usize,
    /// After the last send, wait up to this long without progress for
    /// outstanding deliveries.
    #[arg(long, default_value_t = 10)]
    pub drain_timeout_secs: u64,
    /// Seed for the sender/recipient choice (random when absent).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RelayReport {
    pub mode: &'static str,
    pub users: u32,
    pub messages: u64,
    pub concurrency: Option<usize>,
    pub target_rate: Option<f64>,
    pub size: usize,
    /// Seconds from the first send to the last answer.
    pub send_secs: f64,
    /// Seconds from the first send to the last first-delivery.
    pub deliver_secs: f64,
    pub sent_per_sec: f64,
    pub delivered_per_sec: f64,
    /// `POST` → `201` (open loop: due time → `201`).
    pub send_latency: LatencySummary,
    /// Send (open loop: due time) → envelope received on the recipient's socket.
    pub end_to_end_latency: LatencySummary,
    /// Failed sends by status.
    pub errors: Errors,
    /// Socket-level failures of the receivers.
    pub receiver_errors: Errors,
    pub exactly_once: Verdict,
    pub ok: bool,
}

/// Everything a sender needs, shared read-only.
struct Plan {
    run: u64,
    size: usize,
    epoch: Instant,
    users: u32,
    /// `…/v1/messages/{user id}` per user.
    inboxes: Vec<Url>,
    /// `Bearer <token>` per user.
    auth: Vec<HeaderValue>,
    http: reqwest::Client,
    ledger: Arc<Ledger>,
    accepted: AtomicU64,
}

#[derive(Default)]
struct SendTally {
    latency: Latency,
    errors: Errors,
}

impl SendTally {
    fn merge(&mut self, other: &SendTally) {
        self.latency.merge(&other.latency);
        self.errors.merge(&other.errors);
    }
}

impl Plan {
    fn pick(&self, rng: &mut StdRng) -> (u32, u32) {
        let from = rng.gen_range(0..self.users);
        if self.users == 1 {
            return (from, from);
        }
        let to = (from + rng.gen_range(1..self.users)) % self.users;
        (from, to)
    }

    /// Sends message `id`, due at `due`: `Ok(due → 201)` or the error kind.
    async fn send(&self, id: u64, from: u32, to: u32, due: Instant) -> Result<Duration, String> {
        let probe = Probe {
            run: self.run,
            id,
            recipient: to,
            intended_ns: u64::try_from(due.saturating_duration_since(self.epoch).as_nanos())
                .unwrap_or(u64::MAX),
        };
        let body = EncryptedMessage {
            r#type: Type::EncryptedMessage as i32,
            content: probe.encode(self.size),
        }
        .encode_to_vec();
        let result = self
            .http
            .post(self.inboxes[to as usize].clone())
            .header(AUTHORIZATION, self.auth[from as usize].clone())
            .header(CONTENT_TYPE, "application/x-protobuf")
            .body(body)
            .send()
            .await;
        match result {
            Ok(r) if r.status() == StatusCode::CREATED => {
                self.ledger.accepted(id);
                self.accepted.fetch_add(1, Ordering::Relaxed);
                Ok(due.elapsed())
            }
            Ok(r) => {
                self.ledger.refused(id);
                Err(r.status().as_u16().to_string())
            }
            Err(e) => {
                self.ledger.refused(id);
                Err(request_error_kind(&e).to_string())
            }
        }
    }
}

impl SendTally {
    fn record(&mut self, outcome: Result<Duration, String>) {
        match outcome {
            Ok(latency) => self.latency.record(latency),
            Err(kind) => self.errors.add(kind),
        }
    }
}

pub async fn run(args: RelayArgs) -> anyhow::Result<()> {
    let report = measure(&args).await?;
    let mut table = Table::new(format!(
        "relay {} loop: {} users, {} messages of {} B",
        report.mode, report.users, report.messages, report.size
    ));
    let v = &report.exactly_once;
    table
        .row(
            "sent",
            format!(
                "{} accepted in {:.2} s = {:.0} msg/s",
                v.accepted, report.send_secs, report.sent_per_sec
            ),
        )
        .row(
            "delivered",
            format!(
                "{} in {:.2} s = {:.0} msg/s",
                v.delivered, report.deliver_secs, report.delivered_per_sec
            ),
        )
        .latency("send → 201", &report.send_latency)
        .latency("send → receive", &report.end_to_end_latency)
        .row("errors", report.errors.describe())
        .row("receiver errors", report.receiver_errors.describe())
        .row(
            "exactly once",
            format!(
                "{} (missing {}, duplicated {}, delivered-unaccepted {}, foreign {}, misrouted {})",
                if v.exactly_once() { "yes" } else { "NO" },
                v.missing,
                v.duplicated,
                v.delivered_unaccepted,
                v.foreign,
                v.misrouted
            ),
        );
    emit(&table, &report, args.json.as_deref())?;
    if !report.ok {
        bail!("exactly-once check failed");
    }
    Ok(())
}

/// Runs the whole benchmark and returns its report.
pub async fn measure(args: &RelayArgs) -> anyhow::Result<RelayReport> {
    if args.users == 0 {
        bail!("--users must be at least 1");
    }
    let concurrency = args.concurrency.unwrap_or(64).max(1);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency.max(args.max_in_flight.min(1024)))
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?;

    let prefix = api::run_prefix();
    eprintln!("registering {} users…", args.users);
    let prekeys = api::PreKeys::generate(args.prekeys);
    let users = api::register_many(
        &http,
        &args.url,
        &prefix,
        args.users,
        args.register_concurrency,
        &prekeys,
    )
    .await?;

    let capacity = usize::try_from(args.messages).context("--messages too large")?;
    let ledger = Arc::new(Ledger::new(capacity));
    let run_id = rand::random::<u64>();
    let epoch = Instant::now();
    let stop = CancellationToken::new();
    let first_deliveries = Arc::new(AtomicU64::new(0));
    let last_delivery_ns = Arc::new(AtomicU64::new(0));

    eprintln!("opening {} gateway sockets…", users.len());
    let mut receivers = Vec::with_capacity(users.len());
    for (index, user) in users.iter().enumerate() {
        let ws = api::connect_gateway(&args.url, &user.token, None).await?;
        let receiver = Receiver {
            index: u32::try_from(index)?,
            run: run_id,
            epoch,
            ledger: ledger.clone(),
            first_deliveries: first_deliveries.clone(),
            last_delivery_ns: last_delivery_ns.clone(),
        };
        receivers.push(tokio::spawn(receiver.run(ws, stop.clone())));
    }

    let plan = Arc::new(Plan {
        run: run_id,
        size: args.size,
        epoch,
        users: args.users,
        inboxes: users
            .iter()
            .map(|u| args.url.join(&format!("v1/messages/{}", u.id)))
            .collect::<Result<_, _>>()?,
        auth: users
            .iter()
            .map(|u| HeaderValue::from_str(&format!("Bearer {}", u.token)))
            .collect::<Result<_, _>>()?,
        http,
        ledger: ledger.clone(),
        accepted: AtomicU64::new(0),
    });
    let seed = args.seed.unwrap_or_else(rand::random);

    eprintln!("sending {} messages…", args.messages);
    let start = Instant::now();
    let tally = match args.rate {
        None => closed_loop(&plan, args.messages, concurrency, seed).await,
        Some(r) => open_loop(&plan, args.messages, r, args.max_in_flight, seed).await?,
    };
    let send_secs = start.elapsed();

    // Drain: wait for the deliveries still on their way, as long as they progress.
    let accepted = plan.accepted.load(Ordering::Relaxed);
    let mut seen = first_deliveries.load(Ordering::Relaxed);
    let mut progress_at = Instant::now();
    while seen < accepted {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = first_deliveries.load(Ordering::Relaxed);
        if now > seen {
            seen = now;
            progress_at = Instant::now();
        } else if progress_at.elapsed() > Duration::from_secs(args.drain_timeout_secs) {
            eprintln!("deliveries stalled at {seen}/{accepted}");
            break;
        }
    }
    // Late duplicates get a short chance to show up before the verdict.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();
    let mut latency = Latency::new();
    let mut receiver_errors = Errors::default();
    for r in receivers {
        let done = r.await?;
        latency.merge(&done.latency);
        receiver_errors.merge(&done.errors);
    }
    let verdict = ledger.verdict();
    let ok = verdict.exactly_once() && receiver_errors.total() == 0;
    let deliver_secs = Duration::from_nanos(last_delivery_ns.load(Ordering::Relaxed))
        .saturating_sub(start.duration_since(epoch));
    Ok(RelayReport {
        mode: if args.rate.is_some() {
            "open"
        } else {
            "closed"
        },
        users: args.users,
        messages: args.messages,
        concurrency: args.rate.is_none().then_some(concurrency),
        target_rate: args.rate,
        size: args.size.max(crate::probe::MIN_SIZE),
        send_secs: send_secs.as_secs_f64(),
        deliver_secs: deliver_secs.as_secs_f64(),
        sent_per_sec: rate(verdict.accepted, send_secs),
        delivered_per_sec: rate(verdict.delivered, deliver_secs),
        send_latency: tally.latency.summary(),
        end_to_end_latency: latency.summary(),
        errors: tally.errors,
        receiver_errors,
        ok,
        exactly_once: verdict,
    })
}

/// `concurrency` senders share one counter of message ids.
async fn closed_loop(plan: &Arc<Plan>, messages: u64, concurrency: usize, seed: u64) -> SendTally {
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..concurrency)
        .map(|i| {
            let plan = plan.clone();
            let next = next.clone();
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed.wrapping_add(i as u64));
                let mut tally = SendTally::default();
                loop {
                    let id = next.fetch_add(1, Ordering::Relaxed);
                    if id >= messages {
                        break tally;
                    }
                    let (from, to) = plan.pick(&mut rng);
                    tally.record(plan.send(id, from, to, Instant::now()).await);
                }
            })
        })
        .collect();
    let mut total = SendTally::default();
    for t in tasks {
        match t.await {
            Ok(tally) => total.merge(&tally),
            Err(e) => total.errors.add(format!("panic: {e}")),
        }
    }
    total
}

/// Message `i` is due at `start + i / rate`; each is sent by its own task so
/// a slow answer never delays the next send.
async fn open_loop(
    plan: &Arc<Plan>,
    messages: u64,
    per_sec: f64,
    max_in_flight: usize,
    seed: u64,
) -> anyhow::Result<SendTally> {
    if !(per_sec.is_finite() && per_sec > 0.0) {
        bail!("--rate must be a positive number");
    }
    let total = Arc::new(Mutex::new(SendTally::default()));
    let in_flight = Arc::new(Semaphore::new(max_in_flight.max(1)));
    let mut rng = StdRng::seed_from_u64(seed);
    let start = Instant::now();
    for id in 0..messages {
        let due = start + Duration::from_secs_f64(id as f64 / per_sec);
        tokio::time::sleep_until(due).await;
        let permit = in_flight.clone().acquire_owned().await?;
        let (from, to) = plan.pick(&mut rng);
        let plan = plan.clone();
        let total = total.clone();
        tokio::spawn(async move {
            let outcome = plan.send(id, from, to, due).await;
            if let Ok(mut t) = total.lock() {
                t.record(outcome);
            }
            drop(permit);
        });
    }
    // All permits back = every request answered.
    let all = u32::try_from(max_in_flight.max(1)).unwrap_or(u32::MAX);
    let _ = in_flight.acquire_many(all).await?;
    let mut guard = total
        .lock()
        .map_err(|_| anyhow::anyhow!("sender tally poisoned"))?;
    Ok(std::mem::take(&mut *guard))
}
