//! The user's key material, libsignal-encoded: a Curve25519 identity key, an
//! XEdDSA-signed pre-key and a batch of one-time pre-keys. Private halves
//! live in the profile's `keys.json` (mode 0600).
//!
//! Every upload to the relay carries a new signed pre-key (the relay requires
//! a strictly greater id), so each refill also rotates it; the last few
//! signed pre-keys are kept so messages sealed to them while in flight still
//! open. A one-time pre-key's private half is deleted once a message to it
//! has been opened and stored.

use obscura_keys::{KeyPair, PublicKey};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::profile::{Profile, ProfileError};
use crate::relay::api::{OneTimePreKey, PreKeyUpload, SignedPreKey};

const KEYS_FILE: &str = "keys.json";
/// One-time pre-keys generated per batch (the relay keeps at most 100).
pub const PRE_KEY_BATCH: usize = 100;
/// Signed pre-keys kept after rotation, for messages still in flight.
const SIGNED_PRE_KEYS_KEPT: usize = 5;
/// Unused one-time pre-keys kept; older ones were pruned by the relay anyway.
const ONE_TIME_PRE_KEYS_KEPT: usize = 400;

#[derive(Clone, Serialize, Deserialize)]
struct StoredKey {
    id: u32,
    #[serde(with = "crate::b64")]
    private: [u8; 32],
}

#[derive(Clone, Serialize, Deserialize)]
struct StoredSignedKey {
    id: u32,
    #[serde(with = "crate::b64")]
    private: [u8; 32],
    #[serde(with = "crate::b64")]
    signature: Vec<u8>,
}

/// Private key material of one profile.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyStore {
    #[serde(with = "crate::b64")]
    identity: [u8; 32],
    registration_id: u32,
    /// Oldest first; the last one is the current signed pre-key.
    signed_pre_keys: Vec<StoredSignedKey>,
    /// Oldest first.
    one_time_pre_keys: Vec<StoredKey>,
    next_signed_id: u32,
    next_one_time_id: u32,
}

impl KeyStore {
    /// A fresh identity with one signed pre-key and a batch of one-time pre-keys.
    pub fn generate() -> Self {
        let identity = KeyPair::generate(&mut OsRng);
        let mut store = Self {
            identity: identity.private_bytes(),
            // libsignal registration ids are 14-bit, never 0.
            registration_id: 1 + OsRng.next_u32() % 16380,
            signed_pre_keys: Vec::new(),
            one_time_pre_keys: Vec::new(),
            next_signed_id: 1,
            next_one_time_id: 1,
        };
        store.rotate_signed_pre_key();
        store.add_one_time_pre_keys(PRE_KEY_BATCH);
        store
    }

    pub fn load(profile: &Profile) -> Result<Option<Self>, ProfileError> {
        profile.read_json(KEYS_FILE)
    }

    pub fn save(&self, profile: &Profile) -> Result<(), ProfileError> {
        profile.write_json(KEYS_FILE, self)
    }

    pub fn identity(&self) -> KeyPair {
        KeyPair::from_private_bytes(self.identity)
    }

    pub fn registration_id(&self) -> u32 {
        self.registration_id
    }

    /// Everything the relay needs at registration or takeover: identity key,
    /// registration id, the current signed pre-key and all unused one-time pre-keys.
    pub fn full_upload(&self) -> PreKeyUpload {
        PreKeyUpload {
            identity_key: Some(self.identity().public().to_bytes().to_vec()),
            registration_id: Some(self.registration_id),
            signed_pre_key: self.current_signed_public(),
            one_time_pre_keys: self.one_time_publics(self.one_time_pre_keys.len()),
        }
    }

    /// Rotates the signed pre-key and adds `count` one-time pre-keys; returns
    /// the refill upload (without identity key: not a takeover).
    pub fn refill(&mut self, count: usize) -> PreKeyUpload {
        self.rotate_signed_pre_key();
        self.add_one_time_pre_keys(count);
        PreKeyUpload {
            identity_key: None,
            registration_id: None,
            signed_pre_key: self.current_signed_public(),
            one_time_pre_keys: self.one_time_publics(count),
        }
    }

    /// Like [`refill`](Self::refill), but carrying the identity key: the
    /// relay treats it as a refill when it holds this identity already, and
    /// as a device takeover when it holds another one.
    pub fn claim(&mut self, count: usize) -> PreKeyUpload {
        let mut upload = self.refill(count);
        upload.identity_key = Some(self.identity().public().to_bytes().to_vec());
        upload.registration_id = Some(self.registration_id);
        upload
    }

    /// The signed pre-key with `id`, if still kept.
    pub fn signed_pre_key(&self, id: u32) -> Option<KeyPair> {
        self.signed_pre_keys
            .iter()
            .find(|k| k.id == id)
            .map(|k| KeyPair::from_private_bytes(k.private))
    }

    /// The one-time pre-key with `id`, if still unused.
    pub fn one_time_pre_key(&self, id: u32) -> Option<KeyPair> {
        self.one_time_pre_keys
            .iter()
            .find(|k| k.id == id)
            .map(|k| KeyPair::from_private_bytes(k.private))
    }

    /// Forgets a consumed one-time pre-key (call `save` afterwards).
    pub fn remove_one_time_pre_key(&mut self, id: u32) {
        self.one_time_pre_keys.retain(|k| k.id != id);
    }

    fn rotate_signed_pre_key(&mut self) {
        let identity = self.identity();
        let key = KeyPair::generate(&mut OsRng);
        let signature = identity.sign(&key.public().to_bytes(), &mut OsRng).to_vec();
        self.signed_pre_keys.push(StoredSignedKey {
            id: self.next_signed_id,
            private: key.private_bytes(),
            signature,
        });
        self.next_signed_id += 1;
        let excess = self
            .signed_pre_keys
            .len()
            .saturating_sub(SIGNED_PRE_KEYS_KEPT);
        self.signed_pre_keys.drain(..excess);
    }

    fn add_one_time_pre_keys(&mut self, count: usize) {
        for _ in 0..count {
            let key = KeyPair::generate(&mut OsRng);
            self.one_time_pre_keys.push(StoredKey {
                id: self.next_one_time_id,
                private: key.private_bytes(),
            });
            self.next_one_time_id += 1;
        }
        let excess = self
            .one_time_pre_keys
            .len()
            .saturating_sub(ONE_TIME_PRE_KEYS_KEPT);
        self.one_time_pre_keys.drain(..excess);
    }

    fn current_signed_public(&self) -> SignedPreKey {
        let current = self
            .signed_pre_keys
            .last()
            .expect("a key store always has a signed pre-key");
        SignedPreKey {
            key_id: current.id,
            public_key: KeyPair::from_private_bytes(current.private)
                .public()
                .to_bytes()
                .to_vec(),
            signature: current.signature.clone(),
        }
    }

    /// Public halves of the newest `count` one-time pre-keys.
    fn one_time_publics(&self, count: usize) -> Vec<OneTimePreKey> {
        let skip = self.one_time_pre_keys.len().saturating_sub(count);
        self.one_time_pre_keys[skip..]
            .iter()
            .map(|k| OneTimePreKey {
                key_id: k.id,
                public_key: KeyPair::from_private_bytes(k.private)
                    .public()
                    .to_bytes()
                    .to_vec(),
            })
            .collect()
    }
}

/// A short, human-comparable fingerprint of an identity key.
pub fn fingerprint(key: &PublicKey) -> String {
    let digest = Sha256::digest(key.to_bytes());
    digest[..16]
        .chunks(2)
        .map(hex::encode)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_libsignal_encoded_and_signed() {
        let store = KeyStore::generate();
        let upload = store.full_upload();
        let identity = PublicKey::from_bytes(upload.identity_key.as_deref().unwrap()).unwrap();
        assert_eq!(upload.signed_pre_key.public_key.len(), 33);
        assert_eq!(upload.signed_pre_key.signature.len(), 64);
        identity
            .verify_signature(
                &upload.signed_pre_key.public_key,
                &upload.signed_pre_key.signature,
            )
            .unwrap();
        assert_eq!(upload.one_time_pre_keys.len(), PRE_KEY_BATCH);
        assert!(
            upload
                .one_time_pre_keys
                .iter()
                .all(|k| k.public_key.len() == 33 && k.public_key[0] == 5)
        );
        assert!((1..=16380).contains(&store.registration_id()));
    }

    #[test]
    fn refill_rotates_with_increasing_ids() {
        let mut store = KeyStore::generate();
        let first = store.full_upload().signed_pre_key.key_id;
        let refill = store.refill(10);
        assert!(refill.identity_key.is_none());
        assert!(refill.signed_pre_key.key_id > first);
        assert_eq!(refill.one_time_pre_keys.len(), 10);
        assert_eq!(refill.one_time_pre_keys[0].key_id, PRE_KEY_BATCH as u32 + 1);
        // The previous signed pre-key is still there for in-flight messages.
        assert!(store.signed_pre_key(first).is_some());
        for _ in 0..SIGNED_PRE_KEYS_KEPT {
            store.refill(0);
        }
        assert!(store.signed_pre_key(first).is_none());
    }

    #[test]
    fn consumed_one_time_keys_are_forgotten() {
        let mut store = KeyStore::generate();
        assert!(store.one_time_pre_key(3).is_some());
        store.remove_one_time_pre_key(3);
        assert!(store.one_time_pre_key(3).is_none());
    }
}
