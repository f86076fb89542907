//! The slice of the relay's public API the generator needs: register users
//! with real keys, and open their gateway WebSockets. Nothing here knows
//! which implementation answers.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use futures::{StreamExt, TryStreamExt};
use obscura_keys::KeyPair;
use rand::Rng;
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, http};

/// How long registration and handshakes keep retrying `429`s.
const RETRY_BUDGET: Duration = Duration::from_secs(120);

/// A registered user: its id (the JWT `sub`) and access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub token: String,
}

pub type Gateway = WebSocketStream<TcpStream>;

/// Shared one-time pre-keys: valid keys, generated once per run, so that
/// registering tens of thousands of users is not dominated by key
/// generation on the generator's side. (The server stores them per user.)
pub struct PreKeys(Vec<serde_json::Value>);

impl PreKeys {
    pub fn generate(n: u32) -> Self {
        let mut rng = rand_core::OsRng;
        Self(
            (1..=n)
                .map(|key_id| {
                    let key = KeyPair::generate(&mut rng);
                    json!({ "keyId": key_id, "publicKey": STANDARD.encode(key.public().to_bytes()) })
                })
                .collect(),
        )
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthResponse {
    token: String,
}

/// `POST /v1/users` with a fresh identity and an XEdDSA-signed pre-key,
/// retrying `429` as told by `retry-after`.
pub async fn register(
    http: &reqwest::Client,
    base: &Url,
    username: &str,
    prekeys: &PreKeys,
) -> anyhow::Result<User> {
    let body = {
        let mut rng = rand_core::OsRng;
        let identity = KeyPair::generate(&mut rng);
        let signed = KeyPair::generate(&mut rng);
        let signed_public = signed.public().to_bytes();
        let signature = identity.sign(&signed_public, &mut rng);
        json!({
            "username": username,
            "password": "bench-password-0123456789",
            "identityKey": STANDARD.encode(identity.public().to_bytes()),
            "registrationId": rand::thread_rng().gen_range(1..16380u32),
            "signedPreKey": {
                "keyId": 1,
                "publicKey": STANDARD.encode(signed_public),
                "signature": STANDARD.encode(signature),
            },
            "oneTimePreKeys": prekeys.0,
        })
    };
    let url = base.join("v1/users")?;
    let deadline = tokio::time::Instant::now() + RETRY_BUDGET;
    loop {
        let response = http.post(url.clone()).json(&body).send().await?;
        let status = response.status();
        if status == StatusCode::CREATED {
            let auth: AuthResponse = response.json().await.context("AuthResponse")?;
            let id = jwt_subject(&auth.token)?;
            return Ok(User {
                id,
                token: auth.token,
            });
        }
        if status == StatusCode::TOO_MANY_REQUESTS && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(retry_after(response.headers())).await;
            continue;
        }
        let text = response.text().await.unwrap_or_default();
        bail!("registering {username}: {status} {text}");
    }
}

/// Registers `count` users named `<prefix>-<i>`, at most `concurrency` at a
/// time (registration is argon2-bound on the server), in index order.
pub async fn register_many(
    http: &reqwest::Client,
    base: &Url,
    prefix: &str,
    count: u32,
    concurrency: usize,
    prekeys: &PreKeys,
) -> anyhow::Result<Vec<User>> {
    futures::stream::iter(0..count)
        .map(|i| async move { register(http, base, &format!("{prefix}-{i}"), prekeys).await })
        .buffered(concurrency.max(1))
        .try_collect()
        .await
}

/// The user id is the JWT's `sub` claim (the registration answer carries
/// only tokens). The signature is the server's business, not ours.
pub fn jwt_subject(token: &str) -> anyhow::Result<String> {
    let payload = token.split('.').nth(1).context("token is not a JWT")?;
    let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload)?)?;
    claims["sub"]
        .as_str()
        .map(str::to_owned)
        .context("JWT has no sub claim")
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Duration {
    let secs = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1);
    Duration::from_secs(secs.clamp(1, 10))
}

/// Client socket buffers: small, so that the generator itself can hold tens
/// of thousands of sockets (tungstenite's defaults are 128 KiB each).
pub fn client_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(4 << 20))
        .max_frame_size(Some(4 << 20))
}

/// `ws(s)://…/v1/gateway?token=…` for an `http(s)://` base.
pub fn gateway_url(base: &Url, token: &str) -> anyhow::Result<Url> {
    let mut url = base.join("v1/gateway")?;
    let scheme = match base.scheme() {
        "http" => "ws",
        "https" => "wss",
        other => bail!("unsupported scheme {other}"),
    };
    url.set_scheme(scheme)
        .map_err(|()| anyhow!("cannot use scheme {scheme}"))?;
    url.query_pairs_mut().append_pair("token", token);
    Ok(url)
}

/// Opens `user`'s gateway socket, from `local` if given (to spread many
/// sockets over several loopback source addresses), retrying `429`.
pub async fn connect_gateway(
    base: &Url,
    token: &str,
    local: Option<IpAddr>,
) -> anyhow::Result<Gateway> {
    let url = gateway_url(base, token)?;
    if url.scheme() == "wss" {
        bail!("the generator speaks plain ws:// only (benchmark on loopback or behind the proxy)");
    }
    let addr: SocketAddr = *url
        .socket_addrs(|| Some(80))?
        .first()
        .context("cannot resolve relay address")?;
    let deadline = tokio::time::Instant::now() + RETRY_BUDGET;
    loop {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(ip) = local {
            socket
                .bind(SocketAddr::new(ip, 0))
                .with_context(|| format!("binding {ip}"))?;
        }
        let stream = socket.connect(addr).await.context("connecting")?;
        stream.set_nodelay(true)?;
        match tokio_tungstenite::client_async_with_config(
            url.as_str(),
            stream,
            Some(client_config()),
        )
        .await
        {
            Ok((ws, _)) => return Ok(ws),
            Err(tungstenite::Error::Http(response))
                if response.status() == http::StatusCode::TOO_MANY_REQUESTS
                    && tokio::time::Instant::now() < deadline =>
            {
                let secs = response
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(1);
                tokio::time::sleep(Duration::from_secs(secs.clamp(1, 10))).await;
            }
            Err(tungstenite::Error::Http(response)) => {
                bail!("gateway handshake refused: {}", response.status())
            }
            Err(e) => return Err(e).context("gateway handshake"),
        }
    }
}

/// A random lower-case hex run id, for usernames that never collide.
pub fn run_prefix() -> String {
    format!("bench-{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_comes_from_the_jwt_payload() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"abc","exp":1}"#);
        assert_eq!(jwt_subject(&format!("h.{payload}.s")).unwrap(), "abc");
        assert!(jwt_subject("nodots").is_err());
    }

    #[test]
    fn gateway_url_switches_scheme_and_carries_the_token() {
        let base = Url::parse("http://127.0.0.1:3000/").unwrap();
        let url = gateway_url(&base, "a.b.c").unwrap();
        assert_eq!(url.as_str(), "ws://127.0.0.1:3000/v1/gateway?token=a.b.c");
    }
}
