//! Real HTTP servers on loopback standing in for Google (FCM + OAuth),
//! Apple (APNs, HTTP/2 cleartext with prior knowledge) and a UnifiedPush
//! distributor. Each records every request it receives and answers what
//! the test's responder says.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, Version};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::support::TIMEOUT;

/// One request as the stand-in saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub version: Version,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }

    /// Everything a provider (or an eavesdropper on it) gets to see.
    pub fn everything(&self) -> String {
        let mut all = format!("{} {}\n", self.method, self.path);
        for (k, v) in &self.headers {
            all.push_str(&format!("{k}: {v}\n"));
        }
        all.push_str(&String::from_utf8_lossy(&self.body));
        all
    }
}

/// Decides the answer to a request: status and JSON body.
pub type Responder = Arc<dyn Fn(&Recorded) -> (u16, String) + Send + Sync>;

struct Shared {
    requests: Mutex<Vec<Recorded>>,
    arrived: Notify,
    responder: Mutex<Responder>,
    /// How long each answer is held back (a slow provider).
    delay: Mutex<std::time::Duration>,
}

pub struct StandIn {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StandIn {
    /// Serves HTTP/1.1 and HTTP/2 (prior knowledge) on a loopback port.
    pub async fn start(responder: Responder) -> Self {
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            arrived: Notify::new(),
            responder: Mutex::new(responder),
            delay: Mutex::new(std::time::Duration::ZERO),
        });
        let router = axum::Router::new()
            .fallback(record)
            .with_state(shared.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let service = TowerToHyperService::new(router.clone());
                tokio::spawn(async move {
                    let _ = Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, shared, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn set_responder(&self, responder: Responder) {
        *self.shared.responder.lock().unwrap() = responder;
    }

    /// Holds every answer back by `delay` (the request is recorded at once).
    pub fn set_delay(&self, delay: std::time::Duration) {
        *self.shared.delay.lock().unwrap() = delay;
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Requests whose path is `path`.
    pub fn to(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Waits until `n` requests went to `path`; panics after the timeout.
    pub async fn wait_for(&self, path: &str, n: usize) -> Vec<Recorded> {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let arrived = self.shared.arrived.notified();
            let got = self.to(path);
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!(
                    "expected {n} request(s) to {path} within {TIMEOUT:?}, got {}: {:?}",
                    got.len(),
                    self.requests().iter().map(|r| &r.path).collect::<Vec<_>>()
                );
            }
        }
    }
}

/// Always `status` with `body`.
pub fn always(status: u16, body: &str) -> Responder {
    let body = body.to_owned();
    Arc::new(move |_| (status, body.clone()))
}

async fn record(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    let recorded = Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        version: parts.version,
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
        body,
    };
    let responder = shared.responder.lock().unwrap().clone();
    let (status, body) = responder(&recorded);
    shared.requests.lock().unwrap().push(recorded);
    shared.arrived.notify_waiters();
    let delay = *shared.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    (
        StatusCode::from_u16(status).expect("valid status"),
        [("content-type", "application/json")],
        Body::from(body),
    )
        .into_response()
}
