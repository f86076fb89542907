//! HTTP client for one Orama Vault guardian (`orama-vault-api.md`):
//! challenge → session authentication, V1 push/pull and V2 named secrets.

use serde::{Deserialize, Serialize};

use crate::b64;

/// Why one guardian did not do what was asked.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum GuardianError {
    #[error("unreachable ({0})")]
    Unreachable(String),
    #[error("timed out")]
    Timeout,
    #[error("already holds a newer version (its anti-rollback check refused ours)")]
    StaleVersion,
    #[error("HTTP {status}: {message}")]
    Http { status: u16, message: String },
    #[error("malformed response: {0}")]
    Protocol(String),
}

impl From<reqwest::Error> for GuardianError {
    fn from(e: reqwest::Error) -> Self {
        if e.is_timeout() {
            GuardianError::Timeout
        } else if e.is_decode() {
            GuardianError::Protocol(e.to_string())
        } else {
            // The innermost cause ("Connection refused") is what a user needs.
            let mut source: &dyn std::error::Error = &e;
            while let Some(next) = source.source() {
                source = next;
            }
            GuardianError::Unreachable(source.to_string())
        }
    }
}

/// A share as a guardian returned it, with its version when the guardian says.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub share: Vec<u8>,
    pub version: Option<u64>,
}

#[derive(Clone, Copy)]
enum Api {
    V1,
    V2,
}

impl Api {
    fn prefix(self) -> &'static str {
        match self {
            Api::V1 => "/v1/vault",
            Api::V2 => "/v2/vault",
        }
    }
}

#[derive(Serialize)]
struct IdentityBody<'a> {
    identity: &'a str,
}

#[derive(Deserialize, Serialize)]
struct Challenge {
    nonce: String,
    created_ns: serde_json::Number,
    tag: String,
}

#[derive(Serialize)]
struct SessionRequest<'a> {
    identity: &'a str,
    #[serde(flatten)]
    challenge: Challenge,
}

#[derive(Deserialize)]
struct SessionResponse {
    session_token: String,
}

#[derive(Serialize)]
struct PushRequest<'a> {
    identity: &'a str,
    share: String,
    version: u64,
}

#[derive(Serialize)]
struct PutSecretRequest {
    share: String,
    version: u64,
}

#[derive(Deserialize)]
struct PullResponse {
    share: String,
    /// Not in the V1 contract; used when a guardian volunteers it.
    #[serde(default)]
    version: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

/// One guardian, addressed by its base URL, acting for one vault identity.
#[derive(Debug, Clone)]
pub struct Guardian {
    http: reqwest::Client,
    base: String,
    identity: String,
}

impl Guardian {
    /// `identity` is the 64-hex-character vault identity.
    pub fn new(http: reqwest::Client, base_url: &str, identity: &str) -> Self {
        Self {
            http,
            base: base_url.trim_end_matches('/').to_string(),
            identity: identity.to_string(),
        }
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    /// Stores `share` at `version` (V1 push).
    pub async fn push(&self, share: &[u8], version: u64) -> Result<(), GuardianError> {
        let token = self.session(Api::V1).await?;
        let body = PushRequest {
            identity: &self.identity,
            share: b64::encode(share),
            version,
        };
        let response = self
            .http
            .post(format!("{}/v1/vault/push", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await?;
        check(response).await.map(drop)
    }

    /// Fetches this identity's share (V1 pull); `None` when it has none.
    pub async fn pull(&self) -> Result<Option<Pulled>, GuardianError> {
        let token = self.session(Api::V1).await?;
        let response = self
            .http
            .post(format!("{}/v1/vault/pull", self.base))
            .bearer_auth(token)
            .json(&IdentityBody {
                identity: &self.identity,
            })
            .send()
            .await?;
        pulled(response).await
    }

    /// Stores `share` as secret `name` at `version` (V2).
    pub async fn put_secret(
        &self,
        name: &str,
        share: &[u8],
        version: u64,
    ) -> Result<(), GuardianError> {
        let token = self.session(Api::V2).await?;
        let response = self
            .http
            .put(format!("{}/v2/vault/secrets/{name}", self.base))
            .header("X-Session-Token", token)
            .json(&PutSecretRequest {
                share: b64::encode(share),
                version,
            })
            .send()
            .await?;
        check(response).await.map(drop)
    }

    /// Fetches secret `name` (V2); `None` when it does not exist.
    pub async fn get_secret(&self, name: &str) -> Result<Option<Pulled>, GuardianError> {
        let token = self.session(Api::V2).await?;
        let response = self
            .http
            .get(format!("{}/v2/vault/secrets/{name}", self.base))
            .header("X-Session-Token", token)
            .send()
            .await?;
        pulled(response).await
    }

    /// Challenge → session: a fresh session token for `api`.
    async fn session(&self, api: Api) -> Result<String, GuardianError> {
        let prefix = api.prefix();
        let response = self
            .http
            .post(format!("{}{prefix}/auth/challenge", self.base))
            .json(&IdentityBody {
                identity: &self.identity,
            })
            .send()
            .await?;
        let challenge: Challenge = check(response).await?.json().await?;
        let response = self
            .http
            .post(format!("{}{prefix}/auth/session", self.base))
            .json(&SessionRequest {
                identity: &self.identity,
                challenge,
            })
            .send()
            .await?;
        let session: SessionResponse = check(response).await?.json().await?;
        Ok(session.session_token)
    }
}

async fn pulled(response: reqwest::Response) -> Result<Option<Pulled>, GuardianError> {
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let body: PullResponse = check(response).await?.json().await?;
    let share = b64::decode(&body.share)
        .map_err(|e| GuardianError::Protocol(format!("share is not base64: {e}")))?;
    Ok(Some(Pulled {
        share,
        version: body.version,
    }))
}

/// Maps a non-2xx response to a [`GuardianError`], reading its `{"error"}` body.
async fn check(response: reqwest::Response) -> Result<reqwest::Response, GuardianError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let text = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<ErrorBody>(&text)
        .map(|b| b.error)
        .unwrap_or(text);
    if status == reqwest::StatusCode::BAD_REQUEST && message.contains("version must be greater") {
        return Err(GuardianError::StaleVersion);
    }
    Err(GuardianError::Http {
        status: status.as_u16(),
        message,
    })
}
