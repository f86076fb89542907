//! Receiving: decrypt an `Envelope`, check who sent it, store it durably.
//!
//! The relay deletes a message when it is acknowledged, so the caller ACKs
//! only after [`receive`] returned: by then the message file and a marker
//! for its envelope id are fsync'd, and a consumed one-time pre-key is
//! deleted. A redelivered envelope (ACK lost) is recognised by its marker; a
//! replayed ciphertext under a new envelope id by its inner message id.
//!
//! Senders are trusted on first use: the first identity key seen for a user
//! id (when sending to it or receiving from it) is pinned in
//! `contacts.json`; a message signed by a different key is refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use obscura_keys::PublicKey;
use obscura_proto::Envelope;
use prost::Message;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::crypto;
use crate::identity::{KeyStore, fingerprint};
use crate::profile::{Profile, ProfileError, write_private};

const CONTACTS_FILE: &str = "contacts.json";

#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Pinned identity keys of peers, by user id.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Contacts {
    #[serde(flatten)]
    keys: BTreeMap<String, String>,
}

/// The result of checking an identity key against the pinned one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// First contact: now pinned.
    Pinned,
    /// Same key as before.
    Known,
    /// A different key than the pinned one.
    Changed { pinned_fingerprint: String },
}

impl Contacts {
    pub fn load(profile: &Profile) -> Result<Self, ProfileError> {
        Ok(profile.read_json(CONTACTS_FILE)?.unwrap_or_default())
    }

    /// Checks `key` for `user_id`, pinning it on first contact (and saving).
    pub fn check(
        &mut self,
        profile: &Profile,
        user_id: &str,
        key: &PublicKey,
    ) -> Result<Trust, ProfileError> {
        let encoded = crate::b64::encode(&key.to_bytes());
        match self.keys.get(user_id) {
            Some(pinned) if *pinned == encoded => Ok(Trust::Known),
            Some(pinned) => {
                let pinned_fingerprint = crate::b64::decode(pinned)
                    .ok()
                    .and_then(|b| PublicKey::from_bytes(&b).ok())
                    .map(|k| fingerprint(&k))
                    .unwrap_or_else(|| "unreadable".into());
                Ok(Trust::Changed { pinned_fingerprint })
            }
            None => {
                self.keys.insert(user_id.to_string(), encoded);
                profile.write_json(CONTACTS_FILE, self)?;
                Ok(Trust::Pinned)
            }
        }
    }

    /// Replaces the pinned key (after the user verified the new one).
    pub fn repin(
        &mut self,
        profile: &Profile,
        user_id: &str,
        key: &PublicKey,
    ) -> Result<(), ProfileError> {
        self.keys
            .insert(user_id.to_string(), crate::b64::encode(&key.to_bytes()));
        profile.write_json(CONTACTS_FILE, self)
    }
}

/// A received message as stored in `inbox/<message-id>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredMessage {
    pub message_id: String,
    pub envelope_id: String,
    pub from: String,
    pub to: String,
    /// Sender's clock, ms since the UNIX epoch (authenticated).
    pub sent_at_ms: u64,
    /// Relay's receipt time, ms (not authenticated).
    pub relay_timestamp_ms: u64,
    pub sender_fingerprint: String,
    /// Body length in bytes.
    pub size: usize,
    /// The body as text when it is UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The body, base64.
    pub body: String,
}

/// What [`receive`] did with an envelope. Every variant is safe to ACK.
#[derive(Debug)]
pub enum Received {
    /// Decrypted and stored at `path`.
    New {
        message: StoredMessage,
        path: PathBuf,
    },
    /// Already stored (redelivery or replay).
    Duplicate,
    /// Could not be accepted; the raw envelope is kept at `path`.
    Rejected { reason: String, path: PathBuf },
}

/// The inbox directory of a profile.
pub struct Inbox {
    dir: PathBuf,
    markers: PathBuf,
    rejected: PathBuf,
}

impl Inbox {
    pub fn open(profile: &Profile) -> Result<Self, ProfileError> {
        let dir = profile.subdir("inbox")?;
        let markers = profile.subdir("inbox/.envelopes")?;
        let rejected = profile.subdir("inbox/rejected")?;
        Ok(Self {
            dir,
            markers,
            rejected,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn marker(&self, envelope_id: &str) -> PathBuf {
        // Hash the relay-chosen id: it must never steer a file path.
        self.markers
            .join(hex::encode(&Sha256::digest(envelope_id.as_bytes())[..16]))
    }

    fn mark(&self, envelope_id: &str) -> Result<(), InboxError> {
        write_private(&self.marker(envelope_id), envelope_id.as_bytes())?;
        Ok(())
    }
}

/// Decrypts, checks and durably stores `envelope` for the user `own_user_id`.
pub fn receive(
    profile: &Profile,
    inbox: &Inbox,
    keys: &mut KeyStore,
    contacts: &mut Contacts,
    own_user_id: &str,
    envelope: &Envelope,
) -> Result<Received, InboxError> {
    if inbox.marker(&envelope.id).exists() {
        return Ok(Received::Duplicate);
    }
    let reject = |reason: String| -> Result<Received, InboxError> {
        let path = inbox.rejected.join(format!(
            "{}.pb",
            hex::encode(&Sha256::digest(envelope.id.as_bytes())[..16])
        ));
        write_private(&path, &envelope.encode_to_vec())?;
        inbox.mark(&envelope.id)?;
        Ok(Received::Rejected { reason, path })
    };
    let Some(encrypted) = &envelope.message else {
        return reject("envelope without a message".into());
    };
    let opened = match crypto::open(keys, &encrypted.content) {
        Ok(opened) => opened,
        Err(e) => return reject(e.to_string()),
    };
    let content = &opened.content;
    if content.recipient_user_id != own_user_id {
        return reject(format!(
            "addressed to {}, not to this account",
            content.recipient_user_id
        ));
    }
    if content.sender_user_id != envelope.source_user_id {
        return reject(format!(
            "relay says the sender is {} but the message was written by {}",
            envelope.source_user_id, content.sender_user_id
        ));
    }
    if let Trust::Changed { pinned_fingerprint } = contacts.check(
        profile,
        &content.sender_user_id,
        &opened.header.sender_identity,
    )? {
        return reject(format!(
            "sender {}'s identity key changed (pinned {pinned_fingerprint}, now {})",
            content.sender_user_id,
            fingerprint(&opened.header.sender_identity)
        ));
    }

    let message_id = hex::encode(&content.message_id);
    let path = inbox.dir.join(format!(
        "{}.json",
        hex::encode(Sha256::digest(content.message_id.as_slice()))
    ));
    if path.exists() {
        inbox.mark(&envelope.id)?;
        return Ok(Received::Duplicate);
    }
    let message = StoredMessage {
        message_id,
        envelope_id: envelope.id.clone(),
        from: content.sender_user_id.clone(),
        to: content.recipient_user_id.clone(),
        sent_at_ms: content.sent_at_ms,
        relay_timestamp_ms: envelope.timestamp,
        sender_fingerprint: fingerprint(&opened.header.sender_identity),
        size: content.body.len(),
        text: String::from_utf8(content.body.clone()).ok(),
        body: crate::b64::encode(&content.body),
    };
    let json = serde_json::to_vec_pretty(&message).map_err(|e| InboxError::Io {
        path: path.clone(),
        source: e.into(),
    })?;
    // Atomic (temporary file + rename): a crash never leaves a partial
    // message that a redelivery would then take for a duplicate.
    write_private(&path, &json)?;
    inbox.mark(&envelope.id)?;
    if let Some(id) = opened.header.one_time_pre_key_id {
        keys.remove_one_time_pre_key(id);
        keys.save(profile)?;
    }
    Ok(Received::New { message, path })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{MessageContent, RecipientKeys};
    use crate::relay::api::{OneTimePreKey, PreKeyBundle};
    use obscura_proto::EncryptedMessage;

    struct Party {
        _dir: tempfile::TempDir,
        profile: Profile,
        keys: KeyStore,
        contacts: Contacts,
        inbox: Inbox,
    }

    fn party() -> Party {
        let dir = tempfile::tempdir().unwrap();
        let profile = Profile::open(dir.path()).unwrap();
        let keys = KeyStore::generate();
        keys.save(&profile).unwrap();
        let inbox = Inbox::open(&profile).unwrap();
        Party {
            _dir: dir,
            profile,
            keys,
            contacts: Contacts::default(),
            inbox,
        }
    }

    fn envelope(
        from: &KeyStore,
        from_id: &str,
        to: &KeyStore,
        to_id: &str,
        id: &str,
        body: &[u8],
    ) -> Envelope {
        let upload = to.full_upload();
        let otpk = &upload.one_time_pre_keys[0];
        let bundle = PreKeyBundle {
            registration_id: to.registration_id(),
            identity_key: upload.identity_key.clone().unwrap(),
            signed_pre_key: upload.signed_pre_key.clone(),
            one_time_pre_key: Some(OneTimePreKey {
                key_id: otpk.key_id,
                public_key: otpk.public_key.clone(),
            }),
        };
        let recipient = RecipientKeys::from_bundle(&bundle).unwrap();
        let content = crypto::seal(
            &from.identity(),
            &recipient,
            &MessageContent::new(from_id, to_id, body.to_vec()),
        );
        Envelope {
            id: id.into(),
            source_user_id: from_id.into(),
            timestamp: 1,
            message: Some(EncryptedMessage { r#type: 1, content }),
        }
    }

    fn recv(p: &mut Party, own_id: &str, env: &Envelope) -> Received {
        receive(
            &p.profile,
            &p.inbox,
            &mut p.keys,
            &mut p.contacts,
            own_id,
            env,
        )
        .unwrap()
    }

    #[test]
    fn stores_once_then_recognises_redelivery_and_replay() {
        let alice = KeyStore::generate();
        let mut bob = party();
        let env = envelope(&alice, "alice", &bob.keys, "bob", "env-1", b"hello");
        let Received::New { message, path } = recv(&mut bob, "bob", &env) else {
            panic!("not stored")
        };
        assert_eq!(message.text.as_deref(), Some("hello"));
        assert_eq!(message.size, 5);
        let stored: StoredMessage = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(stored.from, "alice");
        // The one-time pre-key is gone, on disk too.
        let otpk = bob.keys.full_upload().one_time_pre_keys.len();
        assert_eq!(otpk, crate::identity::PRE_KEY_BATCH - 1);
        let reloaded = KeyStore::load(&bob.profile).unwrap().unwrap();
        assert_eq!(reloaded.full_upload().one_time_pre_keys.len(), otpk);

        assert!(matches!(recv(&mut bob, "bob", &env), Received::Duplicate));
        // The same ciphertext under a new envelope id: its one-time key is used up.
        let mut replay = env.clone();
        replay.id = "env-2".into();
        assert!(matches!(
            recv(&mut bob, "bob", &replay),
            Received::Rejected { .. }
        ));
    }

    #[test]
    fn rejects_misaddressed_spoofed_and_changed_identity() {
        let alice = KeyStore::generate();
        let mut bob = party();
        let env = envelope(&alice, "alice", &bob.keys, "carol", "e1", b"x");
        assert!(matches!(
            recv(&mut bob, "bob", &env),
            Received::Rejected { .. }
        ));
        let mut env = envelope(&alice, "alice", &bob.keys, "bob", "e2", b"x");
        env.source_user_id = "mallory".into();
        assert!(matches!(
            recv(&mut bob, "bob", &env),
            Received::Rejected { .. }
        ));
        let env = envelope(&alice, "alice", &bob.keys, "bob", "e3", b"x");
        assert!(matches!(recv(&mut bob, "bob", &env), Received::New { .. }));
        // Someone else's identity key claiming to be alice.
        let impostor = KeyStore::generate();
        let env = envelope(&impostor, "alice", &bob.keys, "bob", "e4", b"x");
        let Received::Rejected { reason, path } = recv(&mut bob, "bob", &env) else {
            panic!("accepted")
        };
        assert!(reason.contains("identity key changed"), "{reason}");
        assert!(path.exists());
        let garbage = Envelope {
            id: "e5".into(),
            source_user_id: "alice".into(),
            timestamp: 0,
            message: None,
        };
        assert!(matches!(
            recv(&mut bob, "bob", &garbage),
            Received::Rejected { .. }
        ));
    }
}
