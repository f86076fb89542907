//! Durable state behind one small trait, so that a second backend
//! (PostgreSQL) is one more implementation and not a rewrite.
//!
//! Every method is one atomic unit: anything that must not be observed
//! half-done (account creation, key upload/takeover, bundle fetch with
//! one-time pre-key consumption, refresh rotation) is a single method,
//! implemented as one transaction.

#[cfg(test)]
pub(crate) mod conformance;
pub mod group_commit;
pub mod group_read;
pub mod postgres;
pub mod sqlite;

use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

pub use postgres::{PgSettings, PgStore};
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The shared transaction of a group commit failed (the cause is logged).
    #[error("group commit: {0}")]
    GroupCommit(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A signed pre-key exactly as uploaded (bytes returned verbatim).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPreKey {
    pub key_id: u32,
    pub public_key: Vec<u8>,
    pub signature: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneTimePreKey {
    pub key_id: u32,
    pub public_key: Vec<u8>,
}

/// A user's long-term identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub identity_key: Vec<u8>,
    pub registration_id: u32,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: Uuid,
    pub username: String,
    pub password_hash: String,
    pub identity: Identity,
    pub signed_pre_key: SignedPreKey,
    pub one_time_pre_keys: Vec<OneTimePreKey>,
    pub created_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateUser {
    Created,
    UsernameTaken,
}

/// A key upload that already passed validation (signature checked against
/// `verified_against`).
#[derive(Debug, Clone)]
pub struct KeyUpload {
    /// Present when the client sent an identity key: a different one than
    /// stored means device takeover.
    pub identity: Option<Identity>,
    /// The identity key the signed pre-key's signature was verified with; the
    /// upload is refused if the stored key changed in between.
    pub verified_against: Vec<u8>,
    pub signed_pre_key: SignedPreKey,
    pub one_time_pre_keys: Vec<OneTimePreKey>,
    /// Keep at most this many one-time pre-keys, pruning the oldest.
    pub max_one_time_pre_keys: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUploadOutcome {
    /// Keys appended; `remaining` one-time pre-keys now stored.
    Refilled {
        remaining: u32,
    },
    /// New identity: old keys and all pending messages deleted.
    TookOver {
        remaining: u32,
    },
    /// The signed pre-key id is not greater than the stored one.
    StaleSignedPreKey {
        stored: u32,
    },
    /// The identity key changed while the upload was being validated.
    IdentityChanged,
    UnknownUser,
}

/// What `GET /v1/keys/{id}` hands out; the one-time pre-key is already consumed.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub identity: Identity,
    pub signed_pre_key: SignedPreKey,
    pub one_time_pre_key: Option<OneTimePreKey>,
    /// One-time pre-keys left after this fetch.
    pub remaining: u32,
}

#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: Uuid,
    pub recipient: Uuid,
    pub sender: Uuid,
    pub timestamp_ms: i64,
    pub msg_type: i32,
    pub content: Vec<u8>,
    pub expires_at: i64,
}

/// A queued message; `seq` is assigned at insert and only grows, in commit order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub seq: i64,
    pub id: Uuid,
    pub sender: Uuid,
    pub timestamp_ms: i64,
    pub msg_type: i32,
    pub content: Vec<u8>,
}

/// A refresh token row; only the SHA-256 of the token is ever stored.
#[derive(Debug, Clone)]
pub struct NewRefreshToken {
    pub hash: [u8; 32],
    pub user_id: Uuid,
    pub family_id: Uuid,
    pub expires_at: i64,
}

/// The stored state of a presented refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshTokenRow {
    pub user_id: Uuid,
    pub family_id: Uuid,
    pub expires_at: i64,
    pub rotated: bool,
    /// When it was rotated (unix seconds); `None` if not, or rotated before
    /// this was recorded.
    pub rotated_at: Option<i64>,
    pub revoked: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// The presented token was live; it is now dead and the new one stored.
    Rotated { user_id: Uuid },
    /// The presented token had already been rotated: its family is now revoked.
    ReuseDetected,
    /// Unknown, expired or revoked.
    Invalid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attachment {
    pub id: Uuid,
    pub size: u64,
    pub expires_at: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub messages: u64,
    pub refresh_tokens: u64,
}

/// Where a wake-up goes: the user's registered token and its provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushTarget {
    pub token: String,
    /// Stored provider name (`fcm`, `apns`, `unifiedpush`; NULL = FCM).
    pub kind: Option<String>,
}

/// A wake-up claimed by a worker (see `crate::push::queue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushJob {
    pub user: Uuid,
    /// The claim that leased it; outcomes from a lost lease are ignored.
    pub claim: Uuid,
    /// Transient failures so far.
    pub attempts: u32,
    /// `None` if the user no longer has a token.
    pub target: Option<PushTarget>,
}

/// What became of a claimed wake-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Accepted by the provider: starts the throttle window.
    Sent,
    /// Transient failure: due again at `at_ms`.
    Retry { at_ms: i64 },
    /// The token was refused: delete it (if it is still the one sent to).
    InvalidToken,
    /// Nothing more to do (cancelled, abandoned, undeliverable).
    Done,
}

/// Users one [`Store::users_with_pending`] call checks at most.
pub const PENDING_CHECK_USERS: usize = 1000;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Cheap round trip for readiness checks.
    async fn ping(&self) -> StoreResult<()>;

    // --- accounts -----------------------------------------------------------
    /// Creates the user with their identity and pre-keys, atomically.
    async fn create_user(&self, user: NewUser) -> StoreResult<CreateUser>;
    /// `(user id, PHC password hash)` for a username.
    async fn credentials(&self, username: &str) -> StoreResult<Option<(Uuid, String)>>;
    async fn identity(&self, user: Uuid) -> StoreResult<Option<Identity>>;

    // --- refresh tokens -----------------------------------------------------
    async fn insert_refresh_token(&self, token: NewRefreshToken) -> StoreResult<()>;
    /// Exchanges `presented` for `next` (same user and family) if it is live;
    /// revokes the family if it was rotated `reuse_grace_secs` or more
    /// before `now` (sooner, only refuses it).
    async fn rotate_refresh_token(
        &self,
        presented: [u8; 32],
        next_hash: [u8; 32],
        next_expires_at: i64,
        now: i64,
        reuse_grace_secs: i64,
    ) -> StoreResult<Rotation>;
    /// Revokes the family of `presented` if it belongs to `user`.
    async fn revoke_refresh_family(&self, presented: [u8; 32], user: Uuid) -> StoreResult<bool>;

    // --- keys ---------------------------------------------------------------
    async fn upload_keys(&self, user: Uuid, upload: KeyUpload) -> StoreResult<KeyUploadOutcome>;
    /// The user's bundle, consuming (deleting) their oldest one-time pre-key.
    async fn take_bundle(&self, user: Uuid) -> StoreResult<Option<Bundle>>;
    async fn one_time_pre_key_count(&self, user: Uuid) -> StoreResult<u32>;

    // --- messages -----------------------------------------------------------
    /// Durably queues a message. `false` if the recipient does not exist.
    async fn enqueue_message(&self, message: NewMessage) -> StoreResult<bool>;
    /// Asks to be told of every message this process commits, right after
    /// its commit (see [`group_commit::CommitHook`]); `false` if the
    /// backend does not support it.
    fn on_commit(&self, _hook: group_commit::CommitHook) -> bool {
        false
    }
    /// Up to `limit` messages for `user` with `seq > after_seq`, by `seq`.
    async fn pending_messages(
        &self,
        user: Uuid,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>>;
    /// Of the given `(user, cursor)` pairs, the users with a message past
    /// their cursor (at most [`PENDING_CHECK_USERS`] pairs per call).
    async fn users_with_pending(&self, cursors: &[(Uuid, i64)]) -> StoreResult<Vec<Uuid>>;
    /// Deletes `user`'s messages among `ids` (others' ids are ignored).
    async fn delete_messages(&self, user: Uuid, ids: &[Uuid]) -> StoreResult<u64>;

    // --- attachments --------------------------------------------------------
    async fn insert_attachment(
        &self,
        attachment: Attachment,
        owner: Uuid,
        now: i64,
    ) -> StoreResult<()>;
    /// The attachment if it exists and has not expired at `now`.
    async fn attachment(&self, id: Uuid, now: i64) -> StoreResult<Option<Attachment>>;
    async fn expired_attachments(&self, now: i64, limit: u32) -> StoreResult<Vec<Uuid>>;
    async fn delete_attachment(&self, id: Uuid) -> StoreResult<()>;

    // --- push tokens --------------------------------------------------------
    /// Registers or replaces the user's one push token.
    async fn set_push_token(
        &self,
        user: Uuid,
        token: &str,
        kind: Option<&str>,
        now: i64,
    ) -> StoreResult<()>;

    // --- push wake-ups (rules in `crate::push::queue`) -------------------------
    /// Schedules a wake-up for `user` at `due_ms`, or at the end of the
    /// throttle window (`throttle_ms` after the last one sent) if later. A
    /// pending job is left as it is (coalescing). Users without a push token
    /// of one of the `kinds` (providers configured; a NULL kind is `fcm`) get
    /// none. True if a job is pending afterwards.
    async fn schedule_push(
        &self,
        user: Uuid,
        due_ms: i64,
        throttle_ms: i64,
        kinds: &[&str],
    ) -> StoreResult<bool>;
    /// Cancels the user's pending wake-up unless a worker holds a live lease on it.
    async fn cancel_push(&self, user: Uuid, now_ms: i64) -> StoreResult<()>;
    /// When the next pending wake-up may be claimed (ms), if there is one.
    async fn next_push_due(&self) -> StoreResult<Option<i64>>;
    /// Leases up to `limit` due, unleased jobs to `claim` until `lease_until_ms`.
    async fn claim_pushes(
        &self,
        claim: Uuid,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<PushJob>>;
    /// Records a claimed job's outcome (a no-op if its lease was lost).
    async fn finish_push(
        &self,
        job: &PushJob,
        outcome: PushOutcome,
        now_ms: i64,
    ) -> StoreResult<()>;
    /// Messages currently queued, all users (for metrics).
    async fn queued_message_count(&self) -> StoreResult<u64>;

    // --- housekeeping -------------------------------------------------------
    /// Deletes messages and refresh tokens whose TTL passed.
    async fn purge_expired(&self, now: i64) -> StoreResult<Purged>;

    /// Takes or renews the cluster-wide lease `name` for `holder` until
    /// `now_ms + ttl`; false while another holder's lease is unexpired.
    /// A single-process backend (SQLite) has no one to share with.
    async fn try_lease(
        &self,
        _name: &str,
        _holder: Uuid,
        _ttl: Duration,
        _now_ms: i64,
    ) -> StoreResult<bool> {
        Ok(true)
    }
}
