//! Shared test fixtures: a relay process per test, libsignal-style device
//! keys, a registered user, a WebSocket gateway client, raw-socket HTTP and
//! response assertions that every area module reuses.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use futures::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use obscura_keys::KeyPair;
use obscura_proto::web_socket_frame::Payload;
use obscura_proto::{AckMessage, EncryptedMessage, Envelope, PreKeyStatus, WebSocketFrame};
use obscura_testkit::Server;
pub use obscura_testkit::backends::backend_test;
use obscura_testkit::backends::{Backend, Deployment};
use prost::Message as _;
use rand_core::OsRng;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single expected event may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How long "nothing arrives" is observed where no fence is possible.
pub const QUIET: Duration = Duration::from_millis(300);

/// Rate limits loose enough that only the tests about rate limits meet them.
const GENEROUS_LIMITS: &[(&str, &str)] = &[
    ("--rate-limit-per-sec", "100000"),
    ("--rate-limit-burst", "100000"),
    ("--ip-rate-limit-per-sec", "100000"),
    ("--ip-rate-limit-burst", "100000"),
    ("--auth-rate-limit-per-sec", "100000"),
    ("--auth-rate-limit-burst", "100000"),
];

/// A relay process on ephemeral ports with its own data directory.
pub struct Relay {
    pub server: Server,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    /// The PostgreSQL schema, Redis prefix and S3 server of this relay when
    /// the test runs on the clustered backend (`None` on SQLite).
    pub deployment: Option<Deployment>,
}

impl Relay {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts a relay; `extra` flags override the test defaults (cheap
    /// argon2, generous rate limits).
    pub async fn start_with(extra: &[&str]) -> Self {
        Self::start_with_env(extra, &[]).await
    }

    /// As [`Relay::start_with`], with extra environment variables.
    pub async fn start_with_env(extra: &[&str], envs: &[(&str, &str)]) -> Self {
        let deployment = match Backend::current() {
            Backend::Sqlite => None,
            Backend::Postgres(services) => Some(
                services
                    .deployment()
                    .await
                    .expect("a PostgreSQL schema, Redis prefix and S3 server for the test"),
            ),
        };
        Self::start_node(deployment, extra, envs).await
    }

    /// Starts a relay on `deployment` (one node of it; several relays on one
    /// deployment form a cluster), or on SQLite when `None`.
    pub async fn start_node(
        deployment: Option<Deployment>,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Self {
        let dir = obscura_testkit::data_dir();
        let dir_str = dir.path().to_str().expect("utf-8 temp dir").to_string();
        let mut args: Vec<&str> = vec![
            "relay",
            "--listen",
            "127.0.0.1:0",
            "--mgmt-listen",
            "127.0.0.1:0",
            "--data-dir",
            &dir_str,
            "--argon2-memory-kib",
            "1024",
            "--argon2-iterations",
            "1",
        ];
        for (flag, value) in GENEROUS_LIMITS {
            if !extra.contains(flag) {
                args.push(flag);
                args.push(value);
            }
        }
        let backend_args = deployment
            .as_ref()
            .map(Deployment::relay_args)
            .unwrap_or_default();
        args.extend(backend_args.iter().map(String::as_str));
        args.extend_from_slice(extra);
        let server = Server::start(
            env!("CARGO_BIN_EXE_obscura"),
            &args,
            envs,
            &["http", "mgmt"],
        )
        .await
        .expect("relay starts and reports its listeners");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("reqwest client");
        Self {
            server,
            dir,
            http,
            deployment,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr("http")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.server.url("http"), path)
    }

    pub fn mgmt_url(&self, path: &str) -> String {
        format!("{}{}", self.server.url("mgmt"), path)
    }

    pub fn gateway_url(&self, token: &str) -> String {
        format!("ws://{}/v1/gateway?token={}", self.addr(), token)
    }

    /// Registers a fresh user with `otpks` one-time pre-keys; panics unless 201.
    pub async fn register(&self, otpks: u32) -> User {
        let device = Device::new(otpks);
        self.register_device(device).await
    }

    pub async fn register_device(&self, device: Device) -> User {
        let username = unique_name("user");
        let password = "correct horse battery staple".to_string();
        let resp = self
            .post_json("/v1/users", &device.registration_json(&username, &password))
            .await;
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        assert_eq!(status, 201, "registration failed: {body}");
        let auth: Value = serde_json::from_str(&body).expect("AuthResponse is JSON");
        let token = auth["token"].as_str().expect("token").to_string();
        let id = jwt_claims(&token)["sub"]
            .as_str()
            .expect("sub claim")
            .to_string();
        User {
            id,
            username,
            password,
            token,
            refresh_token: auth["refreshToken"]
                .as_str()
                .expect("refreshToken")
                .to_string(),
            expires_at: auth["expiresAt"].as_i64().expect("expiresAt"),
            device,
        }
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post_json_auth(&self, path: &str, token: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn login(&self, username: &str, password: &str) -> reqwest::Response {
        self.post_json(
            "/v1/sessions",
            &json!({"username": username, "password": password}),
        )
        .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> reqwest::Response {
        self.post_json(
            "/v1/sessions/refresh",
            &json!({"refreshToken": refresh_token}),
        )
        .await
    }

    pub async fn get_bundle(&self, user_id: &str) -> reqwest::Response {
        self.http
            .get(self.url(&format!("/v1/keys/{user_id}")))
            .send()
            .await
            .expect("request sent")
    }

    /// Fetches a bundle, asserting 200 + JSON.
    pub async fn bundle(&self, user_id: &str) -> Value {
        let resp = self.get_bundle(user_id).await;
        assert_eq!(resp.status().as_u16(), 200, "bundle fetch");
        assert_json_content_type(&resp);
        resp.json().await.expect("bundle JSON")
    }

    pub async fn upload_keys(&self, token: &str, body: &Value) -> reqwest::Response {
        self.post_json_auth("/v1/keys", token, body).await
    }

    /// Posts one serialized `EncryptedMessage` to `recipient`.
    pub async fn send(
        &self,
        token: &str,
        recipient: &str,
        msg: &EncryptedMessage,
    ) -> reqwest::Response {
        self.send_raw(token, recipient, msg.encode_to_vec()).await
    }

    pub async fn send_raw(&self, token: &str, recipient: &str, body: Vec<u8>) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/v1/messages/{recipient}")))
            .bearer_auth(token)
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .await
            .expect("request sent")
    }

    /// Sends and asserts 201 with an empty body.
    pub async fn send_ok(&self, token: &str, recipient: &str, msg: &EncryptedMessage) {
        let resp = self.send(token, recipient, msg).await;
        expect_empty(resp, 201).await;
    }

    /// Sends `n` messages `m0`, `m1`, … (type 2) and expects each to be queued.
    pub async fn send_numbered(&self, token: &str, recipient: &str, n: usize) {
        for i in 0..n {
            self.send_ok(token, recipient, &message(2, format!("m{i}").as_bytes()))
                .await;
        }
    }

    pub async fn connect(&self, token: &str) -> Gateway {
        match self.try_connect(token).await {
            Ok(gw) => gw,
            Err(e) => panic!("gateway handshake failed: {e}"),
        }
    }

    pub async fn try_connect(
        &self,
        token: &str,
    ) -> Result<Gateway, tokio_tungstenite::tungstenite::Error> {
        let (ws, _) = tokio::time::timeout(
            TIMEOUT,
            tokio_tungstenite::connect_async(self.gateway_url(token)),
        )
        .await
        .expect("gateway handshake timed out")?;
        Ok(Gateway { ws })
    }

    /// Stored attachment blobs: files (not directories) under
    /// `<data-dir>/attachments`, recursively, or objects in the S3 bucket.
    pub fn attachment_files(&self) -> usize {
        if let Some(deployment) = &self.deployment {
            return deployment.stored_objects();
        }
        fn walk(dir: &std::path::Path) -> usize {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return 0;
            };
            entries
                .flatten()
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() { walk(&p) } else { 1 }
                })
                .sum()
        }
        walk(&self.dir.path().join("attachments"))
    }
}

/// A client device: identity key, signed pre-key and one-time pre-keys,
/// made with the same primitives libsignal uses.
pub struct Device {
    pub identity: KeyPair,
    pub registration_id: u32,
    pub signed: SignedPreKey,
    pub otpks: Vec<(u32, KeyPair)>,
    next_otpk_id: u32,
}

pub struct SignedPreKey {
    pub id: u32,
    pub key: KeyPair,
    pub signature: [u8; 64],
}

impl SignedPreKey {
    pub fn new(identity: &KeyPair, id: u32) -> Self {
        let key = KeyPair::generate(&mut OsRng);
        let signature = identity.sign(&key.public().to_bytes(), &mut OsRng);
        Self { id, key, signature }
    }

    pub fn json(&self) -> Value {
        json!({
            "keyId": self.id,
            "publicKey": b64(&self.key.public().to_bytes()),
            "signature": b64(&self.signature),
        })
    }
}

impl Device {
    pub fn new(otpks: u32) -> Self {
        let identity = KeyPair::generate(&mut OsRng);
        let signed = SignedPreKey::new(&identity, 1);
        let mut device = Self {
            identity,
            registration_id: 4242,
            signed,
            otpks: Vec::new(),
            next_otpk_id: 1,
        };
        device.add_otpks(otpks);
        device
    }

    /// Generates `n` more one-time pre-keys with fresh ids and returns their JSON.
    pub fn add_otpks(&mut self, n: u32) -> Vec<Value> {
        let start = self.otpks.len();
        for _ in 0..n {
            self.otpks
                .push((self.next_otpk_id, KeyPair::generate(&mut OsRng)));
            self.next_otpk_id += 1;
        }
        self.otpks[start..]
            .iter()
            .map(|(id, k)| otpk_json(*id, k))
            .collect()
    }

    pub fn otpks_json(&self) -> Vec<Value> {
        self.otpks.iter().map(|(id, k)| otpk_json(*id, k)).collect()
    }

    pub fn identity_b64(&self) -> String {
        b64(&self.identity.public().to_bytes())
    }

    pub fn registration_json(&self, username: &str, password: &str) -> Value {
        json!({
            "username": username,
            "password": password,
            "identityKey": self.identity_b64(),
            "registrationId": self.registration_id,
            "signedPreKey": self.signed.json(),
            "oneTimePreKeys": self.otpks_json(),
        })
    }

    /// Rotates the signed pre-key to `id` and returns a refill body (no identity key).
    pub fn refill_json(&mut self, spk_id: u32, new_otpks: u32) -> Value {
        self.signed = SignedPreKey::new(&self.identity, spk_id);
        let otpks = self.add_otpks(new_otpks);
        json!({"signedPreKey": self.signed.json(), "oneTimePreKeys": otpks})
    }

    /// The public key of one-time pre-key `id`, if this device made it.
    pub fn otpk_public(&self, id: u64) -> Option<[u8; 33]> {
        self.otpks
            .iter()
            .find(|(k, _)| u64::from(*k) == id)
            .map(|(_, k)| k.public().to_bytes())
    }
}

pub fn otpk_json(id: u32, key: &KeyPair) -> Value {
    json!({"keyId": id, "publicKey": b64(&key.public().to_bytes())})
}

/// A registered user and the device it registered with.
pub struct User {
    pub id: String,
    pub username: String,
    pub password: String,
    pub token: String,
    pub refresh_token: String,
    pub expires_at: i64,
    pub device: Device,
}

/// One live `/v1/gateway` WebSocket.
pub struct Gateway {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What the gateway produced next.
#[derive(Debug)]
pub enum Next {
    Frame(WebSocketFrame),
    Closed(Option<CloseFrame>),
    Timeout,
}

impl Gateway {
    /// The next protobuf frame, a close, or a timeout after `within`.
    /// Pings/pongs are skipped; a text frame fails the test (binary only).
    pub async fn next_within(&mut self, within: Duration) -> Next {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let msg = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Next::Timeout,
                Ok(None) => return Next::Closed(None),
                Ok(Some(Err(_))) => return Next::Closed(None),
                Ok(Some(Ok(m))) => m,
            };
            match msg {
                Message::Binary(bytes) => {
                    let frame = WebSocketFrame::decode(bytes.as_ref())
                        .expect("server frame is a WebSocketFrame");
                    return Next::Frame(frame);
                }
                Message::Close(frame) => return Next::Closed(frame),
                Message::Text(t) => panic!("server sent a text frame: {t}"),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            }
        }
    }

    pub async fn next_payload(&mut self) -> Payload {
        match self.next_within(TIMEOUT).await {
            Next::Frame(f) => f.payload.expect("frame has a payload"),
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// The next frame must be an `Envelope`.
    pub async fn envelope(&mut self) -> Envelope {
        match self.next_payload().await {
            Payload::Envelope(e) => e,
            other => panic!("expected an Envelope, got {other:?}"),
        }
    }

    /// Receives `n` envelopes.
    pub async fn envelopes(&mut self, n: usize) -> Vec<Envelope> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.envelope().await);
        }
        out
    }

    /// The next frame must be a `PreKeyStatus`.
    pub async fn pre_key_status(&mut self) -> PreKeyStatus {
        match self.next_payload().await {
            Payload::PreKeyStatus(s) => s,
            other => panic!("expected a PreKeyStatus, got {other:?}"),
        }
    }

    pub async fn send_frame(&mut self, frame: WebSocketFrame) {
        self.ws
            .send(Message::binary(frame.encode_to_vec()))
            .await
            .expect("frame sent");
    }

    pub async fn ack_frame(&mut self, ack: AckMessage) {
        self.send_frame(WebSocketFrame {
            payload: Some(Payload::Ack(ack)),
        })
        .await;
    }

    /// One single-id ACK frame per id.
    pub async fn ack_each(&mut self, ids: &[&str]) {
        for id in ids {
            self.ack_frame(AckMessage {
                message_id: (*id).to_string(),
                message_ids: vec![],
            })
            .await;
        }
    }

    /// One bulk ACK frame for all ids.
    pub async fn ack_bulk(&mut self, ids: &[&str]) {
        self.ack_frame(AckMessage {
            message_id: String::new(),
            message_ids: ids.iter().map(|s| s.to_string()).collect(),
        })
        .await;
    }

    /// Returns once the server has read everything sent before: a ping is
    /// answered only after the frames ahead of it were read. No frame may
    /// arrive meanwhile.
    pub async fn sync(&mut self) {
        let skipped = self.sync_skipping().await;
        assert!(
            skipped.is_empty(),
            "unexpected frames while syncing: {skipped:?}"
        );
    }

    /// As [`Gateway::sync`], returning (not failing on) frames that arrived
    /// before the pong.
    pub async fn sync_skipping(&mut self) -> Vec<WebSocketFrame> {
        self.ws
            .send(Message::Ping(b"sync".to_vec().into()))
            .await
            .expect("ping sent");
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        let mut skipped = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Ok(Some(Ok(Message::Pong(p)))) if p.as_ref() == b"sync" => return skipped,
                Ok(Some(Ok(Message::Binary(b)))) => skipped.push(
                    WebSocketFrame::decode(b.as_ref()).expect("server frame is a WebSocketFrame"),
                ),
                Ok(Some(Ok(_))) => continue,
                other => panic!("connection ended while syncing: {other:?}"),
            }
        }
    }

    /// Whether the socket is still open: a ping is answered with a pong, or
    /// the connection turns out closed. Frames in between are dropped.
    pub async fn is_open(&mut self) -> bool {
        if self
            .ws
            .send(Message::Ping(b"probe".to_vec().into()))
            .await
            .is_err()
        {
            return false;
        }
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Ok(Some(Ok(Message::Pong(p)))) if p.as_ref() == b"probe" => return true,
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return false,
                Ok(Some(Ok(_))) => continue,
                Err(_) => panic!("socket neither answered a ping nor closed"),
            }
        }
    }

    /// Client-side close handshake; waits for the server's close or EOF.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        let _ = tokio::time::timeout(TIMEOUT, async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }

    /// The server must close this socket (frames still in flight are skipped).
    pub async fn expect_closed(&mut self) -> Option<CloseFrame> {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await {
                Next::Frame(_) => continue,
                Next::Closed(f) => return f,
                Next::Timeout => panic!("the server did not close the socket"),
            }
        }
    }
}

/// A message with recognisable content.
pub fn message(kind: i32, content: &[u8]) -> EncryptedMessage {
    EncryptedMessage {
        r#type: kind,
        content: content.to_vec(),
    }
}

pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

pub fn unb64(s: &str) -> Vec<u8> {
    STANDARD.decode(s).expect("standard base64 with padding")
}

pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    )
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

/// The JWT's payload, decoded without verification.
pub fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("JWT has three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url payload"))
        .expect("JSON claims")
}

pub fn jwt_header(token: &str) -> Value {
    let header = token.split('.').next().expect("JWT header");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("base64url header"))
        .expect("JSON header")
}

/// An HS256 JWT over `header`/`claims` with `secret` (for forging tests).
pub fn mint_hs256(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

pub fn assert_request_id(headers: &reqwest::header::HeaderMap) {
    let id = headers
        .get("x-request-id")
        .expect("x-request-id header on every response");
    assert!(!id.is_empty(), "x-request-id must not be empty");
}

pub fn assert_json_content_type(resp: &reqwest::Response) {
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_string())
        .unwrap_or_default();
    assert!(
        ct.starts_with("application/json"),
        "content-type must be application/json, got {ct:?}"
    );
}

/// What every response assertion looks at.
struct Reply {
    status: u16,
    has_rid: bool,
    ct: String,
    body: Vec<u8>,
}

impl Reply {
    async fn read(resp: reqwest::Response) -> Self {
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .map(|v| v.to_str().unwrap_or("").to_string())
        };
        let status = resp.status().as_u16();
        let has_rid = header("x-request-id").is_some_and(|v| !v.is_empty());
        let ct = header("content-type").unwrap_or_default();
        let body = resp.bytes().await.expect("body").to_vec();
        Self {
            status,
            has_rid,
            ct,
            body,
        }
    }
}

/// Asserts an error response: `status`, `x-request-id`, JSON content type and
/// a `{"error": "<non-empty>"}` body. Returns the error text.
pub async fn expect_error(resp: reqwest::Response, status: u16) -> String {
    expect_error_in(resp, &[status]).await
}

/// As [`expect_error`], accepting any of `statuses`.
pub async fn expect_error_in(resp: reqwest::Response, statuses: &[u16]) -> String {
    let Reply {
        status: got,
        has_rid,
        ct,
        body,
    } = Reply::read(resp).await;
    let body = String::from_utf8_lossy(&body).into_owned();
    assert!(
        statuses.contains(&got),
        "expected status {statuses:?}, got {got}: {body}"
    );
    assert!(has_rid, "x-request-id missing on a {got} response");
    assert!(
        ct.starts_with("application/json"),
        "error content-type must be JSON, got {ct:?} ({body})"
    );
    error_text(&body)
}

/// Checks the `{"error": "..."}` shape of an error body.
pub fn error_text(body: &str) -> String {
    let v: Value =
        serde_json::from_str(body).unwrap_or_else(|_| panic!("error body is not JSON: {body:?}"));
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("error body is not an object: {body}"));
    let text = obj
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no \"error\" string: {body}"));
    assert!(!text.is_empty(), "error text is empty");
    text.to_string()
}

/// Asserts a success without a body: `status`, empty body, `x-request-id`,
/// and no JSON content type (clients parse anything labelled JSON).
pub async fn expect_empty(resp: reqwest::Response, status: u16) {
    let Reply {
        status: got,
        has_rid,
        ct,
        body,
    } = Reply::read(resp).await;
    assert_eq!(
        got,
        status,
        "unexpected status; body: {}",
        String::from_utf8_lossy(&body)
    );
    assert!(has_rid, "x-request-id missing on a {got} response");
    assert!(
        body.is_empty(),
        "expected an empty body, got {:?}",
        String::from_utf8_lossy(&body)
    );
    assert!(
        !ct.contains("json"),
        "an empty body must not be labelled JSON (content-type {ct:?})"
    );
}

/// Asserts `status` and returns the JSON body.
pub async fn expect_json(resp: reqwest::Response, status: u16) -> Value {
    let Reply {
        status: got,
        has_rid,
        ct,
        body,
    } = Reply::read(resp).await;
    let body = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(got, status, "unexpected status; body: {body}");
    assert!(has_rid, "x-request-id missing on a {got} response");
    assert!(
        ct.starts_with("application/json"),
        "content-type must be application/json, got {ct:?}"
    );
    serde_json::from_str(&body).unwrap_or_else(|_| panic!("body is not JSON: {body}"))
}

/// Polls `check` every 100 ms until it returns true or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A response read off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts the JSON error shape, like [`expect_error_in`].
    pub fn assert_error(&self, statuses: &[u16]) -> String {
        let body = String::from_utf8_lossy(&self.body).to_string();
        assert!(
            statuses.contains(&self.status),
            "expected status {statuses:?}, got {}: {body}",
            self.status
        );
        assert!(
            self.header("x-request-id").is_some_and(|v| !v.is_empty()),
            "x-request-id missing: {self:?}"
        );
        let ct = self.header("content-type").unwrap_or("");
        assert!(
            ct.starts_with("application/json"),
            "error content-type must be JSON, got {ct:?}"
        );
        error_text(&body)
    }
}

/// Reads one HTTP/1.1 response (Content-Length, chunked, or until EOF).
pub async fn read_response<R: AsyncRead + Unpin>(reader: R) -> std::io::Result<RawResponse> {
    let mut r = BufReader::new(reader);
    let mut line = String::new();
    r.read_line(&mut line).await?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).await? == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if let Some(len) = get("content-length") {
        let len: usize = len.parse().map_err(std::io::Error::other)?;
        body.resize(len, 0);
        r.read_exact(&mut body).await?;
    } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).await?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(std::io::Error::other)?;
            if n == 0 {
                break;
            }
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).await?;
            chunk.truncate(n);
            body.extend_from_slice(&chunk);
        }
    } else if status >= 200 && status != 204 && status != 304 {
        r.read_to_end(&mut body).await?;
    }
    Ok(RawResponse {
        status,
        headers,
        body,
    })
}

/// Writes `request` verbatim and reads the response.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write request");
    tokio::time::timeout(TIMEOUT, read_response(&mut stream))
        .await
        .expect("response within the timeout")
        .expect("readable HTTP response")
}

/// Writes `head`, then streams `chunks` (each written as is, paced) on a
/// separate task while reading the response: the server may answer (and
/// close) before the body is complete. Write errors after that are expected.
pub async fn raw_streaming(addr: SocketAddr, head: Vec<u8>, chunks: Vec<Vec<u8>>) -> RawResponse {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        if write.write_all(&head).await.is_err() {
            return;
        }
        for c in chunks {
            if write.write_all(&c).await.is_err() {
                return;
            }
            tokio::task::yield_now().await;
        }
        // Keep the write half open: a closed half would end the request.
        tokio::time::sleep(TIMEOUT * 2).await;
        drop(write);
    });
    let resp = tokio::time::timeout(TIMEOUT, read_response(read))
        .await
        .expect("the server answered without waiting for the whole body")
        .expect("readable HTTP response");
    writer.abort();
    resp
}

/// Encodes `data` as one HTTP/1.1 chunk.
pub fn http_chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}
