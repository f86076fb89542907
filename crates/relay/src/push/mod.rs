//! Content-free wake-up pushes: when a message is queued for a user with no
//! live WebSocket, their registered push token gets a "wake up and connect"
//! notification, so the app fetches the message over the gateway itself.
//!
//! - [`queue`]: the scheduling rules (delay, coalescing, per-user throttle,
//!   cancel on connect/ACK) on top of the `push_jobs` table, and the worker
//!   that claims due jobs with a lease, sends them and records the outcome
//!   (so a job survives a restart and, in a cluster, is sent once).
//! - [`fcm`], [`apns`], [`unifiedpush`]: one client per provider, each
//!   turning the provider's answer into a [`Delivery`].
//!
//! Privacy invariant: a push carries the token (the provider needs it) and a
//! constant payload ([`WAKE_PAYLOAD`]), never message content, sender, user
//! id or message id.

pub mod apns;
pub mod fcm;
pub mod queue;
pub mod unifiedpush;

use std::time::Duration;

pub use queue::{PushConfig, Wakeups};

use crate::error::{Error, Result};

/// The one payload every provider carries (as data / custom key / body).
pub const WAKE_TYPE: &str = "wake";
/// `{"type":"wake"}` as bytes (UnifiedPush body).
pub const WAKE_PAYLOAD: &[u8] = br#"{"type":"wake"}"#;
/// Every provider request gives up after this long (counted as transient).
pub const PROVIDER_TIMEOUT: Duration = Duration::from_secs(15);

/// Which service delivers a user's wake-ups, from the `type`/`platform` of
/// `PUT /v1/push-tokens` (absent = FCM, as before the field existed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PushKind {
    Fcm,
    Apns,
    /// The token is the distributor's endpoint URL.
    UnifiedPush,
}

impl PushKind {
    /// Parses a client's `type`/`platform`; `None` means FCM.
    pub fn parse(kind: Option<&str>) -> Result<Self> {
        let Some(kind) = kind.map(str::trim).filter(|k| !k.is_empty()) else {
            return Ok(PushKind::Fcm);
        };
        match kind.to_ascii_lowercase().as_str() {
            "fcm" | "gcm" | "firebase" | "android" => Ok(PushKind::Fcm),
            "apns" | "apn" | "ios" => Ok(PushKind::Apns),
            "unifiedpush" | "unified-push" | "up" => Ok(PushKind::UnifiedPush),
            _ => Err(Error::invalid(
                "type must be one of \"fcm\", \"apns\", \"unifiedpush\"",
            )),
        }
    }

    /// The canonical name stored in the database and used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            PushKind::Fcm => "fcm",
            PushKind::Apns => "apns",
            PushKind::UnifiedPush => "unifiedpush",
        }
    }

    /// Reads a stored kind; NULL (tokens registered before kinds were
    /// validated) and unknown values are FCM.
    pub fn from_stored(kind: Option<&str>) -> Self {
        Self::parse(kind).unwrap_or(PushKind::Fcm)
    }
}

/// What a provider made of one wake-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Accepted by the provider.
    Sent,
    /// The provider says the token is dead (app uninstalled, token rotated,
    /// malformed): delete it, never retry.
    InvalidToken,
    /// Worth retrying (5xx, 429, network, expired credentials): after the
    /// provider's `Retry-After` if it sent one, else exponential back-off.
    Retry { after: Option<Duration> },
    /// Will not succeed by retrying and is not the token's fault (provider
    /// not configured, request refused as malformed): dropped and logged.
    Failed(String),
}

impl Delivery {
    /// Metric label.
    pub fn outcome(&self) -> &'static str {
        match self {
            Delivery::Sent => "sent",
            Delivery::InvalidToken => "invalid_token",
            Delivery::Retry { .. } => "retry",
            Delivery::Failed(_) => "failed",
        }
    }

    /// Classifies transport errors (connect, timeout, reset): all transient.
    /// The URL is dropped from the log line: it may contain the token.
    pub(crate) fn from_transport(e: reqwest::Error) -> Self {
        tracing::debug!(error = %e.without_url(), "push provider unreachable");
        Delivery::Retry { after: None }
    }

    /// 5xx and 429 are transient; `Retry-After` (seconds) is honoured.
    pub(crate) fn retry_from(headers: &reqwest::header::HeaderMap) -> Self {
        let after = headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Delivery::Retry { after }
    }
}

/// The configured providers. A token whose provider is not configured is
/// kept (the operator may configure it later) but its wake-up is dropped.
pub struct Providers {
    pub fcm: Option<fcm::Fcm>,
    pub apns: Option<apns::Apns>,
    pub unifiedpush: unifiedpush::UnifiedPush,
}

impl Providers {
    pub fn from_config(config: &PushConfig) -> anyhow::Result<Self> {
        Ok(Self {
            fcm: config.fcm.as_ref().map(fcm::Fcm::new).transpose()?,
            apns: config.apns.as_ref().map(apns::Apns::new).transpose()?,
            unifiedpush: unifiedpush::UnifiedPush::new(config.unifiedpush_allow_private)?,
        })
    }

    pub async fn send(&self, kind: PushKind, token: &str) -> Delivery {
        match kind {
            PushKind::Fcm => match &self.fcm {
                Some(fcm) => fcm.send(token).await,
                None => Delivery::Failed("FCM is not configured (--fcm-service-account)".into()),
            },
            PushKind::Apns => match &self.apns {
                Some(apns) => apns.send(token).await,
                None => Delivery::Failed("APNs is not configured (--apns-key-file)".into()),
            },
            PushKind::UnifiedPush => self.unifiedpush.send(token).await,
        }
    }
}

/// Checks a token for its kind at registration. FCM and APNs tokens are
/// opaque here (a bad one is pruned on the provider's first refusal); a
/// UnifiedPush token must be an endpoint URL the relay may POST to.
pub fn validate_token(kind: PushKind, token: &str, allow_private: bool) -> Result<()> {
    match kind {
        PushKind::Fcm | PushKind::Apns => Ok(()),
        PushKind::UnifiedPush => unifiedpush::validate_endpoint(token, allow_private)
            .map(|_| ())
            .map_err(|reason| Error::invalid(format!("invalid UnifiedPush endpoint: {reason}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_with_aliases_and_default_to_fcm() {
        assert_eq!(PushKind::parse(None).unwrap(), PushKind::Fcm);
        assert_eq!(PushKind::parse(Some(" ")).unwrap(), PushKind::Fcm);
        assert_eq!(PushKind::parse(Some("android")).unwrap(), PushKind::Fcm);
        assert_eq!(PushKind::parse(Some("APNS")).unwrap(), PushKind::Apns);
        assert_eq!(PushKind::parse(Some("ios")).unwrap(), PushKind::Apns);
        assert_eq!(
            PushKind::parse(Some("unifiedpush")).unwrap(),
            PushKind::UnifiedPush
        );
        assert!(PushKind::parse(Some("pigeon")).is_err());
        assert_eq!(PushKind::from_stored(Some("pigeon")), PushKind::Fcm);
        for k in [PushKind::Fcm, PushKind::Apns, PushKind::UnifiedPush] {
            assert_eq!(PushKind::parse(Some(k.as_str())).unwrap(), k);
        }
    }

    #[test]
    fn providers_are_enabled_by_complete_credentials() {
        use crate::cli::RelayArgs;
        use crate::config::Config;
        let c = Config::resolve(RelayArgs::default()).unwrap();
        assert!(c.push.fcm.is_none() && c.push.apns.is_none());
        assert_eq!(c.push.delay, Duration::from_secs(2));
        assert_eq!(c.push.throttle, Duration::from_secs(30));
        let apns_without_team = RelayArgs {
            apns_key_file: Some("AuthKey.p8".into()),
            apns_key_id: Some("KEY".into()),
            apns_topic: Some("org.example".into()),
            ..Default::default()
        };
        assert!(Config::resolve(apns_without_team).is_err());
        let bad_endpoint = RelayArgs {
            fcm_service_account: Some("sa.json".into()),
            fcm_endpoint: Some("ftp://fcm".into()),
            ..Default::default()
        };
        assert!(Config::resolve(bad_endpoint).is_err());
        let fcm = RelayArgs {
            fcm_service_account: Some("sa.json".into()),
            ..Default::default()
        };
        let c = Config::resolve(fcm).unwrap();
        assert_eq!(c.push.fcm.unwrap().endpoint, fcm::DEFAULT_ENDPOINT);
    }

    #[test]
    fn the_payload_is_constant_and_content_free() {
        let v: serde_json::Value = serde_json::from_slice(WAKE_PAYLOAD).unwrap();
        assert_eq!(v, serde_json::json!({"type": WAKE_TYPE}));
    }
}
