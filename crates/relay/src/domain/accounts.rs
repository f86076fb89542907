//! Registration and login; argon2id password hashing off the async runtime.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;
use uuid::Uuid;

use super::keys::{
    MAX_ONE_TIME_PRE_KEYS_PER_REQUEST, validate_one_time_pre_keys, validate_public_key,
    validate_signed_pre_key,
};
use super::{AuthTokens, Relay, now_secs};
use crate::config::Argon2Params;
use crate::error::{Error, Result};
use crate::store::{CreateUser, Identity, NewUser, OneTimePreKey, SignedPreKey};

pub const MAX_USERNAME_CHARS: usize = 64;
/// Hashing cost grows with input; nobody needs a longer password than this.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A registration request after base64 decoding.
#[derive(Debug, Clone)]
pub struct Registration {
    pub username: String,
    pub password: String,
    pub identity_key: Vec<u8>,
    pub registration_id: u32,
    pub signed_pre_key: SignedPreKey,
    pub one_time_pre_keys: Vec<OneTimePreKey>,
}

pub fn validate_username(username: &str) -> Result<()> {
    let chars = username.chars().count();
    if chars == 0 || username.trim().is_empty() {
        return Err(Error::invalid("username must not be empty"));
    }
    if chars > MAX_USERNAME_CHARS {
        return Err(Error::invalid(format!(
            "username must be at most {MAX_USERNAME_CHARS} characters"
        )));
    }
    if username.chars().any(char::is_control) {
        return Err(Error::invalid(
            "username must not contain control characters",
        ));
    }
    Ok(())
}

/// `min_chars` is `--min-password-chars` (at least 1: never empty).
pub fn validate_password(password: &str, min_chars: usize) -> Result<()> {
    let min_chars = min_chars.max(1);
    if password.chars().count() < min_chars {
        return Err(Error::invalid(if min_chars == 1 {
            "password must not be empty".to_string()
        } else {
            format!("password must be at least {min_chars} characters")
        }));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(Error::invalid(format!(
            "password must be at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Every rule a registration must pass before anything is hashed or stored.
pub fn validate_registration(reg: &Registration, min_password_chars: usize) -> Result<()> {
    validate_username(&reg.username)?;
    validate_password(&reg.password, min_password_chars)?;
    validate_public_key(&reg.identity_key, "identityKey")?;
    validate_signed_pre_key(&reg.identity_key, &reg.signed_pre_key)?;
    validate_one_time_pre_keys(&reg.one_time_pre_keys, MAX_ONE_TIME_PRE_KEYS_PER_REQUEST)
}

/// argon2id on the blocking pool, at most one hash per core at a time, so
/// a burst of logins cannot starve the async runtime or exhaust memory.
pub struct PasswordHasher {
    argon2: Argon2<'static>,
    permits: Arc<Semaphore>,
    /// A real hash of a random password, verified when the username is
    /// unknown so that login costs the same either way.
    dummy_hash: String,
}

impl PasswordHasher {
    pub fn new(params: Argon2Params) -> Result<Self> {
        let p = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .map_err(|e| Error::Internal(format!("argon2 params: {e}")))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, p);
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let dummy_hash = hash_with(&argon2, &Uuid::new_v4().to_string())?;
        Ok(Self {
            argon2,
            permits: Arc::new(Semaphore::new(cores)),
            dummy_hash,
        })
    }

    pub async fn hash(&self, password: String) -> Result<String> {
        let argon2 = self.argon2.clone();
        self.blocking(move || hash_with(&argon2, &password)).await?
    }

    /// Verifies `password` against `hash`, or against the dummy hash when
    /// there is no user (and then returns false).
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool> {
        let argon2 = self.argon2.clone();
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.clone());
        let ok = self
            .blocking(move || {
                PasswordHash::new(&hash)
                    .map(|h| argon2.verify_password(password.as_bytes(), &h).is_ok())
                    .unwrap_or(false)
            })
            .await?;
        Ok(known && ok)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| Error::Internal("hasher closed".into()))?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| Error::Internal(format!("hash task: {e}")))
    }
}

fn hash_with(argon2: &Argon2<'_>, password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("argon2: {e}")))
}

impl Relay {
    /// Creates the account with its keys and starts a session.
    pub async fn register(&self, mut reg: Registration) -> Result<(Uuid, AuthTokens)> {
        validate_registration(&reg, self.config.min_password_chars)?;
        // As for uploads: keep only the newest `max-one-time-prekeys`.
        let keep = self.config.max_one_time_prekeys as usize;
        let excess = reg.one_time_pre_keys.len().saturating_sub(keep);
        reg.one_time_pre_keys.drain(..excess);
        // Cheap early answer; the unique constraint decides under races.
        if self.store.credentials(&reg.username).await?.is_some() {
            return Err(Error::Conflict("username already exists".into()));
        }
        let password_hash = self.passwords.hash(reg.password).await?;
        let id = Uuid::new_v4();
        let created = self
            .store
            .create_user(NewUser {
                id,
                username: reg.username,
                password_hash,
                identity: Identity {
                    identity_key: reg.identity_key,
                    registration_id: reg.registration_id,
                },
                signed_pre_key: reg.signed_pre_key,
                one_time_pre_keys: reg.one_time_pre_keys,
                created_at: now_secs(),
            })
            .await?;
        if created == CreateUser::UsernameTaken {
            return Err(Error::Conflict("username already exists".into()));
        }
        Ok((id, self.start_session(id).await?))
    }

    /// Checks the password (same cost whether or not the user exists).
    pub async fn login(&self, username: &str, password: String) -> Result<AuthTokens> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(Error::Unauthorized);
        }
        let found = self.store.credentials(username).await?;
        let (user, hash) = match found {
            Some((user, hash)) => (Some(user), Some(hash)),
            None => (None, None),
        };
        match (self.passwords.verify(password, hash).await?, user) {
            (true, Some(user)) => self.start_session(user).await,
            _ => Err(Error::Unauthorized),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(validate_username("alice").is_ok());
        assert!(validate_username(&"a".repeat(64)).is_ok());
        assert!(validate_username(&"é".repeat(64)).is_ok());
        assert!(validate_username(&"a".repeat(65)).is_err());
        assert!(validate_username("").is_err());
        assert!(validate_username("   ").is_err());
        assert!(validate_username("a\nb").is_err());
    }

    #[test]
    fn passwords() {
        assert!(validate_password("123456789012", 12).is_ok());
        assert!(validate_password("12345678901", 12).is_err());
        assert!(validate_password("x", 1).is_ok());
        assert!(validate_password("", 1).is_err());
        assert!(validate_password("", 0).is_err());
        assert!(validate_password(&"x".repeat(MAX_PASSWORD_BYTES + 1), 1).is_err());
    }

    #[tokio::test]
    async fn hashing_round_trips_and_unknown_users_never_verify() {
        let hasher = PasswordHasher::new(Argon2Params {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap();
        let hash = hasher.hash("correct horse battery".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(
            hasher
                .verify("correct horse battery".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify("wrong password!!".into(), Some(hash))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify("correct horse battery".into(), None)
                .await
                .unwrap()
        );
    }
}
