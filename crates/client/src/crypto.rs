//! End-to-end message encryption: HPKE (RFC 9180, `hpke` crate) with
//! DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and ChaCha20-Poly1305.
//!
//! A message is sealed in HPKE **Auth** mode from the sender's identity key
//! to the recipient's signed pre-key (whose XEdDSA signature by the
//! recipient's identity key is verified first), so only the holder of that
//! pre-key can read it and the recipient learns which identity key sent it.
//! When the bundle carried a one-time pre-key, the plaintext is first sealed
//! in Base mode to that key and the result sealed as above: reading it then
//! needs both private keys, and the one-time key is deleted after use.
//!
//! Security, exactly (see docs/client.md): no ratchet, no per-message
//! forward secrecy. A message sealed to the signed pre-key alone can be read
//! by anyone who later obtains that pre-key's private half, until the
//! recipient rotates it away (every refill rotates; five are kept). With a
//! one-time pre-key layer, a later compromise of the device no longer reveals
//! the message once the one-time key is deleted.
//!
//! Wire format of `EncryptedMessage.content` (type `PREKEY_MESSAGE`):
//!
//! ```text
//! 0      1   format version (1)
//! 1      1   flags: bit 0 = one-time pre-key layer present
//! 2      33  sender identity key (0x05 || X25519)
//! 35     4   signed pre-key id (u32 BE)
//! [39    4   one-time pre-key id (u32 BE), when flag bit 0]
//! ..     32  HPKE encapsulated key (Auth mode, to the signed pre-key)
//! ..     …   HPKE ciphertext of: [32-byte encapsulated key ‖ ciphertext
//!            to the one-time pre-key], or the plaintext directly
//! ```
//! The header bytes are the AEAD associated data of both layers, and the
//! recipient's identity key is in the HPKE `info`, so nothing can be swapped.

use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use obscura_keys::{KeyPair, PublicKey};
use prost::Message;
use rand_core::{OsRng, RngCore};

use crate::identity::KeyStore;
use crate::relay::api::PreKeyBundle;

type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type Aead = hpke::aead::ChaCha20Poly1305;
type HpkePublic = <Kem as hpke::Kem>::PublicKey;
type HpkePrivate = <Kem as hpke::Kem>::PrivateKey;
type Encapped = <Kem as hpke::Kem>::EncappedKey;

const FORMAT_VERSION: u8 = 1;
const FLAG_ONE_TIME: u8 = 1;
const ENC_LEN: usize = 32;
const OUTER_INFO: &[u8] = b"obscura message v1 signed-pre-key";
const INNER_INFO: &[u8] = b"obscura message v1 one-time-pre-key";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("the recipient's key bundle is invalid: {0}")]
    BadBundle(&'static str),
    #[error("not an Obscura HPKE message (format or length)")]
    Malformed,
    #[error("the message is for a signed pre-key ({0}) this profile no longer has")]
    UnknownSignedPreKey(u32),
    #[error(
        "the message is for a one-time pre-key ({0}) this profile does not have (already used?)"
    )]
    UnknownOneTimePreKey(u32),
    #[error("decryption failed: not sealed for this profile, or tampered with")]
    Decrypt,
}

/// What is inside the encryption: who wrote it, to whom, when, and the body.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MessageContent {
    /// Random id; the client drops a second message with the same id (replay).
    #[prost(bytes = "vec", tag = "1")]
    pub message_id: Vec<u8>,
    #[prost(string, tag = "2")]
    pub sender_user_id: String,
    #[prost(string, tag = "3")]
    pub recipient_user_id: String,
    /// Sender's clock, milliseconds since the UNIX epoch.
    #[prost(uint64, tag = "4")]
    pub sent_at_ms: u64,
    #[prost(bytes = "vec", tag = "5")]
    pub body: Vec<u8>,
}

impl MessageContent {
    pub fn new(sender_user_id: &str, recipient_user_id: &str, body: Vec<u8>) -> Self {
        let mut message_id = vec![0u8; 16];
        OsRng.fill_bytes(&mut message_id);
        let sent_at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Self {
            message_id,
            sender_user_id: sender_user_id.into(),
            recipient_user_id: recipient_user_id.into(),
            sent_at_ms,
            body,
        }
    }
}

/// A recipient's keys, taken from a bundle whose signature verified.
#[derive(Debug, Clone)]
pub struct RecipientKeys {
    pub identity: PublicKey,
    pub signed_pre_key_id: u32,
    pub signed_pre_key: PublicKey,
    pub one_time_pre_key: Option<(u32, PublicKey)>,
}

impl RecipientKeys {
    /// Parses a bundle and verifies the signed pre-key's XEdDSA signature.
    pub fn from_bundle(bundle: &PreKeyBundle) -> Result<Self, CryptoError> {
        let identity = PublicKey::from_bytes(&bundle.identity_key)
            .map_err(|_| CryptoError::BadBundle("identity key"))?;
        let spk = &bundle.signed_pre_key;
        let signed_pre_key = PublicKey::from_bytes(&spk.public_key)
            .map_err(|_| CryptoError::BadBundle("signed pre-key"))?;
        identity
            .verify_signature(&spk.public_key, &spk.signature)
            .map_err(|_| CryptoError::BadBundle("signed pre-key signature does not verify"))?;
        let one_time_pre_key = match &bundle.one_time_pre_key {
            Some(otpk) => Some((
                otpk.key_id,
                PublicKey::from_bytes(&otpk.public_key)
                    .map_err(|_| CryptoError::BadBundle("one-time pre-key"))?,
            )),
            None => None,
        };
        Ok(Self {
            identity,
            signed_pre_key_id: spk.key_id,
            signed_pre_key,
            one_time_pre_key,
        })
    }
}

/// The cleartext header of a sealed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub sender_identity: PublicKey,
    pub signed_pre_key_id: u32,
    pub one_time_pre_key_id: Option<u32>,
}

impl Header {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(43);
        out.push(FORMAT_VERSION);
        out.push(if self.one_time_pre_key_id.is_some() {
            FLAG_ONE_TIME
        } else {
            0
        });
        out.extend_from_slice(&self.sender_identity.to_bytes());
        out.extend_from_slice(&self.signed_pre_key_id.to_be_bytes());
        if let Some(id) = self.one_time_pre_key_id {
            out.extend_from_slice(&id.to_be_bytes());
        }
        out
    }

    /// Splits `content` into the header, its encoded bytes and the rest.
    fn decode(content: &[u8]) -> Result<(Self, &[u8], &[u8]), CryptoError> {
        let fixed = 2 + 33 + 4;
        if content.len() < fixed || content[0] != FORMAT_VERSION || content[1] & !FLAG_ONE_TIME != 0
        {
            return Err(CryptoError::Malformed);
        }
        let has_one_time = content[1] & FLAG_ONE_TIME != 0;
        let len = if has_one_time { fixed + 4 } else { fixed };
        if content.len() < len {
            return Err(CryptoError::Malformed);
        }
        let sender_identity =
            PublicKey::from_bytes(&content[2..35]).map_err(|_| CryptoError::Malformed)?;
        let u32_at = |at: usize| {
            u32::from_be_bytes([
                content[at],
                content[at + 1],
                content[at + 2],
                content[at + 3],
            ])
        };
        let header = Self {
            sender_identity,
            signed_pre_key_id: u32_at(35),
            one_time_pre_key_id: has_one_time.then(|| u32_at(39)),
        };
        let (encoded, rest) = content.split_at(len);
        Ok((header, encoded, rest))
    }
}

/// Seals `content` from `sender` to `recipient`; returns `EncryptedMessage.content`.
pub fn seal(sender: &KeyPair, recipient: &RecipientKeys, content: &MessageContent) -> Vec<u8> {
    let header = Header {
        sender_identity: sender.public(),
        signed_pre_key_id: recipient.signed_pre_key_id,
        one_time_pre_key_id: recipient.one_time_pre_key.map(|(id, _)| id),
    };
    let aad = header.encode();
    let mut plaintext = content.encode_to_vec();
    if let Some((_, one_time)) = &recipient.one_time_pre_key {
        let (enc, ciphertext) = hpke::single_shot_seal::<Aead, Kdf, Kem, _>(
            &OpModeS::Base,
            &hpke_public(one_time),
            INNER_INFO,
            &plaintext,
            &aad,
            &mut OsRng,
        )
        .expect("sealing to a valid X25519 key cannot fail");
        plaintext = [enc.to_bytes().as_slice(), &ciphertext].concat();
    }
    let sender_keys = (hpke_private(sender), hpke_public(&sender.public()));
    let info = [OUTER_INFO, &recipient.identity.to_bytes()].concat();
    let (enc, ciphertext) = hpke::single_shot_seal::<Aead, Kdf, Kem, _>(
        &OpModeS::Auth(sender_keys),
        &hpke_public(&recipient.signed_pre_key),
        &info,
        &plaintext,
        &aad,
        &mut OsRng,
    )
    .expect("sealing to a valid X25519 key cannot fail");
    [aad.as_slice(), enc.to_bytes().as_slice(), &ciphertext].concat()
}

/// A message opened with this profile's keys.
#[derive(Debug)]
pub struct OpenedMessage {
    pub header: Header,
    pub content: MessageContent,
}

/// Opens `EncryptedMessage.content` with the profile's keys. The caller
/// deletes `header.one_time_pre_key_id` from the key store once the message
/// is stored.
pub fn open(keys: &KeyStore, content: &[u8]) -> Result<OpenedMessage, CryptoError> {
    let (header, aad, rest) = Header::decode(content)?;
    if rest.len() < ENC_LEN {
        return Err(CryptoError::Malformed);
    }
    let (enc, ciphertext) = rest.split_at(ENC_LEN);
    let signed = keys
        .signed_pre_key(header.signed_pre_key_id)
        .ok_or(CryptoError::UnknownSignedPreKey(header.signed_pre_key_id))?;
    let one_time = match header.one_time_pre_key_id {
        Some(id) => Some(
            keys.one_time_pre_key(id)
                .ok_or(CryptoError::UnknownOneTimePreKey(id))?,
        ),
        None => None,
    };
    let info = [OUTER_INFO, &keys.identity().public().to_bytes()].concat();
    let mut plaintext = hpke::single_shot_open::<Aead, Kdf, Kem>(
        &OpModeR::Auth(hpke_public(&header.sender_identity)),
        &hpke_private(&signed),
        &Encapped::from_bytes(enc).map_err(|_| CryptoError::Malformed)?,
        &info,
        ciphertext,
        aad,
    )
    .map_err(|_| CryptoError::Decrypt)?;
    if let Some(one_time) = one_time {
        if plaintext.len() < ENC_LEN {
            return Err(CryptoError::Malformed);
        }
        let (enc, ciphertext) = plaintext.split_at(ENC_LEN);
        plaintext = hpke::single_shot_open::<Aead, Kdf, Kem>(
            &OpModeR::Base,
            &hpke_private(&one_time),
            &Encapped::from_bytes(enc).map_err(|_| CryptoError::Malformed)?,
            INNER_INFO,
            ciphertext,
            aad,
        )
        .map_err(|_| CryptoError::Decrypt)?;
    }
    let content =
        MessageContent::decode(plaintext.as_slice()).map_err(|_| CryptoError::Malformed)?;
    Ok(OpenedMessage { header, content })
}

fn hpke_public(key: &PublicKey) -> HpkePublic {
    HpkePublic::from_bytes(&key.montgomery_bytes()).expect("32 bytes is an X25519 public key")
}

fn hpke_private(key: &KeyPair) -> HpkePrivate {
    HpkePrivate::from_bytes(&key.private_bytes()).expect("32 bytes is an X25519 private key")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::api::OneTimePreKey;

    fn bundle_of(store: &KeyStore, with_one_time: bool) -> PreKeyBundle {
        let upload = store.full_upload();
        PreKeyBundle {
            registration_id: store.registration_id(),
            identity_key: upload.identity_key.clone().unwrap(),
            signed_pre_key: upload.signed_pre_key.clone(),
            one_time_pre_key: with_one_time.then(|| {
                let k = &upload.one_time_pre_keys[0];
                OneTimePreKey {
                    key_id: k.key_id,
                    public_key: k.public_key.clone(),
                }
            }),
        }
    }

    #[test]
    fn round_trip_with_and_without_one_time_key() {
        let alice = KeyStore::generate();
        let bob = KeyStore::generate();
        for with_one_time in [false, true] {
            let recipient = RecipientKeys::from_bundle(&bundle_of(&bob, with_one_time)).unwrap();
            let content = MessageContent::new("alice", "bob", b"hi bob".to_vec());
            let sealed = seal(&alice.identity(), &recipient, &content);
            let opened = open(&bob, &sealed).unwrap();
            assert_eq!(opened.content, content);
            assert_eq!(opened.header.sender_identity, alice.identity().public());
            assert_eq!(opened.header.one_time_pre_key_id.is_some(), with_one_time);
        }
    }

    #[test]
    fn a_bad_bundle_signature_is_refused() {
        let bob = KeyStore::generate();
        let mut bundle = bundle_of(&bob, false);
        bundle.signed_pre_key.signature[10] ^= 1;
        assert!(matches!(
            RecipientKeys::from_bundle(&bundle),
            Err(CryptoError::BadBundle(_))
        ));
        let mut bundle = bundle_of(&bob, false);
        bundle.signed_pre_key.public_key =
            KeyStore::generate().full_upload().signed_pre_key.public_key;
        assert!(matches!(
            RecipientKeys::from_bundle(&bundle),
            Err(CryptoError::BadBundle(_))
        ));
    }

    #[test]
    fn tampering_and_wrong_recipient_fail() {
        let alice = KeyStore::generate();
        let bob = KeyStore::generate();
        let recipient = RecipientKeys::from_bundle(&bundle_of(&bob, true)).unwrap();
        let sealed = seal(
            &alice.identity(),
            &recipient,
            &MessageContent::new("a", "b", b"x".to_vec()),
        );
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(open(&bob, &bad).is_err(), "byte {i}");
        }
        assert!(open(&KeyStore::generate(), &sealed).is_err());
    }

    #[test]
    fn a_forged_sender_identity_fails_authentication() {
        let alice = KeyStore::generate();
        let mallory = KeyStore::generate();
        let bob = KeyStore::generate();
        let recipient = RecipientKeys::from_bundle(&bundle_of(&bob, false)).unwrap();
        let mut sealed = seal(
            &mallory.identity(),
            &recipient,
            &MessageContent::new("a", "b", b"x".to_vec()),
        );
        // Claim Alice's identity key in the header: Auth mode must reject it.
        sealed[2..35].copy_from_slice(&alice.identity().public().to_bytes());
        assert_eq!(open(&bob, &sealed).unwrap_err(), CryptoError::Decrypt);
    }

    #[test]
    fn a_used_one_time_key_cannot_open_a_replay() {
        let alice = KeyStore::generate();
        let mut bob = KeyStore::generate();
        let recipient = RecipientKeys::from_bundle(&bundle_of(&bob, true)).unwrap();
        let sealed = seal(
            &alice.identity(),
            &recipient,
            &MessageContent::new("a", "b", b"x".to_vec()),
        );
        let opened = open(&bob, &sealed).unwrap();
        bob.remove_one_time_pre_key(opened.header.one_time_pre_key_id.unwrap());
        assert!(matches!(
            open(&bob, &sealed),
            Err(CryptoError::UnknownOneTimePreKey(_))
        ));
    }
}
