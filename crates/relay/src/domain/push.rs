//! Push tokens (FCM / APNs). Delivery of wake-ups comes later; the token is
//! stored now, one per user ("single device" policy).

use uuid::Uuid;

use super::{Relay, now_secs};
use crate::error::{Error, Result};

pub const MAX_PUSH_TOKEN_BYTES: usize = 4096;

pub fn validate_push_token(token: &str) -> Result<()> {
    if token.trim().is_empty() {
        return Err(Error::invalid("token must not be empty"));
    }
    if token.len() > MAX_PUSH_TOKEN_BYTES {
        return Err(Error::invalid(format!(
            "token must be at most {MAX_PUSH_TOKEN_BYTES} bytes"
        )));
    }
    Ok(())
}

impl Relay {
    pub async fn set_push_token(&self, user: Uuid, token: &str, kind: Option<&str>) -> Result<()> {
        validate_push_token(token)?;
        let kind = kind
            .map(str::trim)
            .filter(|k| !k.is_empty() && k.len() <= 32);
        self.store
            .set_push_token(user, token, kind, now_secs())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_tokens() {
        assert!(validate_push_token("fcm:abc").is_ok());
        assert!(validate_push_token("").is_err());
        assert!(validate_push_token("  ").is_err());
        assert!(validate_push_token(&"x".repeat(MAX_PUSH_TOKEN_BYTES + 1)).is_err());
    }
}
