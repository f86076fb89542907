//! Challenge/session authentication.
//!
//! A challenge is `(nonce, created_ns, tag)` with
//! `tag = HMAC-SHA256(server_secret, identity || nonce || created_ns)`
//! (identity as its 64 lower-case hex characters, created_ns as i128 BE).
//! It is valid for the challenge TTL, as many times as it is presented (as in
//! the reference). A challenge proves nothing about the client — anyone may
//! ask for one for any identity — so remembering redeemed ones would protect
//! nothing, and would refuse a client that retries after a lost answer.
//!
//! A session token is `base64(identity[32] || expiry_ns u64 BE || tag[32])`
//! with `tag = HMAC-SHA256(server_secret, "session" domain || identity || expiry)`.
//! The server secret is random per start, so a restart ends all sessions.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::identity::Identity;

const SESSION_DOMAIN: &[u8] = b"obscura-vault/session/v1";
const TOKEN_LEN: usize = 32 + 8 + 32;

/// A challenge as handed to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub nonce: [u8; 32],
    pub created_ns: i128,
    pub tag: [u8; 32],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("invalid challenge")]
    InvalidChallenge,
    #[error("challenge expired")]
    ChallengeExpired,
    #[error("invalid session token")]
    InvalidSession,
}

/// Issues and verifies challenges and session tokens.
pub struct Authenticator {
    secret: [u8; 32],
    challenge_ttl: Duration,
    session_ttl: Duration,
}

impl Authenticator {
    /// A fresh random server secret.
    pub fn new(challenge_ttl: Duration, session_ttl: Duration) -> Self {
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        Self {
            secret,
            challenge_ttl,
            session_ttl,
        }
    }

    pub fn challenge_ttl(&self) -> Duration {
        self.challenge_ttl
    }

    pub fn session_ttl(&self) -> Duration {
        self.session_ttl
    }

    pub fn issue_challenge(&self, id: &Identity) -> Challenge {
        let mut nonce = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let created_ns = now_ns();
        Challenge {
            nonce,
            created_ns,
            tag: self.challenge_tag(id, &nonce, created_ns),
        }
    }

    /// Checks a returned challenge: ours, for this identity, not expired.
    pub fn redeem_challenge(&self, id: &Identity, ch: &Challenge) -> Result<(), AuthError> {
        self.redeem_at(id, ch, now_ns())
    }

    fn redeem_at(&self, id: &Identity, ch: &Challenge, now: i128) -> Result<(), AuthError> {
        let expected = self.challenge_tag(id, &ch.nonce, ch.created_ns);
        if !bool::from(expected.ct_eq(&ch.tag)) {
            return Err(AuthError::InvalidChallenge);
        }
        let expires = ch
            .created_ns
            .saturating_add(self.challenge_ttl.as_nanos() as i128);
        if ch.created_ns > now {
            return Err(AuthError::InvalidChallenge);
        }
        if now > expires {
            return Err(AuthError::ChallengeExpired);
        }
        Ok(())
    }

    pub fn issue_session(&self, id: &Identity) -> String {
        let expiry = u64::try_from(now_ns().max(0))
            .unwrap_or(u64::MAX)
            .saturating_add(self.session_ttl.as_nanos() as u64);
        let idb = id.to_bytes();
        let mut token = Vec::with_capacity(TOKEN_LEN);
        token.extend_from_slice(&idb);
        token.extend_from_slice(&expiry.to_be_bytes());
        token.extend_from_slice(&self.session_tag(&idb, expiry));
        STANDARD.encode(token)
    }

    /// The identity a valid, unexpired session token belongs to.
    pub fn verify_session(&self, token: &str) -> Result<Identity, AuthError> {
        self.verify_session_at(token, now_ns())
    }

    fn verify_session_at(&self, token: &str, now: i128) -> Result<Identity, AuthError> {
        let raw = STANDARD
            .decode(token.trim())
            .map_err(|_| AuthError::InvalidSession)?;
        if raw.len() != TOKEN_LEN {
            return Err(AuthError::InvalidSession);
        }
        let idb: [u8; 32] = raw[..32]
            .try_into()
            .map_err(|_| AuthError::InvalidSession)?;
        let expiry = u64::from_be_bytes(
            raw[32..40]
                .try_into()
                .map_err(|_| AuthError::InvalidSession)?,
        );
        let expected = self.session_tag(&idb, expiry);
        if !bool::from(expected.ct_eq(&raw[40..])) {
            return Err(AuthError::InvalidSession);
        }
        if i128::from(expiry) < now {
            return Err(AuthError::InvalidSession);
        }
        Ok(Identity::from_bytes(&idb))
    }

    fn challenge_tag(&self, id: &Identity, nonce: &[u8; 32], created_ns: i128) -> [u8; 32] {
        let mut mac = self.hmac();
        mac.update(id.as_str().as_bytes());
        mac.update(nonce);
        mac.update(&created_ns.to_be_bytes());
        mac.finalize().into_bytes().into()
    }

    fn session_tag(&self, id: &[u8; 32], expiry: u64) -> [u8; 32] {
        let mut mac = self.hmac();
        mac.update(SESSION_DOMAIN);
        mac.update(id);
        mac.update(&expiry.to_be_bytes());
        mac.finalize().into_bytes().into()
    }

    fn hmac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC accepts any key length")
    }
}

/// Nanoseconds since the Unix epoch.
pub fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Authenticator {
        Authenticator::new(Duration::from_secs(60), Duration::from_secs(3600))
    }

    fn id(c: char) -> Identity {
        Identity::parse(&c.to_string().repeat(64)).unwrap()
    }

    #[test]
    fn challenge_is_bound_and_reusable_until_it_expires() {
        let a = auth();
        let ch = a.issue_challenge(&id('a'));
        assert_eq!(
            a.redeem_challenge(&id('b'), &ch),
            Err(AuthError::InvalidChallenge)
        );
        let mut t = ch.clone();
        t.created_ns += 1;
        assert_eq!(
            a.redeem_challenge(&id('a'), &t),
            Err(AuthError::InvalidChallenge)
        );
        let mut t = ch.clone();
        t.nonce[0] ^= 1;
        assert_eq!(
            a.redeem_challenge(&id('a'), &t),
            Err(AuthError::InvalidChallenge)
        );
        assert_eq!(a.redeem_challenge(&id('a'), &ch), Ok(()));
        assert_eq!(a.redeem_challenge(&id('a'), &ch), Ok(()));
        // Another server (another secret) does not accept it.
        assert_eq!(
            auth().redeem_challenge(&id('a'), &ch),
            Err(AuthError::InvalidChallenge)
        );
    }

    #[test]
    fn challenge_expires() {
        let a = auth();
        let ch = a.issue_challenge(&id('a'));
        let late = ch.created_ns + Duration::from_secs(61).as_nanos() as i128;
        assert_eq!(
            a.redeem_at(&id('a'), &ch, late),
            Err(AuthError::ChallengeExpired)
        );
    }

    #[test]
    fn sessions_verify_and_expire() {
        let a = auth();
        let tok = a.issue_session(&id('c'));
        assert_eq!(a.verify_session(&tok), Ok(id('c')));
        assert_eq!(
            a.verify_session_at(&tok, now_ns() + 3601 * 1_000_000_000),
            Err(AuthError::InvalidSession)
        );
        assert_eq!(auth().verify_session(&tok), Err(AuthError::InvalidSession));
        let mut raw = STANDARD.decode(&tok).unwrap();
        raw[0] ^= 1;
        assert_eq!(
            a.verify_session(&STANDARD.encode(raw)),
            Err(AuthError::InvalidSession)
        );
        assert_eq!(
            a.verify_session("not base64!"),
            Err(AuthError::InvalidSession)
        );
    }
}
