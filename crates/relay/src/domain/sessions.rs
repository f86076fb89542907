//! Access tokens (JWT, HS256 pinned) and refresh-token families.
//!
//! A refresh token is 32 random bytes (base64url), stored only as its
//! SHA-256. Each login starts a family; each refresh retires the presented
//! token and issues the next one in the same family. Presenting a retired
//! token again means it was copied: the whole family is revoked.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::{Relay, now_secs};
use crate::error::{Error, Result};
use crate::store::{NewRefreshToken, RefreshTokenRow, Rotation};

/// File in the data directory holding the generated JWT secret.
pub const JWT_SECRET_FILE: &str = "jwt-secret";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: i64,
    exp: i64,
}

/// What login, registration and refresh return.
#[derive(Debug, Clone)]
pub struct AuthTokens {
    pub token: String,
    pub refresh_token: String,
    /// The access token's `exp`, UNIX seconds.
    pub expires_at: i64,
}

/// At most this many verified access tokens are remembered (~250 bytes
/// each, so ~4 MiB at worst). Past it, expired entries go, and if that is not
/// enough the whole cache is dropped: a miss costs only a full verification.
const VERIFIED_TOKENS_MAX: usize = 16_384;

pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    access_ttl: Duration,
    refresh_ttl: Duration,
    /// Access tokens whose signature already checked out, with their user
    /// and `exp`. Verification is a pure function of the token and the
    /// clock, and a client sends the same token with every request until it
    /// refreshes: full JWT verification (base64, HMAC key set-up, HMAC, JSON)
    /// was ~10 % of the relay's user-space instructions per message
    /// (docs/performance.md, sixth round). Only tokens that passed
    /// verification get in, so a client cannot fill it with garbage.
    verified: Mutex<HashMap<TokenKey, (Uuid, i64)>>,
}

/// A presented token as a cache key. Equality is constant-time, so a lookup
/// reveals nothing about how much of a guessed token matches a cached one.
/// (No `Borrow<str>`: a lookup by `&str` would compare with `str`'s `==`.)
struct TokenKey(Box<str>);

impl PartialEq for TokenKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for TokenKey {}

impl Hash for TokenKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl Tokens {
    pub fn new(secret: &[u8], access_ttl: Duration, refresh_ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            access_ttl,
            refresh_ttl,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// A signed access token for `user` and its expiry (UNIX seconds).
    pub fn access_token(&self, user: Uuid, now: i64) -> Result<(String, i64)> {
        let exp = now + self.access_ttl.as_secs() as i64;
        let claims = Claims {
            sub: user.to_string(),
            iat: now,
            exp,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| Error::Internal(format!("jwt encode: {e}")))?;
        Ok((token, exp))
    }

    /// The user id of a valid, unexpired access token.
    pub fn verify(&self, token: &str) -> Result<Uuid> {
        self.verify_at(token, now_secs())
    }

    fn verify_at(&self, token: &str, now: i64) -> Result<Uuid> {
        let key = TokenKey(token.into());
        if let Some(&(user, exp)) = self.verified().get(&key) {
            // Same rule as the full check below (no leeway): valid through
            // the second of its `exp`.
            return if exp >= now {
                Ok(user)
            } else {
                Err(Error::Unauthorized)
            };
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| Error::Unauthorized)?;
        let user = Uuid::parse_str(&data.claims.sub).map_err(|_| Error::Unauthorized)?;
        let mut verified = self.verified();
        if verified.len() >= VERIFIED_TOKENS_MAX {
            verified.retain(|_, &mut (_, exp)| exp >= now);
            if verified.len() >= VERIFIED_TOKENS_MAX {
                verified.clear();
            }
        }
        verified.insert(key, (user, data.claims.exp));
        Ok(user)
    }

    fn verified(&self) -> std::sync::MutexGuard<'_, HashMap<TokenKey, (Uuid, i64)>> {
        // The map holds no invariant a panicking holder could break.
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn refresh_ttl(&self) -> Duration {
        self.refresh_ttl
    }
}

/// A fresh refresh token and the hash under which it is stored.
pub fn new_refresh_token() -> (String, [u8; 32]) {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_refresh_token(&token);
    (token, hash)
}

pub fn hash_refresh_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// What a presented refresh token is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    /// Exchangeable once.
    Live,
    /// Already exchanged and presented again: revoke its family.
    Reused,
    /// Unknown, expired or revoked.
    Invalid,
}

pub fn classify_refresh_token(
    row: Option<&RefreshTokenRow>,
    now: i64,
    reuse_grace_secs: i64,
) -> TokenState {
    match row {
        None => TokenState::Invalid,
        Some(r) if r.revoked || r.expires_at <= now => TokenState::Invalid,
        // Presented again just after its rotation: a client racing itself
        // (two tabs refreshing at once), refused but not treated as theft.
        Some(r) if r.rotated && r.rotated_at.is_some_and(|t| now - t < reuse_grace_secs) => {
            TokenState::Invalid
        }
        Some(r) if r.rotated => TokenState::Reused,
        Some(_) => TokenState::Live,
    }
}

/// Reads `<data_dir>/jwt-secret`, or creates it (mode 0600) with 64 random bytes.
pub fn load_or_create_jwt_secret(data_dir: &Path) -> std::io::Result<Vec<u8>> {
    let path = data_dir.join(JWT_SECRET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            return STANDARD.decode(text.trim()).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            });
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    let mut secret = vec![0u8; 64];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path)?;
    file.write_all(STANDARD.encode(&secret).as_bytes())?;
    file.sync_all()?;
    Ok(secret)
}

impl Relay {
    /// Issues an access token and a refresh token in a new family.
    pub async fn start_session(&self, user: Uuid) -> Result<AuthTokens> {
        let now = now_secs();
        let (token, expires_at) = self.tokens.access_token(user, now)?;
        let (refresh_token, hash) = new_refresh_token();
        self.store
            .insert_refresh_token(NewRefreshToken {
                hash,
                user_id: user,
                family_id: Uuid::new_v4(),
                expires_at: now + self.tokens.refresh_ttl.as_secs() as i64,
            })
            .await?;
        Ok(AuthTokens {
            token,
            refresh_token,
            expires_at,
        })
    }

    /// Rotates a refresh token: the presented one dies, a new pair is issued.
    pub async fn refresh(&self, presented: &str) -> Result<AuthTokens> {
        let now = now_secs();
        let (refresh_token, next_hash) = new_refresh_token();
        let rotation = self
            .store
            .rotate_refresh_token(
                hash_refresh_token(presented),
                next_hash,
                now + self.tokens.refresh_ttl.as_secs() as i64,
                now,
                i64::try_from(self.config.refresh_reuse_grace.as_secs()).unwrap_or(i64::MAX),
            )
            .await?;
        match rotation {
            Rotation::Rotated { user_id } => {
                let (token, expires_at) = self.tokens.access_token(user_id, now)?;
                Ok(AuthTokens {
                    token,
                    refresh_token,
                    expires_at,
                })
            }
            Rotation::ReuseDetected => {
                tracing::warn!("refresh token reuse detected; session family revoked");
                Err(Error::Unauthorized)
            }
            Rotation::Invalid => Err(Error::Unauthorized),
        }
    }

    /// Logout: revokes the family of `presented`, which must be `user`'s.
    pub async fn logout(&self, user: Uuid, presented: &str) -> Result<()> {
        if self
            .store
            .revoke_refresh_family(hash_refresh_token(presented), user)
            .await?
        {
            Ok(())
        } else {
            Err(Error::Unauthorized)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::new(
            b"test secret",
            Duration::from_secs(900),
            Duration::from_secs(3600),
        )
    }

    #[test]
    fn access_tokens_round_trip_and_reject_tampering() {
        let t = tokens();
        let user = Uuid::new_v4();
        let (jwt, exp) = t.access_token(user, now_secs()).unwrap();
        assert!(exp > now_secs());
        assert_eq!(t.verify(&jwt).unwrap(), user);
        let other = Tokens::new(
            b"other",
            Duration::from_secs(900),
            Duration::from_secs(3600),
        );
        assert!(matches!(other.verify(&jwt), Err(Error::Unauthorized)));
        assert!(t.verify("not.a.jwt").is_err());
    }

    #[test]
    fn expired_access_tokens_are_rejected_without_leeway() {
        let t = tokens();
        let (jwt, _) = t.access_token(Uuid::new_v4(), now_secs() - 901).unwrap();
        assert!(matches!(t.verify(&jwt), Err(Error::Unauthorized)));
    }

    #[test]
    fn a_remembered_token_still_expires_and_others_still_fail() {
        let t = tokens();
        let user = Uuid::new_v4();
        let now = now_secs();
        let (jwt, exp) = t.access_token(user, now).unwrap();
        assert_eq!(t.verify_at(&jwt, now).unwrap(), user);
        assert_eq!(t.verify_at(&jwt, exp).unwrap(), user, "valid through exp");
        assert!(matches!(
            t.verify_at(&jwt, exp + 1),
            Err(Error::Unauthorized)
        ));
        // A tampered copy of a remembered token is not a cache hit.
        let mut tampered = jwt.clone();
        let last = if jwt.ends_with('A') { "B" } else { "A" };
        tampered.replace_range(jwt.len() - 1.., last);
        assert!(t.verify_at(&tampered, now).is_err());
        assert!(t.verify_at(&jwt[..jwt.len() - 1], now).is_err());
    }

    #[test]
    fn the_cache_of_verified_tokens_is_bounded() {
        let t = tokens();
        let now = now_secs();
        for _ in 0..VERIFIED_TOKENS_MAX + 10 {
            let (jwt, _) = t.access_token(Uuid::new_v4(), now).unwrap();
            t.verify_at(&jwt, now).unwrap();
        }
        let cached = t.verified().len();
        assert!(cached <= VERIFIED_TOKENS_MAX, "{cached} cached");
        assert!(cached > 0);
    }

    #[test]
    fn other_algorithms_are_rejected() {
        let t = tokens();
        let claims = Claims {
            sub: Uuid::new_v4().to_string(),
            iat: now_secs(),
            exp: now_secs() + 60,
        };
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(b"test secret"),
        )
        .unwrap();
        assert!(t.verify(&hs512).is_err());
    }

    #[test]
    fn refresh_tokens_are_32_random_bytes_stored_hashed() {
        let (a, ha) = new_refresh_token();
        let (b, _) = new_refresh_token();
        assert_ne!(a, b);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 32);
        assert_eq!(hash_refresh_token(&a), ha);
    }

    #[test]
    fn token_family_states() {
        let row = RefreshTokenRow {
            user_id: Uuid::new_v4(),
            family_id: Uuid::new_v4(),
            expires_at: 100,
            rotated: false,
            rotated_at: None,
            revoked: false,
        };
        assert_eq!(classify_refresh_token(None, 0, 0), TokenState::Invalid);
        assert_eq!(classify_refresh_token(Some(&row), 99, 0), TokenState::Live);
        assert_eq!(
            classify_refresh_token(Some(&row), 100, 0),
            TokenState::Invalid
        );
        let rotated = RefreshTokenRow {
            rotated: true,
            ..row
        };
        assert_eq!(
            classify_refresh_token(Some(&rotated), 50, 60),
            TokenState::Reused,
            "rotated before its time was recorded: long ago"
        );
        let just_rotated = RefreshTokenRow {
            rotated: true,
            rotated_at: Some(40),
            ..row
        };
        assert_eq!(
            classify_refresh_token(Some(&just_rotated), 49, 10),
            TokenState::Invalid
        );
        assert_eq!(
            classify_refresh_token(Some(&just_rotated), 50, 10),
            TokenState::Reused
        );
        assert_eq!(
            classify_refresh_token(Some(&just_rotated), 40, 0),
            TokenState::Reused,
            "no grace"
        );
        let revoked = RefreshTokenRow {
            rotated: true,
            revoked: true,
            ..row
        };
        assert_eq!(
            classify_refresh_token(Some(&revoked), 50, 0),
            TokenState::Invalid
        );
    }

    #[test]
    fn jwt_secret_is_generated_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_jwt_secret(dir.path()).unwrap();
        let b = load_or_create_jwt_secret(dir.path()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(JWT_SECRET_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
