//! Firebase Cloud Messaging, HTTP v1 API.
//!
//! Authentication is Google's OAuth 2.0 service-account flow: an RS256 JWT
//! assertion signed with the service account's private key is exchanged at
//! the token endpoint for an access token, which is cached until shortly
//! before it expires (one exchange per hour, not per push). The message is
//! data-only and high priority, so the app is woken without a visible
//! notification and with nothing in it but `{"type": "wake"}`.

use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{Delivery, PROVIDER_TIMEOUT, WAKE_TYPE};
use crate::domain::now_secs;

pub const DEFAULT_ENDPOINT: &str = "https://fcm.googleapis.com";
pub const DEFAULT_TOKEN_ENDPOINT: &str = "https://oauth2.googleapis.com/token";
const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Lifetime asked for in the assertion (Google's maximum).
const ASSERTION_TTL_SECS: i64 = 3600;
/// An access token is replaced this long before it expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct FcmConfig {
    /// The service-account JSON key file downloaded from the Firebase console.
    pub service_account: PathBuf,
    /// Base URL of the FCM API (`{endpoint}/v1/projects/{id}/messages:send`).
    pub endpoint: String,
    /// OAuth token endpoint; `None` = the key file's `token_uri`.
    pub token_endpoint: Option<String>,
}

/// The fields of a service-account key file the relay uses.
#[derive(Deserialize)]
struct ServiceAccount {
    project_id: String,
    private_key_id: Option<String>,
    private_key: String,
    client_email: String,
    token_uri: Option<String>,
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

struct AccessToken {
    value: String,
    refresh_at: Instant,
}

pub struct Fcm {
    http: reqwest::Client,
    send_url: String,
    token_url: String,
    client_email: String,
    key: EncodingKey,
    key_id: Option<String>,
    /// Also serialises refreshes, so a burst of pushes makes one exchange.
    token: Mutex<Option<AccessToken>>,
}

impl Fcm {
    /// Reads and checks the key file; fails start-up if it is unusable.
    pub fn new(config: &FcmConfig) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(&config.service_account).map_err(|e| {
            anyhow::anyhow!(
                "cannot read FCM service account {}: {e}",
                config.service_account.display()
            )
        })?;
        let account: ServiceAccount = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{} is not a service-account key file: {e}",
                config.service_account.display()
            )
        })?;
        let key = EncodingKey::from_rsa_pem(account.private_key.as_bytes())
            .map_err(|e| anyhow::anyhow!("the service account's private_key is unusable: {e}"))?;
        let token_url = config
            .token_endpoint
            .clone()
            .or(account.token_uri)
            .unwrap_or_else(|| DEFAULT_TOKEN_ENDPOINT.to_owned());
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(PROVIDER_TIMEOUT)
                .build()?,
            send_url: format!(
                "{}/v1/projects/{}/messages:send",
                config.endpoint.trim_end_matches('/'),
                account.project_id
            ),
            token_url,
            client_email: account.client_email,
            key,
            key_id: account.private_key_id,
            token: Mutex::new(None),
        })
    }

    pub async fn send(&self, token: &str) -> Delivery {
        let access = match self.access_token().await {
            Ok(access) => access,
            Err(delivery) => return delivery,
        };
        let body = json!({
            "message": {
                "token": token,
                "data": {"type": WAKE_TYPE},
                "android": {"priority": "HIGH"},
                // For iOS apps that receive through FCM: a silent background push.
                "apns": {
                    "headers": {"apns-push-type": "background", "apns-priority": "5"},
                    "payload": {"aps": {"content-available": 1}}
                }
            }
        });
        let response = match self
            .http
            .post(&self.send_url)
            .bearer_auth(&access)
            .json(&body)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return Delivery::from_transport(e),
        };
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let delivery = classify(status, &headers, &text);
        if status == StatusCode::UNAUTHORIZED {
            // Revoked or expired early: exchange again on the retry.
            *self.token.lock().await = None;
        }
        delivery
    }

    /// A cached access token, or a fresh one from the token endpoint.
    async fn access_token(&self) -> Result<String, Delivery> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref()
            && Instant::now() < token.refresh_at
        {
            return Ok(token.value.clone());
        }
        let now = now_secs();
        let claims = AssertionClaims {
            iss: &self.client_email,
            scope: SCOPE,
            aud: &self.token_url,
            iat: now,
            exp: now + ASSERTION_TTL_SECS,
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.key_id.clone();
        let assertion = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| Delivery::Failed(format!("signing the FCM assertion failed: {e}")))?;
        let response = self
            .http
            .post(&self.token_url)
            .form(&[
                ("grant_type", GRANT_TYPE),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(Delivery::from_transport)?;
        let status = response.status();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(Delivery::retry_from(response.headers()));
        }
        if !status.is_success() {
            // Wrong key, disabled account, clock skew: an operator must act.
            return Err(Delivery::Failed(format!(
                "the FCM token endpoint refused the service account ({status})"
            )));
        }
        let token: TokenResponse = response
            .json()
            .await
            .map_err(|_| Delivery::Retry { after: None })?;
        let lifetime = Duration::from_secs(token.expires_in).saturating_sub(REFRESH_MARGIN);
        *cached = Some(AccessToken {
            value: token.access_token.clone(),
            refresh_at: Instant::now() + lifetime,
        });
        tracing::debug!(expires_in = token.expires_in, "FCM access token refreshed");
        Ok(token.access_token)
    }
}

/// Maps an FCM v1 answer. The payload is constant and valid, so
/// `INVALID_ARGUMENT` can only be about the token.
pub fn classify(status: StatusCode, headers: &reqwest::header::HeaderMap, body: &str) -> Delivery {
    let code = error_code(body);
    match status.as_u16() {
        200..=299 => Delivery::Sent,
        404 => Delivery::InvalidToken,
        400 if code.as_deref() == Some("INVALID_ARGUMENT") => Delivery::InvalidToken,
        403 if code.as_deref() == Some("SENDER_ID_MISMATCH") => Delivery::InvalidToken,
        401 | 429 | 500..=599 => Delivery::retry_from(headers),
        other => Delivery::Failed(format!(
            "FCM answered {other} ({})",
            code.as_deref().unwrap_or("no error code")
        )),
    }
}

/// The most specific error code of an FCM error body: the `FcmError`
/// detail's `errorCode` if present, else the status name.
fn error_code(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let error = v.get("error")?;
    error
        .get("details")
        .and_then(|d| d.as_array())
        .and_then(|details| {
            details
                .iter()
                .find_map(|d| d.get("errorCode").and_then(|c| c.as_str()))
        })
        .or_else(|| error.get("status").and_then(|s| s.as_str()))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_headers() -> reqwest::header::HeaderMap {
        reqwest::header::HeaderMap::new()
    }

    #[test]
    fn answers_are_classified() {
        let unregistered = r#"{"error":{"code":404,"status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}"#;
        assert_eq!(
            classify(StatusCode::NOT_FOUND, &no_headers(), unregistered),
            Delivery::InvalidToken
        );
        let invalid = r#"{"error":{"code":400,"status":"INVALID_ARGUMENT"}}"#;
        assert_eq!(
            classify(StatusCode::BAD_REQUEST, &no_headers(), invalid),
            Delivery::InvalidToken
        );
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, &no_headers(), "{}"),
            Delivery::Failed(_)
        ));
        let mut headers = no_headers();
        headers.insert("retry-after", "7".parse().unwrap());
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, &headers, ""),
            Delivery::Retry {
                after: Some(Duration::from_secs(7))
            }
        );
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE, &no_headers(), ""),
            Delivery::Retry { after: None }
        );
        assert_eq!(
            classify(StatusCode::OK, &no_headers(), "{}"),
            Delivery::Sent
        );
    }
}
