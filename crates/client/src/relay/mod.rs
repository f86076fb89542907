//! Client of the Obscura relay (`obscura-server-api.openapi.txt`): accounts,
//! transparent token refresh, pre-keys, messages, attachments, and the
//! WebSocket gateway.
//!
//! The session (tokens) lives in the profile's `session.json`. Refresh
//! tokens rotate on every use, so a refreshed pair is written to disk before
//! it is used: a crash can never leave the profile holding a dead token.

pub mod api;
pub mod gateway;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use obscura_proto::EncryptedMessage;
use prost::Message;
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

pub use gateway::{Gateway, GatewayEvent};

use crate::profile::{Profile, ProfileError};
use api::{
    AuthResponse, LoginRequest, PreKeyBundle, PreKeyUpload, RefreshRequest, RegistrationRequest,
};

const SESSION_FILE: &str = "session.json";
/// Refresh the access token when it expires within this many seconds.
const REFRESH_MARGIN_SECS: i64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("relay unreachable: {0}")]
    Network(String),
    #[error("relay answered HTTP {status}: {message}")]
    Http { status: u16, message: String },
    #[error("not logged in: run `obscura account register` or `obscura account login`")]
    NotLoggedIn,
    #[error("the session has expired or was revoked: run `obscura account login`")]
    SessionExpired,
    #[error("unexpected relay response: {0}")]
    Protocol(String),
    #[error("gateway: {0}")]
    WebSocket(String),
    #[error("another connection for this account replaced this one")]
    Replaced,
    #[error(transparent)]
    Profile(#[from] ProfileError),
}

impl From<reqwest::Error> for RelayError {
    fn from(e: reqwest::Error) -> Self {
        if e.is_decode() {
            return RelayError::Protocol(e.to_string());
        }
        let mut source: &dyn std::error::Error = &e;
        while let Some(next) = source.source() {
            source = next;
        }
        RelayError::Network(format!("{e}: {source}"))
    }
}

/// A logged-in session, as stored in `session.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub relay: String,
    pub user_id: String,
    pub username: String,
    pub access_token: String,
    /// UNIX seconds.
    pub expires_at: i64,
    pub refresh_token: String,
}

/// The relay client for one profile.
pub struct RelayClient {
    http: reqwest::Client,
    base: String,
    profile: Profile,
    session: Mutex<Option<Session>>,
}

impl RelayClient {
    /// A client for the relay at `base_url`, resuming the profile's session
    /// if it belongs to the same relay.
    pub fn new(base_url: &str, profile: Profile) -> Result<Self, RelayError> {
        let base = base_url.trim_end_matches('/').to_string();
        let session = profile
            .read_json::<Session>(SESSION_FILE)?
            .filter(|s| s.relay == base);
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| RelayError::Network(e.to_string()))?;
        Ok(Self {
            http,
            base,
            profile,
            session: Mutex::new(session),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The current session, if logged in.
    pub async fn session(&self) -> Option<Session> {
        self.session.lock().await.clone()
    }

    /// `POST /v1/users`; the upload must carry identity key and registration id.
    pub async fn register(
        &self,
        username: &str,
        password: &str,
        keys: PreKeyUpload,
    ) -> Result<Session, RelayError> {
        let body = RegistrationRequest {
            username,
            password,
            keys,
        };
        let response = self
            .http
            .post(self.url("/v1/users"))
            .json(&body)
            .send()
            .await?;
        let auth: AuthResponse = check(response).await?.json().await?;
        self.adopt(username, auth).await
    }

    /// `POST /v1/sessions`.
    pub async fn login(&self, username: &str, password: &str) -> Result<Session, RelayError> {
        let response = self
            .http
            .post(self.url("/v1/sessions"))
            .json(&LoginRequest { username, password })
            .send()
            .await?;
        let auth: AuthResponse = check(response).await?.json().await?;
        self.adopt(username, auth).await
    }

    /// `DELETE /v1/sessions`: revokes the refresh token's family and forgets
    /// the session locally (even when the relay already forgot it).
    pub async fn logout(&self) -> Result<(), RelayError> {
        // Refresh first if needed, *then* read the refresh token: a refresh
        // rotates it, and revoking the rotated-away one would be a reuse.
        let result = match self.fresh_token().await {
            Ok(token) => {
                let refresh_token = self
                    .session()
                    .await
                    .ok_or(RelayError::NotLoggedIn)?
                    .refresh_token;
                let response = self
                    .http
                    .delete(self.url("/v1/sessions"))
                    .bearer_auth(token)
                    .json(&RefreshRequest {
                        refresh_token: &refresh_token,
                    })
                    .send()
                    .await?;
                check(response).await.map(drop)
            }
            Err(e) => Err(e),
        };
        *self.session.lock().await = None;
        self.profile.remove(SESSION_FILE)?;
        match result {
            Ok(())
            | Err(RelayError::SessionExpired)
            | Err(RelayError::Http { status: 401, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `POST /v1/keys`: refill, or takeover when the identity key is set.
    pub async fn upload_keys(&self, upload: &PreKeyUpload) -> Result<(), RelayError> {
        self.authed(|r| r.post(self.url("/v1/keys")).json(upload))
            .await
            .map(drop)
    }

    /// `GET /v1/keys/{userId}`: consumes one of the user's one-time pre-keys.
    pub async fn fetch_bundle(&self, user_id: &str) -> Result<PreKeyBundle, RelayError> {
        let response = self
            .http
            .get(self.url(&format!("/v1/keys/{user_id}")))
            .send()
            .await?;
        Ok(check(response).await?.json().await?)
    }

    /// `POST /v1/messages/{recipientId}`.
    pub async fn send_message(
        &self,
        recipient_id: &str,
        message: &EncryptedMessage,
    ) -> Result<(), RelayError> {
        let body = message.encode_to_vec();
        self.authed(|r| {
            r.post(self.url(&format!("/v1/messages/{recipient_id}")))
                .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
                .body(body.clone())
        })
        .await
        .map(drop)
    }

    /// `POST /v1/attachments` with a streamed body (not retried: a stream
    /// cannot be replayed, so the token is refreshed beforehand).
    pub async fn upload_attachment(
        &self,
        body: reqwest::Body,
        content_length: Option<u64>,
    ) -> Result<api::AttachmentResponse, RelayError> {
        let token = self.fresh_token().await?;
        let mut request = self
            .http
            .post(self.url("/v1/attachments"))
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream");
        if let Some(len) = content_length {
            request = request.header(reqwest::header::CONTENT_LENGTH, len);
        }
        let response = check(request.body(body).send().await?).await?;
        Ok(response.json().await?)
    }

    /// `GET /v1/attachments/{id}`: the response, to be streamed by the caller.
    pub async fn download_attachment(&self, id: &str) -> Result<Response, RelayError> {
        self.authed(|r| r.get(self.url(&format!("/v1/attachments/{id}"))))
            .await
    }

    /// Opens the WebSocket gateway (refreshing the token first if needed).
    pub async fn connect_gateway(&self) -> Result<Gateway, RelayError> {
        let ws_base = if let Some(rest) = self.base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = self.base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            return Err(RelayError::Protocol(format!(
                "relay URL must be http(s): {}",
                self.base
            )));
        };
        let token = self.fresh_token().await?;
        match Gateway::connect(&format!("{ws_base}/v1/gateway?token={token}")).await {
            Err(gateway::ConnectError::Unauthorized) => {
                let token = self.refresh().await?;
                Gateway::connect(&format!("{ws_base}/v1/gateway?token={token}"))
                    .await
                    .map_err(Into::into)
            }
            other => other.map_err(Into::into),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends an authenticated request; on 401 refreshes once and retries.
    async fn authed(
        &self,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, RelayError> {
        let token = self.fresh_token().await?;
        let response = build(&self.http).bearer_auth(token).send().await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return check(response).await;
        }
        let token = self.refresh().await?;
        check(build(&self.http).bearer_auth(token).send().await?)
            .await
            .map_err(|e| match e {
                RelayError::Http { status: 401, .. } => RelayError::SessionExpired,
                other => other,
            })
    }

    /// The access token, refreshed first when it is about to expire.
    async fn fresh_token(&self) -> Result<String, RelayError> {
        let session = self.session().await.ok_or(RelayError::NotLoggedIn)?;
        if session.expires_at - now_secs() > REFRESH_MARGIN_SECS {
            return Ok(session.access_token);
        }
        self.refresh().await
    }

    /// `POST /v1/sessions/refresh`; persists the new pair before returning it.
    async fn refresh(&self) -> Result<String, RelayError> {
        let mut guard = self.session.lock().await;
        let session = guard.as_mut().ok_or(RelayError::NotLoggedIn)?;
        let response = self
            .http
            .post(self.url("/v1/sessions/refresh"))
            .json(&RefreshRequest {
                refresh_token: &session.refresh_token,
            })
            .send()
            .await?;
        if response.status() == StatusCode::UNAUTHORIZED {
            return Err(RelayError::SessionExpired);
        }
        let auth: AuthResponse = check(response).await?.json().await?;
        session.access_token = auth.token;
        session.refresh_token = auth.refresh_token;
        session.expires_at = auth.expires_at;
        self.profile.write_json(SESSION_FILE, &*session)?;
        Ok(session.access_token.clone())
    }

    async fn adopt(&self, username: &str, auth: AuthResponse) -> Result<Session, RelayError> {
        let session = Session {
            relay: self.base.clone(),
            user_id: subject_of(&auth.token)?,
            username: username.to_string(),
            access_token: auth.token,
            expires_at: auth.expires_at,
            refresh_token: auth.refresh_token,
        };
        self.profile.write_json(SESSION_FILE, &session)?;
        *self.session.lock().await = Some(session.clone());
        Ok(session)
    }
}

/// The `sub` claim (user id) of a JWT. The client only reads it; the relay
/// is the one that verifies tokens.
fn subject_of(jwt: &str) -> Result<String, RelayError> {
    #[derive(Deserialize)]
    struct Claims {
        sub: String,
    }
    let payload = jwt
        .split('.')
        .nth(1)
        .ok_or_else(|| RelayError::Protocol("token is not a JWT".into()))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|e| RelayError::Protocol(format!("JWT payload: {e}")))?;
    let claims: Claims = serde_json::from_slice(&bytes)
        .map_err(|e| RelayError::Protocol(format!("JWT claims: {e}")))?;
    Ok(claims.sub)
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Maps a non-2xx response to [`RelayError::Http`] with the `{"error"}` text.
async fn check(response: Response) -> Result<Response, RelayError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let text = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<api::ErrorResponse>(&text)
        .map(|e| e.error)
        .unwrap_or(text);
    Err(RelayError::Http {
        status: status.as_u16(),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_is_read_from_the_jwt_payload() {
        let payload =
            URL_SAFE_NO_PAD.encode(br#"{"sub":"0b7d3c1e-0000-4000-8000-000000000001","exp":1}"#);
        let jwt = format!("eyJhbGciOiJIUzI1NiJ9.{payload}.sig");
        assert_eq!(
            subject_of(&jwt).unwrap(),
            "0b7d3c1e-0000-4000-8000-000000000001"
        );
        assert!(subject_of("garbage").is_err());
    }
}
