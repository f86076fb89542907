//! Pre-key validation (as libsignal clients produce keys), upload/takeover
//! and bundle fetch.

use std::collections::HashSet;

use obscura_keys::PublicKey;
use uuid::Uuid;

use super::Relay;
use crate::error::{Error, Result};
use crate::fanout::{CloseReason, Signal};
use crate::store::{Bundle, Identity, KeyUpload, KeyUploadOutcome, OneTimePreKey, SignedPreKey};

/// Most one-time pre-keys accepted in one request.
pub const MAX_ONE_TIME_PRE_KEYS_PER_REQUEST: usize = 100;

/// `POST /v1/keys` after base64 decoding.
#[derive(Debug, Clone)]
pub struct KeyUploadRequest {
    pub identity_key: Option<Vec<u8>>,
    pub registration_id: Option<u32>,
    pub signed_pre_key: SignedPreKey,
    pub one_time_pre_keys: Vec<OneTimePreKey>,
}

/// A 33-byte Curve25519 public key with libsignal's 0x05 type byte.
pub fn validate_public_key(bytes: &[u8], field: &str) -> Result<PublicKey> {
    PublicKey::from_bytes(bytes).map_err(|e| Error::invalid(format!("{field}: {e}")))
}

/// The signed pre-key is a valid key, signed (XEdDSA) by `identity_key`
/// over its 33-byte serialization.
pub fn validate_signed_pre_key(identity_key: &[u8], spk: &SignedPreKey) -> Result<()> {
    let identity = validate_public_key(identity_key, "identityKey")?;
    validate_public_key(&spk.public_key, "signedPreKey.publicKey")?;
    identity
        .verify_signature(&spk.public_key, &spk.signature)
        .map_err(|e| Error::invalid(format!("signedPreKey.signature: {e}")))
}

/// Valid keys, unique ids, at most `max` (and at most 100) per request.
pub fn validate_one_time_pre_keys(keys: &[OneTimePreKey], max: usize) -> Result<()> {
    let max = max.min(MAX_ONE_TIME_PRE_KEYS_PER_REQUEST);
    if keys.len() > max {
        return Err(Error::invalid(format!(
            "at most {max} one-time pre-keys per request"
        )));
    }
    let mut ids = HashSet::with_capacity(keys.len());
    for key in keys {
        validate_public_key(&key.public_key, "oneTimePreKeys.publicKey")?;
        if !ids.insert(key.key_id) {
            return Err(Error::invalid(format!(
                "duplicate one-time pre-key id {}",
                key.key_id
            )));
        }
    }
    Ok(())
}

/// True when a fetch moved the count from `threshold` or above to below it.
pub fn crossed_threshold(remaining_after: u32, consumed: bool, threshold: u32) -> bool {
    consumed && remaining_after < threshold && remaining_after + 1 >= threshold
}

impl Relay {
    /// Refill, or device takeover when a different identity key is sent.
    pub async fn upload_keys(&self, user: Uuid, req: KeyUploadRequest) -> Result<KeyUploadOutcome> {
        let identity = match (req.identity_key, req.registration_id) {
            (Some(key), Some(registration_id)) => {
                validate_public_key(&key, "identityKey")?;
                Some(Identity {
                    identity_key: key,
                    registration_id,
                })
            }
            (Some(_), None) => {
                return Err(Error::invalid(
                    "registrationId is required with identityKey",
                ));
            }
            (None, _) => None,
        };
        let verified_against = match &identity {
            Some(identity) => identity.identity_key.clone(),
            None => {
                self.store
                    .identity(user)
                    .await?
                    .ok_or(Error::Unauthorized)?
                    .identity_key
            }
        };
        validate_signed_pre_key(&verified_against, &req.signed_pre_key)?;
        validate_one_time_pre_keys(&req.one_time_pre_keys, MAX_ONE_TIME_PRE_KEYS_PER_REQUEST)?;
        let outcome = self
            .store
            .upload_keys(
                user,
                KeyUpload {
                    identity,
                    verified_against,
                    signed_pre_key: req.signed_pre_key,
                    one_time_pre_keys: req.one_time_pre_keys,
                    max_one_time_pre_keys: self.config.max_one_time_prekeys,
                },
            )
            .await?;
        match outcome {
            KeyUploadOutcome::TookOver { .. } => {
                tracing::info!(%user, "device takeover: keys and queued messages deleted");
                self.fanout.disconnect(user, CloseReason::Takeover);
                Ok(outcome)
            }
            KeyUploadOutcome::Refilled { .. } => Ok(outcome),
            KeyUploadOutcome::StaleSignedPreKey { stored } => Err(Error::invalid(format!(
                "signedPreKey.keyId must be greater than {stored}"
            ))),
            KeyUploadOutcome::IdentityChanged => {
                Err(Error::Conflict("identity key changed concurrently".into()))
            }
            KeyUploadOutcome::UnknownUser => Err(Error::Unauthorized),
        }
    }

    /// The user's bundle with one one-time pre-key consumed (if any is left).
    pub async fn fetch_bundle(&self, user: Uuid) -> Result<Bundle> {
        let bundle = self.store.take_bundle(user).await?.ok_or(Error::NotFound)?;
        let threshold = self.config.prekey_min_threshold;
        if crossed_threshold(
            bundle.remaining,
            bundle.one_time_pre_key.is_some(),
            threshold,
        ) {
            self.fanout.notify(
                user,
                Signal::PreKeysLow {
                    remaining: bundle.remaining,
                },
            );
        }
        Ok(bundle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use obscura_keys::KeyPair;
    use rand::rngs::OsRng;

    fn spk(identity: &KeyPair, id: u32) -> SignedPreKey {
        let public = KeyPair::generate(&mut OsRng).public().to_bytes().to_vec();
        let signature = identity.sign(&public, &mut OsRng).to_vec();
        SignedPreKey {
            key_id: id,
            public_key: public,
            signature,
        }
    }

    #[test]
    fn public_keys_must_be_33_bytes_with_type_0x05() {
        let good = KeyPair::generate(&mut OsRng).public().to_bytes();
        assert!(validate_public_key(&good, "k").is_ok());
        assert!(validate_public_key(&good[1..], "k").is_err());
        let mut wrong_type = good;
        wrong_type[0] = 0x06;
        assert!(validate_public_key(&wrong_type, "k").is_err());
        assert!(validate_public_key(&[], "k").is_err());
    }

    #[test]
    fn signed_pre_key_signatures_verify_with_either_sign_bit() {
        // libsignal carries the Edwards sign bit in byte 63; sign enough keys
        // to see both values of that bit.
        let mut seen = [false, false];
        for _ in 0..64 {
            let identity = KeyPair::generate(&mut OsRng);
            let key = spk(&identity, 1);
            validate_signed_pre_key(&identity.public().to_bytes(), &key).unwrap();
            seen[usize::from(key.signature[63] >> 7)] = true;
        }
        assert_eq!(seen, [true, true]);
    }

    #[test]
    fn bad_signatures_are_rejected() {
        let identity = KeyPair::generate(&mut OsRng);
        let other = KeyPair::generate(&mut OsRng);
        let key = spk(&other, 1);
        assert!(validate_signed_pre_key(&identity.public().to_bytes(), &key).is_err());
        let mut short = spk(&identity, 1);
        short.signature.truncate(63);
        assert!(validate_signed_pre_key(&identity.public().to_bytes(), &short).is_err());
        let mut flipped = spk(&identity, 1);
        flipped.signature[0] ^= 1;
        assert!(validate_signed_pre_key(&identity.public().to_bytes(), &flipped).is_err());
    }

    #[test]
    fn one_time_pre_key_rules() {
        let key = |id| OneTimePreKey {
            key_id: id,
            public_key: KeyPair::generate(&mut OsRng).public().to_bytes().to_vec(),
        };
        let hundred: Vec<_> = (0..100).map(key).collect();
        assert!(validate_one_time_pre_keys(&hundred, 100).is_ok());
        let too_many: Vec<_> = (0..101).map(key).collect();
        assert!(validate_one_time_pre_keys(&too_many, 1000).is_err());
        assert!(validate_one_time_pre_keys(&[key(7), key(7)], 100).is_err());
        let bad = OneTimePreKey {
            key_id: 1,
            public_key: vec![5; 32],
        };
        assert!(validate_one_time_pre_keys(&[bad], 100).is_err());
        assert!(validate_one_time_pre_keys(&[], 100).is_ok());
    }

    #[test]
    fn threshold_crossing_fires_once() {
        assert!(crossed_threshold(9, true, 10));
        assert!(!crossed_threshold(8, true, 10));
        assert!(!crossed_threshold(10, true, 10));
        assert!(!crossed_threshold(9, false, 10));
        assert!(!crossed_threshold(0, true, 0));
    }
}
