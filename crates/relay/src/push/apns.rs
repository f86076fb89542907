//! Apple Push Notification service, HTTP/2 provider API with token-based
//! authentication.
//!
//! The provider token is an ES256 JWT (`kid` = key id, `iss` = team id)
//! signed with the `.p8` key from the Apple developer account, reused for at
//! most [`PROVIDER_TOKEN_TTL`] (Apple refuses tokens older than an hour and
//! throttles ones refreshed more often than every 20 minutes). Wake-ups are
//! background pushes: `apns-push-type: background`, priority 5, body
//! `{"aps":{"content-available":1},"type":"wake"}` with no alert.

use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde::Serialize;
use serde_json::json;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{Delivery, PROVIDER_TIMEOUT, WAKE_TYPE};
use crate::domain::now_secs;

pub const DEFAULT_ENDPOINT: &str = "https://api.push.apple.com";
/// How long one provider token is reused.
pub const PROVIDER_TOKEN_TTL: Duration = Duration::from_secs(50 * 60);
/// Longest device token accepted (Apple's are 32 bytes = 64 hex digits today).
const MAX_DEVICE_TOKEN_HEX: usize = 200;

#[derive(Debug, Clone)]
pub struct ApnsConfig {
    /// The `AuthKey_<KEYID>.p8` file (PKCS#8 PEM, P-256).
    pub key_file: PathBuf,
    pub key_id: String,
    pub team_id: String,
    /// The app's bundle id (`apns-topic`).
    pub topic: String,
    /// Base URL; `https://api.sandbox.push.apple.com` for development builds.
    pub endpoint: String,
}

#[derive(Serialize)]
struct ProviderClaims<'a> {
    iss: &'a str,
    iat: i64,
}

struct ProviderToken {
    value: String,
    refresh_at: Instant,
}

pub struct Apns {
    http: reqwest::Client,
    endpoint: String,
    key: EncodingKey,
    key_id: String,
    team_id: String,
    topic: String,
    token: Mutex<Option<ProviderToken>>,
}

impl Apns {
    /// Reads the `.p8` key; fails start-up if it is unusable.
    pub fn new(config: &ApnsConfig) -> anyhow::Result<Self> {
        let pem = std::fs::read(&config.key_file).map_err(|e| {
            anyhow::anyhow!("cannot read APNs key {}: {e}", config.key_file.display())
        })?;
        let key = EncodingKey::from_ec_pem(&pem).map_err(|e| {
            anyhow::anyhow!(
                "{} is not a PKCS#8 P-256 key: {e}",
                config.key_file.display()
            )
        })?;
        // APNs speaks HTTP/2 only: over TLS it is negotiated by ALPN, over a
        // cleartext test endpoint it is spoken with prior knowledge.
        let http = reqwest::Client::builder()
            .timeout(PROVIDER_TIMEOUT)
            .http2_prior_knowledge()
            .build()?;
        Ok(Self {
            http,
            endpoint: config.endpoint.trim_end_matches('/').to_owned(),
            key,
            key_id: config.key_id.clone(),
            team_id: config.team_id.clone(),
            topic: config.topic.clone(),
            token: Mutex::new(None),
        })
    }

    pub async fn send(&self, device_token: &str) -> Delivery {
        // The token becomes a path segment: only hex digits may get there.
        if device_token.is_empty()
            || device_token.len() > MAX_DEVICE_TOKEN_HEX
            || !device_token.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Delivery::InvalidToken;
        }
        let jwt = match self.provider_token().await {
            Ok(jwt) => jwt,
            Err(delivery) => return delivery,
        };
        let body = json!({"aps": {"content-available": 1}, "type": WAKE_TYPE});
        let response = match self
            .http
            .post(format!("{}/3/device/{device_token}", self.endpoint))
            .header("authorization", format!("bearer {jwt}"))
            .header("apns-push-type", "background")
            .header("apns-priority", "5")
            .header("apns-topic", &self.topic)
            // Worth delivering within the hour, pointless after.
            .header("apns-expiration", (now_secs() + 3600).to_string())
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
        if status == StatusCode::FORBIDDEN && matches!(delivery, Delivery::Retry { .. }) {
            *self.token.lock().await = None;
        }
        delivery
    }

    async fn provider_token(&self) -> Result<String, Delivery> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref()
            && Instant::now() < token.refresh_at
        {
            return Ok(token.value.clone());
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        let claims = ProviderClaims {
            iss: &self.team_id,
            iat: now_secs(),
        };
        let value = jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| {
            Delivery::Failed(format!("signing the APNs provider token failed: {e}"))
        })?;
        *cached = Some(ProviderToken {
            value: value.clone(),
            refresh_at: Instant::now() + PROVIDER_TOKEN_TTL,
        });
        Ok(value)
    }
}

/// Maps an APNs answer (`{"reason": …}` on errors).
pub fn classify(status: StatusCode, headers: &reqwest::header::HeaderMap, body: &str) -> Delivery {
    let reason = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("reason")?.as_str().map(str::to_owned))
        .unwrap_or_default();
    match (status.as_u16(), reason.as_str()) {
        (200, _) => Delivery::Sent,
        (410, _) => Delivery::InvalidToken,
        (400, "BadDeviceToken" | "DeviceTokenNotForTopic") => Delivery::InvalidToken,
        // A stale or refused provider token: a fresh one is signed on retry.
        (403, "ExpiredProviderToken" | "InvalidProviderToken") => Delivery::Retry { after: None },
        (429 | 500..=599, _) => Delivery::retry_from(headers),
        (other, reason) => Delivery::Failed(format!("APNs answered {other} ({reason})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified() {
        let h = reqwest::header::HeaderMap::new();
        assert_eq!(classify(StatusCode::OK, &h, ""), Delivery::Sent);
        assert_eq!(
            classify(StatusCode::GONE, &h, r#"{"reason":"Unregistered"}"#),
            Delivery::InvalidToken
        );
        assert_eq!(
            classify(
                StatusCode::BAD_REQUEST,
                &h,
                r#"{"reason":"BadDeviceToken"}"#
            ),
            Delivery::InvalidToken
        );
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, &h, r#"{"reason":"BadTopic"}"#),
            Delivery::Failed(_)
        ));
        assert_eq!(
            classify(
                StatusCode::FORBIDDEN,
                &h,
                r#"{"reason":"ExpiredProviderToken"}"#
            ),
            Delivery::Retry { after: None }
        );
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE, &h, ""),
            Delivery::Retry { after: None }
        );
    }

    #[test]
    fn the_provider_token_lives_under_apples_hour() {
        assert!(PROVIDER_TOKEN_TTL <= Duration::from_secs(3600));
        assert!(PROVIDER_TOKEN_TTL >= Duration::from_secs(20 * 60));
    }
}
