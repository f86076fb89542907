//! Push tokens (FCM / APNs / UnifiedPush), one per user ("single device"
//! policy). Wake-ups are sent by [`crate::push`].

use uuid::Uuid;

use super::{Relay, now_secs};
use crate::error::{Error, Result};
use crate::push::PushKind;

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
        let kind = PushKind::parse(kind)?;
        crate::push::validate_token(kind, token, self.config.push.unifiedpush_allow_private)?;
        self.store
            .set_push_token(user, token, Some(kind.as_str()), now_secs())
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
