//! [`Store`] on embedded SQLite (WAL, `synchronous = FULL`).
//!
//! One writer connection serialises every write in-process (SQLite allows
//! one writer anyway; queueing here avoids `SQLITE_BUSY` and lock-upgrade
//! deadlocks), a small pool of read-only connections serves reads
//! concurrently thanks to WAL. `synchronous = FULL` makes every commit
//! durable across power loss, so a 201 means "on disk".

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use uuid::Uuid;

use super::group_commit::{
    BatchWriter, CommitHook, GroupCommit, Outcome, Write, acknowledged, cancels, enqueues,
    link_prev_seqs, outcomes, recipients,
};
use super::*;
use crate::domain::sessions::{TokenState, classify_refresh_token};

mod push_jobs;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "obscura.db";

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// Enqueues and ACK deletes, many per transaction (one fsync per batch).
    commits: GroupCommit,
}

impl SqliteStore {
    /// Opens (creating if needed) `<data_dir>/obscura.db` and applies migrations.
    pub async fn open(data_dir: &Path) -> StoreResult<Self> {
        let base = SqliteConnectOptions::new()
            .filename(data_dir.join(DB_FILE))
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // Statement journals of multi-row batches in memory (bounded by
            // the batch limits) rather than a file created and unlinked in
            // /var/tmp per batch: ~5 syscalls and ext4 metadata each time.
            .pragma("temp_store", "memory");
        // No ping on acquire (both pools): a local SQLite connection does not
        // go stale, and each ping is a round trip to its worker thread.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(base.clone().create_if_missing(true))
            .await?;
        MIGRATOR.run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(base.read_only(true))
            .await?;
        // SQLite has one writer: batches commit one at a time.
        let commits = GroupCommit::spawn(
            Arc::new(SqliteBatchWriter {
                writer: writer.clone(),
            }),
            1,
        );
        Ok(Self {
            writer,
            reader,
            commits,
        })
    }

    /// Closes both pools (checkpointing the WAL).
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

fn uuid_col(row: &sqlx::sqlite::SqliteRow, col: &str) -> StoreResult<Uuid> {
    let text: String = row.try_get(col)?;
    Uuid::from_str(&text).map_err(|_| StoreError::Corrupt(format!("{col} is not a UUID: {text}")))
}

fn u32_col(row: &sqlx::sqlite::SqliteRow, col: &str) -> StoreResult<u32> {
    let v: i64 = row.try_get(col)?;
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{col} out of range: {v}")))
}

async fn count_one_time(tx: &mut Transaction<'_, Sqlite>, user: &str) -> StoreResult<u32> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM one_time_pre_keys WHERE user_id = ?")
        .bind(user)
        .fetch_one(&mut **tx)
        .await?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

async fn insert_keys(
    tx: &mut Transaction<'_, Sqlite>,
    user: &str,
    signed: &SignedPreKey,
    one_time: &[OneTimePreKey],
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO signed_pre_keys (user_id, key_id, public_key, signature) VALUES (?, ?, ?, ?)
         ON CONFLICT (user_id) DO UPDATE SET key_id = excluded.key_id,
             public_key = excluded.public_key, signature = excluded.signature",
    )
    .bind(user)
    .bind(i64::from(signed.key_id))
    .bind(&signed.public_key)
    .bind(&signed.signature)
    .execute(&mut **tx)
    .await?;
    for key in one_time {
        // Re-uploading an id replaces it and makes it the newest.
        sqlx::query("INSERT OR REPLACE INTO one_time_pre_keys (user_id, key_id, public_key) VALUES (?, ?, ?)")
            .bind(user)
            .bind(i64::from(key.key_id))
            .bind(&key.public_key)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Applies group-commit batches on the writer connection.
struct SqliteBatchWriter {
    writer: SqlitePool,
}

/// Columns of a message row, as bound by the batch's `INSERT`.
const MESSAGE_COLUMNS: usize = 7;

/// The SQL of a whole batch, as one multi-statement string that sqlx runs
/// in a single round trip to its worker thread (one statement per round
/// trip cost ~6 hand-offs per batch). Its shape depends only on
/// `insert_rows` (0 or a power of two, see [`insert_rows`]), so there are
/// few distinct strings and each stays prepared in the statement cache.
///
/// Bound in order: the recipients (JSON array), `insert_rows` × 7 message
/// columns (NULL rows are padding), the ACKed `[recipient, id]` pairs and
/// the users whose wake-ups are cancelled (JSON arrays), the cancel's `now`.
/// Every row returned is tagged by `kind`: `latest` (a recipient's highest
/// `seq` before the batch), `stored` (id, seq), `deleted` (recipient, id).
fn batch_sql(insert_rows: usize) -> Cow<'static, str> {
    // Built once per shape: the string is also the statement cache's key.
    static SHAPES: [OnceLock<String>; 11] = [const { OnceLock::new() }; 11];
    let shape = if insert_rows == 0 {
        0
    } else {
        insert_rows.trailing_zeros() as usize + 1
    };
    match SHAPES.get(shape) {
        Some(cell) if insert_rows == 0 || insert_rows.is_power_of_two() => {
            Cow::Borrowed(cell.get_or_init(|| build_batch_sql(insert_rows)))
        }
        _ => Cow::Owned(build_batch_sql(insert_rows)),
    }
}

fn build_batch_sql(insert_rows: usize) -> String {
    // IMMEDIATE: take the write lock before the first read. Then no other
    // writer (another process on the same file included) can store a
    // message until this commits, so the `latest` read stays exact; and a
    // deferred transaction that read first could not upgrade to a writer
    // after someone else's commit (SQLITE_BUSY_SNAPSHOT, no busy wait).
    // The `latest` read is one backward index lookup per recipient (`max(seq)
    // … GROUP BY` would read every queued message of a long backlog).
    let mut sql = String::from(
        "BEGIN IMMEDIATE;
         SELECT 'latest' AS kind, r.value AS a,
                (SELECT m.seq FROM messages m WHERE m.recipient_id = r.value
                 ORDER BY m.seq DESC LIMIT 1) AS b
         FROM json_each(?) AS r;",
    );
    if insert_rows > 0 {
        let row = format!("({})", ["?"; MESSAGE_COLUMNS].join(", "));
        let rows = vec![row.as_str(); insert_rows].join(", ");
        // The recipient must exist (else 404); RETURNING says which rows made it.
        sql.push_str(&format!(
            "INSERT INTO messages (id, recipient_id, sender_id, timestamp_ms, msg_type, content, expires_at)
             SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6, v.column7
             FROM (VALUES {rows}) AS v
             WHERE v.column1 IS NOT NULL
               AND EXISTS (SELECT 1 FROM users WHERE users.id = v.column2)
             RETURNING 'stored' AS kind, id AS a, seq AS b;"
        ));
    }
    // By `seq` from a join on the unique `id` index (the row-value form
    // `(recipient_id, id) IN (…)` is planned as a table scan). An ACK names
    // a message committed by an earlier batch, never one of this batch.
    sql.push_str(
        "DELETE FROM messages WHERE seq IN (
             SELECT m.seq FROM json_each(?) AS d
             JOIN messages m ON m.id = d.value ->> 1 AND m.recipient_id = d.value ->> 0)
         RETURNING 'deleted' AS kind, recipient_id AS a, id AS b;
         UPDATE push_jobs SET due_at_ms = NULL, attempts = 0
         WHERE user_id IN (SELECT value FROM json_each(?)) AND due_at_ms IS NOT NULL
           AND (lease_until_ms IS NULL OR lease_until_ms <= ?);
         COMMIT;",
    );
    sql
}

/// Rows the batch's `INSERT` binds for `n` messages: the next power of two
/// (padding rows are NULL and skipped), 0 for none. Bounded by
/// `MAX_BATCH_WRITES` (512 × 7 values, far below SQLite's 32,766).
fn insert_rows(n: usize) -> usize {
    if n == 0 { 0 } else { n.next_power_of_two() }
}

/// `["a", "b", …]`: UUIDs need no escaping.
fn json_uuids<'a>(ids: impl ExactSizeIterator<Item = &'a Uuid>) -> String {
    let mut json = String::with_capacity(2 + ids.len() * 39);
    json.push('[');
    for (i, id) in ids.enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(json, "{sep}\"{id}\"");
    }
    json.push(']');
    json
}

/// `[["recipient", "id"], …]`.
fn json_pairs(pairs: &[(Uuid, Uuid)]) -> String {
    let mut json = String::with_capacity(2 + pairs.len() * 82);
    json.push('[');
    for (i, (user, id)) in pairs.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(json, "{sep}[\"{user}\",\"{id}\"]");
    }
    json.push(']');
    json
}

#[async_trait]
impl BatchWriter for SqliteBatchWriter {
    async fn write_batch(&self, writes: &[Write]) -> StoreResult<Vec<Outcome>> {
        let messages = enqueues(writes);
        let rows = insert_rows(messages.len());
        let sql = batch_sql(rows);
        let mut query = sqlx::query(sql.as_ref()).bind(json_uuids(recipients(writes).iter()));
        for m in &messages {
            query = query
                .bind(m.id.to_string())
                .bind(m.recipient.to_string())
                .bind(m.sender.to_string())
                .bind(m.timestamp_ms)
                .bind(m.msg_type)
                .bind(&m.content)
                .bind(m.expires_at);
        }
        for _ in messages.len() * MESSAGE_COLUMNS..rows * MESSAGE_COLUMNS {
            query = query.bind(None::<String>);
        }
        let (cancelled, now_ms) = cancels(writes).unwrap_or_default();
        let query = query
            .bind(json_pairs(&acknowledged(writes)))
            .bind(json_uuids(cancelled.iter()))
            .bind(now_ms);

        let mut conn = self.writer.acquire().await?;
        let result = query.fetch_all(&mut *conn).await;
        let rows = match result {
            Ok(rows) => rows,
            Err(e) => {
                // The string stops at the failing statement: end its
                // transaction here, or the next batch's BEGIN would fail.
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                return Err(e.into());
            }
        };
        drop(conn);

        let mut before = HashMap::new();
        let mut stored = HashMap::new();
        let mut deleted = HashSet::new();
        for row in &rows {
            let kind: &str = row.try_get("kind")?;
            match kind {
                "latest" => {
                    if let Some(seq) = row.try_get::<Option<i64>, _>("b")? {
                        before.insert(uuid_col(row, "a")?, seq);
                    }
                }
                "stored" => {
                    stored.insert(uuid_col(row, "a")?, row.try_get::<i64, _>("b")?);
                }
                "deleted" => {
                    deleted.insert((uuid_col(row, "a")?, uuid_col(row, "b")?));
                }
                other => return Err(StoreError::Corrupt(format!("batch row kind {other}"))),
            }
        }
        let mut outcomes = outcomes(writes, &stored, &deleted);
        link_prev_seqs(writes, &mut outcomes, before);
        Ok(outcomes)
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn create_user(&self, user: NewUser) -> StoreResult<CreateUser> {
        let id = user.id.to_string();
        let mut tx = self.writer.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO users (id, username, password_hash, identity_key, registration_id, created_at)
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (username) DO NOTHING",
        )
        .bind(&id)
        .bind(&user.username)
        .bind(&user.password_hash)
        .bind(&user.identity.identity_key)
        .bind(i64::from(user.identity.registration_id))
        .bind(user.created_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(CreateUser::UsernameTaken);
        }
        insert_keys(&mut tx, &id, &user.signed_pre_key, &user.one_time_pre_keys).await?;
        tx.commit().await?;
        Ok(CreateUser::Created)
    }

    async fn credentials(&self, username: &str) -> StoreResult<Option<(Uuid, String)>> {
        let row = sqlx::query("SELECT id, password_hash FROM users WHERE username = ?")
            .bind(username)
            .fetch_optional(&self.reader)
            .await?;
        row.map(|r| Ok((uuid_col(&r, "id")?, r.try_get("password_hash")?)))
            .transpose()
    }

    async fn identity(&self, user: Uuid) -> StoreResult<Option<Identity>> {
        let row = sqlx::query("SELECT identity_key, registration_id FROM users WHERE id = ?")
            .bind(user.to_string())
            .fetch_optional(&self.reader)
            .await?;
        row.map(|r| {
            Ok(Identity {
                identity_key: r.try_get("identity_key")?,
                registration_id: u32_col(&r, "registration_id")?,
            })
        })
        .transpose()
    }

    async fn insert_refresh_token(&self, token: NewRefreshToken) -> StoreResult<()> {
        sqlx::query("INSERT INTO refresh_tokens (token_hash, user_id, family_id, expires_at) VALUES (?, ?, ?, ?)")
            .bind(&token.hash[..])
            .bind(token.user_id.to_string())
            .bind(token.family_id.to_string())
            .bind(token.expires_at)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn rotate_refresh_token(
        &self,
        presented: [u8; 32],
        next_hash: [u8; 32],
        next_expires_at: i64,
        now: i64,
        reuse_grace_secs: i64,
    ) -> StoreResult<Rotation> {
        let mut tx = self.writer.begin().await?;
        let row = sqlx::query(
            "SELECT user_id, family_id, expires_at, rotated, rotated_at, revoked FROM refresh_tokens WHERE token_hash = ?",
        )
        .bind(&presented[..])
        .fetch_optional(&mut *tx)
        .await?;
        let row = row
            .map(|r| -> StoreResult<RefreshTokenRow> {
                Ok(RefreshTokenRow {
                    user_id: uuid_col(&r, "user_id")?,
                    family_id: uuid_col(&r, "family_id")?,
                    expires_at: r.try_get("expires_at")?,
                    rotated: r.try_get::<i64, _>("rotated")? != 0,
                    rotated_at: r.try_get("rotated_at")?,
                    revoked: r.try_get::<i64, _>("revoked")? != 0,
                })
            })
            .transpose()?;
        let outcome = match (
            classify_refresh_token(row.as_ref(), now, reuse_grace_secs),
            row,
        ) {
            (TokenState::Live, Some(row)) => {
                sqlx::query(
                    "UPDATE refresh_tokens SET rotated = 1, rotated_at = ? WHERE token_hash = ?",
                )
                .bind(now)
                .bind(&presented[..])
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO refresh_tokens (token_hash, user_id, family_id, expires_at) VALUES (?, ?, ?, ?)",
                )
                .bind(&next_hash[..])
                .bind(row.user_id.to_string())
                .bind(row.family_id.to_string())
                .bind(next_expires_at)
                .execute(&mut *tx)
                .await?;
                Rotation::Rotated {
                    user_id: row.user_id,
                }
            }
            (TokenState::Reused, Some(row)) => {
                sqlx::query("UPDATE refresh_tokens SET revoked = 1 WHERE family_id = ?")
                    .bind(row.family_id.to_string())
                    .execute(&mut *tx)
                    .await?;
                Rotation::ReuseDetected
            }
            _ => Rotation::Invalid,
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn revoke_refresh_family(&self, presented: [u8; 32], user: Uuid) -> StoreResult<bool> {
        let revoked = sqlx::query(
            "UPDATE refresh_tokens SET revoked = 1 WHERE family_id =
                (SELECT family_id FROM refresh_tokens WHERE token_hash = ? AND user_id = ?)",
        )
        .bind(&presented[..])
        .bind(user.to_string())
        .execute(&self.writer)
        .await?
        .rows_affected();
        Ok(revoked > 0)
    }

    async fn upload_keys(&self, user: Uuid, upload: KeyUpload) -> StoreResult<KeyUploadOutcome> {
        let id = user.to_string();
        let mut tx = self.writer.begin().await?;
        let Some(stored) = sqlx::query("SELECT identity_key FROM users WHERE id = ?")
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(KeyUploadOutcome::UnknownUser);
        };
        let stored_identity: Vec<u8> = stored.try_get("identity_key")?;
        let takeover = match &upload.identity {
            Some(new) => new.identity_key != stored_identity,
            None => false,
        };
        if takeover {
            let new = upload
                .identity
                .as_ref()
                .map(|i| (i.identity_key.clone(), i.registration_id));
            let Some((key, registration_id)) = new else {
                return Ok(KeyUploadOutcome::IdentityChanged);
            };
            if key != upload.verified_against {
                return Ok(KeyUploadOutcome::IdentityChanged);
            }
            sqlx::query("UPDATE users SET identity_key = ?, registration_id = ? WHERE id = ?")
                .bind(&key)
                .bind(i64::from(registration_id))
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM signed_pre_keys WHERE user_id = ?")
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM one_time_pre_keys WHERE user_id = ?")
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM messages WHERE recipient_id = ?")
                .bind(&id)
                .execute(&mut *tx)
                .await?;
        } else {
            if stored_identity != upload.verified_against {
                return Ok(KeyUploadOutcome::IdentityChanged);
            }
            if let Some(identity) = &upload.identity {
                // Same identity key: a refill; keep the registration id current.
                sqlx::query("UPDATE users SET registration_id = ? WHERE id = ?")
                    .bind(i64::from(identity.registration_id))
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
            }
            let current: Option<i64> =
                sqlx::query_scalar("SELECT key_id FROM signed_pre_keys WHERE user_id = ?")
                    .bind(&id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(current) = current
                && i64::from(upload.signed_pre_key.key_id) <= current
            {
                return Ok(KeyUploadOutcome::StaleSignedPreKey {
                    stored: u32::try_from(current).unwrap_or(u32::MAX),
                });
            }
        }
        insert_keys(
            &mut tx,
            &id,
            &upload.signed_pre_key,
            &upload.one_time_pre_keys,
        )
        .await?;
        sqlx::query(
            "DELETE FROM one_time_pre_keys WHERE user_id = ?1 AND seq NOT IN
                (SELECT seq FROM one_time_pre_keys WHERE user_id = ?1 ORDER BY seq DESC LIMIT ?2)",
        )
        .bind(&id)
        .bind(i64::from(upload.max_one_time_pre_keys))
        .execute(&mut *tx)
        .await?;
        let remaining = count_one_time(&mut tx, &id).await?;
        tx.commit().await?;
        Ok(if takeover {
            KeyUploadOutcome::TookOver { remaining }
        } else {
            KeyUploadOutcome::Refilled { remaining }
        })
    }

    async fn take_bundle(&self, user: Uuid) -> StoreResult<Option<Bundle>> {
        let id = user.to_string();
        let mut tx = self.writer.begin().await?;
        let Some(row) = sqlx::query(
            "SELECT u.identity_key, u.registration_id, s.key_id, s.public_key, s.signature
             FROM users u JOIN signed_pre_keys s ON s.user_id = u.id WHERE u.id = ?",
        )
        .bind(&id)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        let identity = Identity {
            identity_key: row.try_get("identity_key")?,
            registration_id: u32_col(&row, "registration_id")?,
        };
        let signed_pre_key = SignedPreKey {
            key_id: u32_col(&row, "key_id")?,
            public_key: row.try_get("public_key")?,
            signature: row.try_get("signature")?,
        };
        // One statement: the key is handed out and deleted together.
        let one_time_pre_key = sqlx::query(
            "DELETE FROM one_time_pre_keys WHERE seq =
                (SELECT seq FROM one_time_pre_keys WHERE user_id = ? ORDER BY seq LIMIT 1)
             RETURNING key_id, public_key",
        )
        .bind(&id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| -> StoreResult<OneTimePreKey> {
            Ok(OneTimePreKey {
                key_id: u32_col(&r, "key_id")?,
                public_key: r.try_get("public_key")?,
            })
        })
        .transpose()?;
        let remaining = count_one_time(&mut tx, &id).await?;
        tx.commit().await?;
        Ok(Some(Bundle {
            identity,
            signed_pre_key,
            one_time_pre_key,
            remaining,
        }))
    }

    async fn one_time_pre_key_count(&self, user: Uuid) -> StoreResult<u32> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM one_time_pre_keys WHERE user_id = ?")
            .bind(user.to_string())
            .fetch_one(&self.reader)
            .await?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    async fn enqueue_message(&self, m: NewMessage) -> StoreResult<bool> {
        self.commits.enqueue(m).await
    }

    fn on_commit(&self, hook: CommitHook) -> bool {
        self.commits.set_hook(hook)
    }

    async fn pending_messages(
        &self,
        user: Uuid,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        let rows = sqlx::query(
            "SELECT seq, id, sender_id, timestamp_ms, msg_type, content FROM messages
             WHERE recipient_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(user.to_string())
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredMessage {
                    seq: r.try_get("seq")?,
                    id: uuid_col(r, "id")?,
                    sender: uuid_col(r, "sender_id")?,
                    timestamp_ms: r.try_get("timestamp_ms")?,
                    msg_type: r.try_get("msg_type")?,
                    content: r.try_get("content")?,
                })
            })
            .collect()
    }

    async fn users_with_pending(&self, cursors: &[(Uuid, i64)]) -> StoreResult<Vec<Uuid>> {
        // 2 variables per user, far below SQLite's 32,766.
        debug_assert!(cursors.len() <= PENDING_CHECK_USERS);
        if cursors.is_empty() {
            return Ok(Vec::new());
        }
        let rows = vec!["(?, ?)"; cursors.len()].join(", ");
        let sql = format!(
            "SELECT c.column1 AS id FROM (VALUES {rows}) AS c
             WHERE EXISTS (SELECT 1 FROM messages m
                           WHERE m.recipient_id = c.column1 AND m.seq > c.column2)"
        );
        let mut query = sqlx::query(&sql);
        for (user, after) in cursors {
            query = query.bind(user.to_string()).bind(*after);
        }
        let rows = query.fetch_all(&self.reader).await?;
        rows.iter().map(|r| uuid_col(r, "id")).collect()
    }

    async fn delete_messages(&self, user: Uuid, ids: &[Uuid]) -> StoreResult<u64> {
        self.commits.delete(user, ids.to_vec()).await
    }

    async fn insert_attachment(&self, a: Attachment, owner: Uuid, now: i64) -> StoreResult<()> {
        sqlx::query("INSERT INTO attachments (id, owner_id, size, created_at, expires_at) VALUES (?, ?, ?, ?, ?)")
            .bind(a.id.to_string())
            .bind(owner.to_string())
            .bind(i64::try_from(a.size).unwrap_or(i64::MAX))
            .bind(now)
            .bind(a.expires_at)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn attachment(&self, id: Uuid, now: i64) -> StoreResult<Option<Attachment>> {
        let row =
            sqlx::query("SELECT size, expires_at FROM attachments WHERE id = ? AND expires_at > ?")
                .bind(id.to_string())
                .bind(now)
                .fetch_optional(&self.reader)
                .await?;
        row.map(|r| {
            let size: i64 = r.try_get("size")?;
            Ok(Attachment {
                id,
                size: u64::try_from(size).unwrap_or(0),
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    async fn expired_attachments(&self, now: i64, limit: u32) -> StoreResult<Vec<Uuid>> {
        let rows = sqlx::query(
            "SELECT id FROM attachments WHERE expires_at <= ? ORDER BY expires_at LIMIT ?",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(|r| uuid_col(r, "id")).collect()
    }

    async fn delete_attachment(&self, id: Uuid) -> StoreResult<()> {
        sqlx::query("DELETE FROM attachments WHERE id = ?")
            .bind(id.to_string())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn set_push_token(
        &self,
        user: Uuid,
        token: &str,
        kind: Option<&str>,
        now: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO push_tokens (user_id, token, kind, updated_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (user_id) DO UPDATE SET token = excluded.token, kind = excluded.kind,
                 updated_at = excluded.updated_at",
        )
        .bind(user.to_string())
        .bind(token)
        .bind(kind)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn schedule_push(
        &self,
        user: Uuid,
        due_ms: i64,
        throttle_ms: i64,
        kinds: &[&str],
    ) -> StoreResult<bool> {
        self.push_schedule(user, due_ms, throttle_ms, kinds).await
    }

    async fn cancel_push(&self, user: Uuid, now_ms: i64) -> StoreResult<()> {
        self.push_cancel(user, now_ms).await
    }

    async fn next_push_due(&self) -> StoreResult<Option<i64>> {
        self.push_next_due().await
    }

    async fn claim_pushes(
        &self,
        claim: Uuid,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<PushJob>> {
        self.push_claim(claim, now_ms, lease_until_ms, limit).await
    }

    async fn finish_push(
        &self,
        job: &PushJob,
        outcome: PushOutcome,
        now_ms: i64,
    ) -> StoreResult<()> {
        self.push_finish(job, outcome, now_ms).await
    }

    async fn queued_message_count(&self) -> StoreResult<u64> {
        self.count_queued_messages().await
    }

    async fn purge_expired(&self, now: i64) -> StoreResult<Purged> {
        let messages = sqlx::query("DELETE FROM messages WHERE expires_at <= ?")
            .bind(now)
            .execute(&self.writer)
            .await?
            .rows_affected();
        let refresh_tokens = sqlx::query("DELETE FROM refresh_tokens WHERE expires_at <= ?")
            .bind(now)
            .execute(&self.writer)
            .await?
            .rows_affected();
        Ok(Purged {
            messages,
            refresh_tokens,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::conformance::{Check, add_user, conformance_tests, message};

    #[test]
    fn batch_sql_is_built_once_per_shape_and_lists_are_json() {
        for rows in [0, 1, 2, 64, 512] {
            let (a, b) = (batch_sql(rows), batch_sql(rows));
            assert!(matches!((&a, &b), (Cow::Borrowed(_), Cow::Borrowed(_))));
            assert!(std::ptr::eq(a.as_ref(), b.as_ref()), "{rows}");
            assert_eq!(a.matches('?').count(), 4 + rows * MESSAGE_COLUMNS);
        }
        assert_eq!(insert_rows(3), 4);
        assert_eq!(insert_rows(0), 0);
        let (u, v) = (Uuid::new_v4(), Uuid::new_v4());
        let parsed: serde_json::Value = serde_json::from_str(&json_uuids([u, v].iter())).unwrap();
        assert_eq!(parsed, serde_json::json!([u.to_string(), v.to_string()]));
        let parsed: serde_json::Value = serde_json::from_str(&json_pairs(&[(u, v)])).unwrap();
        assert_eq!(parsed, serde_json::json!([[u.to_string(), v.to_string()]]));
        assert_eq!(json_pairs(&[]), "[]");
    }

    async fn fresh_store() -> (tempfile::TempDir, Arc<SqliteStore>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
        (dir, store)
    }

    /// The shared store checks (`store::conformance`) on a fresh file.
    async fn harness(_test: &str, check: Check) {
        let (_dir, store) = fresh_store().await;
        check(store).await;
    }

    conformance_tests!(super::harness);

    /// Two stores (two relay processes) on one database file, writing at
    /// once: every enqueue succeeds. A batch that read before taking the
    /// write lock failed with SQLITE_BUSY_SNAPSHOT once the other committed.
    #[tokio::test]
    async fn two_writers_on_one_file_both_succeed() {
        let (dir, a) = fresh_store().await;
        let user = add_user(&*a, 0).await;
        let b = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let store = if i % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(async move {
                    for _ in 0..25 {
                        assert!(store.enqueue_message(message(user)).await.unwrap());
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let queued = a.pending_messages(user, 0, 1000).await.unwrap();
        assert_eq!(queued.len(), 200);
    }

    /// Each committed message names its recipient's latest queued seq
    /// before it: the previous message, or an older one once that was ACKed.
    #[tokio::test]
    async fn committed_messages_name_the_recipients_previous_seq() {
        let (_dir, store) = fresh_store().await;
        let user = add_user(&*store, 0).await;
        let committed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = committed.clone();
        assert!(store.on_commit(Arc::new(move |recipient, c| {
            assert_eq!(recipient, user);
            seen.lock()
                .unwrap()
                .push((c.message.id, c.message.seq, c.prev_seq));
        })));
        let first = message(user);
        let second = message(user);
        let (first_id, second_id) = (first.id, second.id);
        assert!(store.enqueue_message(first).await.unwrap());
        assert!(store.enqueue_message(second).await.unwrap());
        assert_eq!(store.delete_messages(user, &[second_id]).await.unwrap(), 1);
        assert!(store.enqueue_message(message(user)).await.unwrap());
        let committed = committed.lock().unwrap().clone();
        let [(id1, seq1, prev1), (id2, seq2, prev2), (_, seq3, prev3)] = committed[..] else {
            panic!("expected 3 commits, got {committed:?}");
        };
        assert_eq!((id1, id2), (first_id, second_id));
        assert!(seq1 < seq2 && seq2 < seq3);
        assert_eq!((prev1, prev2, prev3), (0, seq1, seq1));
    }
}
