//! [`Store`] on PostgreSQL, for relays that run as several nodes.
//!
//! The same model as the SQLite store, with PostgreSQL's concurrency in
//! mind (READ COMMITTED, many writers on many nodes):
//! - one-time pre-keys are handed out with `DELETE … WHERE seq = (SELECT …
//!   FOR UPDATE SKIP LOCKED) RETURNING`, so concurrent fetches each take a
//!   different key and never wait on each other;
//! - messages take their `seq` from a BIGSERIAL after locking the
//!   recipient's `users` row, so for each recipient sequence order is commit
//!   order and a delivery cursor can never step over a late commit;
//! - read-modify-write paths (key upload, refresh rotation) lock the row
//!   they decide on (`FOR UPDATE`).
//!
//! Every relay of a deployment may point at its own schema
//! (`--database-schema`), created at start; migrations are embedded and
//! applied under sqlx's advisory lock, so nodes may start together.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, Connection, Postgres, Row, Transaction};
use uuid::Uuid;

use super::group_commit::{
    BatchWriter, CommitHook, GroupCommit, Outcome, Write, acknowledged, cancels, enqueues,
    link_prev_seqs, outcomes, recipients,
};
use super::group_read::{BatchReader, GroupRead, Read};
use super::*;
use crate::backoff::Backoff;
use crate::domain::sessions::{TokenState, classify_refresh_token};

mod push_jobs;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How the relay reaches PostgreSQL.
#[derive(Clone)]
pub struct PgSettings {
    /// `postgres://user:pass@host:port/db?…`
    pub url: String,
    /// Schema for every table (created if missing); `None` = the URL's search_path.
    pub schema: Option<String>,
    pub max_connections: u32,
    /// Longest wait for a pooled connection before a request fails.
    pub acquire_timeout: Duration,
    /// How start-up retries an unreachable server.
    pub backoff: Backoff,
}

/// Never prints the URL: it usually carries a password.
impl std::fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSettings")
            .field("schema", &self.schema)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

pub struct PgStore {
    pool: PgPool,
    /// Enqueues and ACK deletes, many per transaction (one WAL flush per batch).
    commits: GroupCommit,
    /// Delivery reads of sessions woken together, one query per batch.
    reads: GroupRead,
}

/// A schema name we can put in SQL without quoting surprises.
pub fn valid_schema_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

impl PgStore {
    /// Connects (retrying an unreachable server with back-off),
    /// creates the schema if needed and applies migrations.
    pub async fn open(settings: &PgSettings) -> StoreResult<Self> {
        let base: PgConnectOptions = settings.url.parse()?;
        let base = base.application_name("obscura-relay");
        if let Some(schema) = &settings.schema
            && !valid_schema_name(schema)
        {
            return Err(StoreError::Corrupt(format!(
                "invalid schema name {schema:?} (use [a-z_][a-z0-9_]*)"
            )));
        }
        // Reachability first, retried with back-off; then the schema.
        let unreachable = |e: &sqlx::Error| matches!(e, sqlx::Error::Io(_));
        let mut conn = settings
            .backoff
            .retry("PostgreSQL", unreachable, || base.connect())
            .await?;
        if let Some(schema) = &settings.schema {
            create_schema(&mut conn, schema).await?;
        }
        conn.close().await?;
        let options = match &settings.schema {
            Some(schema) => base.options([("search_path", schema.as_str())]),
            None => base,
        };
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .min_connections(1)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&pool).await?;
        let mut writer = PgBatchWriter {
            options,
            connect_timeout: settings.acquire_timeout,
            conn: tokio::sync::Mutex::new(None),
        };
        *writer.conn.get_mut() = Some(writer.connect().await?);
        let commits = GroupCommit::spawn(Arc::new(writer), PG_BATCHES_IN_FLIGHT);
        let reads = GroupRead::spawn(
            Arc::new(PgBatchReader { pool: pool.clone() }),
            PG_READS_IN_FLIGHT,
        );
        Ok(Self {
            pool,
            commits,
            reads,
        })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// `CREATE SCHEMA IF NOT EXISTS` races with itself when several nodes start
/// at once (a unique violation in the catalog): re-check before failing.
async fn create_schema(conn: &mut PgConnection, schema: &str) -> StoreResult<()> {
    let sql = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
    if let Err(e) = sqlx::query(&sql).execute(&mut *conn).await {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                .bind(schema)
                .fetch_one(&mut *conn)
                .await?;
        if !exists {
            return Err(e.into());
        }
    }
    Ok(())
}

fn u32_col(row: &PgRow, col: &str) -> StoreResult<u32> {
    let v: i64 = row.try_get(col)?;
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{col} out of range: {v}")))
}

async fn count_one_time(tx: &mut Transaction<'_, Postgres>, user: Uuid) -> StoreResult<u32> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM one_time_pre_keys WHERE user_id = $1")
        .bind(user)
        .fetch_one(&mut **tx)
        .await?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

async fn insert_keys(
    tx: &mut Transaction<'_, Postgres>,
    user: Uuid,
    signed: &SignedPreKey,
    one_time: &[OneTimePreKey],
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO signed_pre_keys (user_id, key_id, public_key, signature) VALUES ($1, $2, $3, $4)
         ON CONFLICT (user_id) DO UPDATE SET key_id = excluded.key_id,
             public_key = excluded.public_key, signature = excluded.signature",
    )
    .bind(user)
    .bind(i64::from(signed.key_id))
    .bind(&signed.public_key)
    .bind(&signed.signature)
    .execute(&mut **tx)
    .await?;
    if one_time.is_empty() {
        return Ok(());
    }
    // Re-uploading an id replaces it and makes it the newest (as in SQLite's
    // INSERT OR REPLACE); within one upload the last occurrence wins.
    let mut keys: Vec<&OneTimePreKey> = Vec::with_capacity(one_time.len());
    for key in one_time.iter().rev() {
        if !keys.iter().any(|k| k.key_id == key.key_id) {
            keys.push(key);
        }
    }
    keys.reverse();
    let ids: Vec<i64> = keys.iter().map(|k| i64::from(k.key_id)).collect();
    let publics: Vec<Vec<u8>> = keys.iter().map(|k| k.public_key.clone()).collect();
    sqlx::query("DELETE FROM one_time_pre_keys WHERE user_id = $1 AND key_id = ANY($2)")
        .bind(user)
        .bind(&ids)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO one_time_pre_keys (user_id, key_id, public_key)
         SELECT $1, k.key_id, k.public_key
         FROM UNNEST($2::BIGINT[], $3::BYTEA[]) WITH ORDINALITY AS k(key_id, public_key, n)
         ORDER BY k.n",
    )
    .bind(user)
    .bind(&ids)
    .bind(&publics)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Applies group-commit batches: each is one call of the SQL function
/// `write_message_batch` (migrations/postgres/0003), one round trip and its
/// own transaction.
///
/// The writer owns its connection rather than borrowing one from the pool:
/// sqlx pings a pooled connection when it is acquired and again when it
/// goes back, two more round trips per batch. After an error that may have
/// broken it, the connection is dropped and the next batch opens a new one.
struct PgBatchWriter {
    options: PgConnectOptions,
    /// Bounds opening a connection as the pool's acquire timeout bounds
    /// getting one: a server that does not answer fails the batch instead
    /// of holding the writer for the operating system's connect timeout.
    connect_timeout: Duration,
    conn: tokio::sync::Mutex<Option<PgConnection>>,
}

impl PgBatchWriter {
    async fn connect(&self) -> StoreResult<PgConnection> {
        match tokio::time::timeout(self.connect_timeout, self.options.connect()).await {
            Ok(conn) => Ok(conn?),
            Err(_) => Err(StoreError::Database(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connecting the group-commit writer to PostgreSQL timed out",
            )))),
        }
    }
}

/// Group-commit batches in flight per node (the writer has one connection).
/// Measured (100 users, docs/performance.md): overlapping batches were
/// slower than one at a time (4: 3.9k vs 5.1k msg/s; 2: p99 14.6 vs 8.8 ms)
/// — they touch the same recipients and wait on each other's row locks.
const PG_BATCHES_IN_FLIGHT: usize = 1;

#[async_trait]
impl BatchWriter for PgBatchWriter {
    async fn write_batch(&self, writes: &[Write]) -> StoreResult<Vec<Outcome>> {
        let mut slot = self.conn.lock().await;
        let conn = match &mut *slot {
            Some(conn) => conn,
            empty => empty.insert(self.connect().await?),
        };
        let result = call_write_message_batch(conn, writes).await;
        // A constraint violation leaves the connection usable; a server
        // shutting down reports a database error too, then hangs up. Ask.
        if result.is_err() && conn.ping().await.is_err() {
            *slot = None;
        }
        let (before, stored, deleted) = result?;
        let mut outcomes = outcomes(writes, &stored, &deleted);
        link_prev_seqs(writes, &mut outcomes, before);
        Ok(outcomes)
    }
}

/// What `write_message_batch` reported: each recipient's latest `seq`
/// before the batch, the `seq` of each stored message, the ACKed
/// `(recipient, id)` pairs deleted.
type BatchRows = (
    HashMap<Uuid, i64>,
    HashMap<Uuid, i64>,
    std::collections::HashSet<(Uuid, Uuid)>,
);

async fn call_write_message_batch(
    conn: &mut PgConnection,
    writes: &[Write],
) -> StoreResult<BatchRows> {
    let messages = enqueues(writes);
    let column = |f: fn(&NewMessage) -> Uuid| messages.iter().map(|m| f(m)).collect::<Vec<_>>();
    let (ack_users, ack_ids): (Vec<Uuid>, Vec<Uuid>) = acknowledged(writes).into_iter().unzip();
    let (cancel_users, cancel_now) = cancels(writes).unwrap_or((Vec::new(), 0));
    let rows = sqlx::query(
        "SELECT o_kind, o_user, o_id, o_seq FROM write_message_batch(
             $1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::int8[], $6::int4[], $7::bytea[],
             $8::int8[], $9::uuid[], $10::uuid[], $11::uuid[], $12::int8)",
    )
    .bind(recipients(writes))
    .bind(column(|m| m.id))
    .bind(column(|m| m.recipient))
    .bind(column(|m| m.sender))
    .bind(messages.iter().map(|m| m.timestamp_ms).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| m.msg_type).collect::<Vec<_>>())
    .bind(
        messages
            .iter()
            .map(|m| m.content.as_slice())
            .collect::<Vec<_>>(),
    )
    .bind(messages.iter().map(|m| m.expires_at).collect::<Vec<_>>())
    .bind(ack_users)
    .bind(ack_ids)
    .bind(cancel_users)
    .bind(cancel_now)
    .fetch_all(conn)
    .await?;
    let (mut before, mut stored, mut deleted) = BatchRows::default();
    for row in &rows {
        let user: Uuid = row.try_get("o_user")?;
        let seq: Option<i64> = row.try_get("o_seq")?;
        match (row.try_get::<&str, _>("o_kind")?, seq) {
            ("latest", Some(seq)) => {
                before.insert(user, seq);
            }
            ("latest", None) => {}
            ("stored", Some(seq)) => {
                stored.insert(row.try_get("o_id")?, seq);
            }
            ("deleted", None) => {
                deleted.insert((user, row.try_get("o_id")?));
            }
            (kind, _) => {
                return Err(StoreError::Corrupt(format!(
                    "write_message_batch returned an unexpected row: {kind}"
                )));
            }
        }
    }
    Ok((before, stored, deleted))
}

/// Delivery-read queries running at once (the pool serves everything else
/// with the rest of its connections).
const PG_READS_IN_FLIGHT: usize = 4;

/// Answers grouped delivery reads with one `LATERAL` query per batch.
struct PgBatchReader {
    pool: PgPool,
}

#[async_trait]
impl BatchReader for PgBatchReader {
    async fn read_batch(&self, reads: &[Read]) -> StoreResult<Vec<Vec<StoredMessage>>> {
        let rows = sqlx::query(
            "SELECT r.ord, m.seq, m.id, m.sender_id, m.timestamp_ms, m.msg_type, m.content
             FROM unnest($1::uuid[], $2::int8[], $3::int8[])
                 WITH ORDINALITY AS r(recipient, after_seq, lim, ord)
             CROSS JOIN LATERAL (
                 SELECT seq, id, sender_id, timestamp_ms, msg_type, content FROM messages
                 WHERE recipient_id = r.recipient AND seq > r.after_seq
                 ORDER BY seq LIMIT r.lim
             ) m
             ORDER BY r.ord, m.seq",
        )
        .bind(reads.iter().map(|r| r.user).collect::<Vec<_>>())
        .bind(reads.iter().map(|r| r.after_seq).collect::<Vec<_>>())
        .bind(reads.iter().map(|r| i64::from(r.limit)).collect::<Vec<_>>())
        .fetch_all(&self.pool)
        .await?;
        let mut pages: Vec<Vec<StoredMessage>> = vec![Vec::new(); reads.len()];
        for r in &rows {
            let ord: i64 = r.try_get("ord")?;
            let page = usize::try_from(ord - 1)
                .ok()
                .and_then(|i| pages.get_mut(i))
                .ok_or_else(|| StoreError::Corrupt(format!("read batch ordinal {ord}")))?;
            page.push(StoredMessage {
                seq: r.try_get("seq")?,
                id: r.try_get("id")?,
                sender: r.try_get("sender_id")?,
                timestamp_ms: r.try_get("timestamp_ms")?,
                msg_type: r.try_get("msg_type")?,
                content: r.try_get("content")?,
            });
        }
        Ok(pages)
    }
}

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_user(&self, user: NewUser) -> StoreResult<CreateUser> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO users (id, username, password_hash, identity_key, registration_id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (username) DO NOTHING",
        )
        .bind(user.id)
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
        insert_keys(
            &mut tx,
            user.id,
            &user.signed_pre_key,
            &user.one_time_pre_keys,
        )
        .await?;
        tx.commit().await?;
        Ok(CreateUser::Created)
    }

    async fn credentials(&self, username: &str) -> StoreResult<Option<(Uuid, String)>> {
        let row = sqlx::query("SELECT id, password_hash FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get("id")?, r.try_get("password_hash")?)))
            .transpose()
    }

    async fn identity(&self, user: Uuid) -> StoreResult<Option<Identity>> {
        let row = sqlx::query("SELECT identity_key, registration_id FROM users WHERE id = $1")
            .bind(user)
            .fetch_optional(&self.pool)
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
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, user_id, family_id, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&token.hash[..])
        .bind(token.user_id)
        .bind(token.family_id)
        .bind(token.expires_at)
        .execute(&self.pool)
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
        let mut tx = self.pool.begin().await?;
        // FOR UPDATE: two concurrent rotations of one token serialise, so
        // the second sees `rotated` and is treated as reuse.
        let row = sqlx::query(
            "SELECT user_id, family_id, expires_at, rotated, rotated_at, revoked FROM refresh_tokens
             WHERE token_hash = $1 FOR UPDATE",
        )
        .bind(&presented[..])
        .fetch_optional(&mut *tx)
        .await?;
        let row = row
            .map(|r| -> StoreResult<RefreshTokenRow> {
                Ok(RefreshTokenRow {
                    user_id: r.try_get("user_id")?,
                    family_id: r.try_get("family_id")?,
                    expires_at: r.try_get("expires_at")?,
                    rotated: r.try_get("rotated")?,
                    rotated_at: r.try_get("rotated_at")?,
                    revoked: r.try_get("revoked")?,
                })
            })
            .transpose()?;
        let outcome = match (
            classify_refresh_token(row.as_ref(), now, reuse_grace_secs),
            row,
        ) {
            (TokenState::Live, Some(row)) => {
                sqlx::query(
                    "UPDATE refresh_tokens SET rotated = TRUE, rotated_at = $2 WHERE token_hash = $1",
                )
                .bind(&presented[..])
                .bind(now)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO refresh_tokens (token_hash, user_id, family_id, expires_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(&next_hash[..])
                .bind(row.user_id)
                .bind(row.family_id)
                .bind(next_expires_at)
                .execute(&mut *tx)
                .await?;
                Rotation::Rotated {
                    user_id: row.user_id,
                }
            }
            (TokenState::Reused, Some(row)) => {
                sqlx::query("UPDATE refresh_tokens SET revoked = TRUE WHERE family_id = $1")
                    .bind(row.family_id)
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
            "UPDATE refresh_tokens SET revoked = TRUE WHERE family_id =
                (SELECT family_id FROM refresh_tokens WHERE token_hash = $1 AND user_id = $2)",
        )
        .bind(&presented[..])
        .bind(user)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(revoked > 0)
    }

    async fn upload_keys(&self, user: Uuid, upload: KeyUpload) -> StoreResult<KeyUploadOutcome> {
        let mut tx = self.pool.begin().await?;
        // The users row lock serialises uploads (and takeovers) per user.
        let Some(stored_identity) = sqlx::query_scalar::<_, Vec<u8>>(
            "SELECT identity_key FROM users WHERE id = $1 FOR UPDATE",
        )
        .bind(user)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(KeyUploadOutcome::UnknownUser);
        };
        let takeover = match &upload.identity {
            Some(new) => new.identity_key != stored_identity,
            None => false,
        };
        if takeover {
            let Some(new) = upload.identity.as_ref() else {
                return Ok(KeyUploadOutcome::IdentityChanged);
            };
            if new.identity_key != upload.verified_against {
                return Ok(KeyUploadOutcome::IdentityChanged);
            }
            sqlx::query("UPDATE users SET identity_key = $1, registration_id = $2 WHERE id = $3")
                .bind(&new.identity_key)
                .bind(i64::from(new.registration_id))
                .bind(user)
                .execute(&mut *tx)
                .await?;
            for table in ["signed_pre_keys", "one_time_pre_keys"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                    .bind(user)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("DELETE FROM messages WHERE recipient_id = $1")
                .bind(user)
                .execute(&mut *tx)
                .await?;
        } else {
            if stored_identity != upload.verified_against {
                return Ok(KeyUploadOutcome::IdentityChanged);
            }
            if let Some(identity) = &upload.identity {
                // Same identity key: a refill; keep the registration id current.
                sqlx::query("UPDATE users SET registration_id = $1 WHERE id = $2")
                    .bind(i64::from(identity.registration_id))
                    .bind(user)
                    .execute(&mut *tx)
                    .await?;
            }
            let current: Option<i64> =
                sqlx::query_scalar("SELECT key_id FROM signed_pre_keys WHERE user_id = $1")
                    .bind(user)
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
            user,
            &upload.signed_pre_key,
            &upload.one_time_pre_keys,
        )
        .await?;
        sqlx::query(
            "DELETE FROM one_time_pre_keys WHERE user_id = $1 AND seq NOT IN
                (SELECT seq FROM one_time_pre_keys WHERE user_id = $1 ORDER BY seq DESC LIMIT $2)",
        )
        .bind(user)
        .bind(i64::from(upload.max_one_time_pre_keys))
        .execute(&mut *tx)
        .await?;
        let remaining = count_one_time(&mut tx, user).await?;
        tx.commit().await?;
        Ok(if takeover {
            KeyUploadOutcome::TookOver { remaining }
        } else {
            KeyUploadOutcome::Refilled { remaining }
        })
    }

    async fn take_bundle(&self, user: Uuid) -> StoreResult<Option<Bundle>> {
        let mut tx = self.pool.begin().await?;
        let Some(row) = sqlx::query(
            "SELECT u.identity_key, u.registration_id, s.key_id, s.public_key, s.signature
             FROM users u JOIN signed_pre_keys s ON s.user_id = u.id WHERE u.id = $1",
        )
        .bind(user)
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
        // SKIP LOCKED: concurrent fetches each claim a different key instead
        // of queueing behind (and then missing) the same one.
        let one_time_pre_key = sqlx::query(
            "DELETE FROM one_time_pre_keys WHERE seq =
                (SELECT seq FROM one_time_pre_keys WHERE user_id = $1 ORDER BY seq LIMIT 1
                 FOR UPDATE SKIP LOCKED)
             RETURNING key_id, public_key",
        )
        .bind(user)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| -> StoreResult<OneTimePreKey> {
            Ok(OneTimePreKey {
                key_id: u32_col(&r, "key_id")?,
                public_key: r.try_get("public_key")?,
            })
        })
        .transpose()?;
        let remaining = count_one_time(&mut tx, user).await?;
        tx.commit().await?;
        Ok(Some(Bundle {
            identity,
            signed_pre_key,
            one_time_pre_key,
            remaining,
        }))
    }

    async fn one_time_pre_key_count(&self, user: Uuid) -> StoreResult<u32> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM one_time_pre_keys WHERE user_id = $1")
                .bind(user)
                .fetch_one(&self.pool)
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
        self.reads
            .read(Read {
                user,
                after_seq,
                limit,
            })
            .await
    }

    async fn users_with_pending(&self, cursors: &[(Uuid, i64)]) -> StoreResult<Vec<Uuid>> {
        debug_assert!(cursors.len() <= PENDING_CHECK_USERS);
        if cursors.is_empty() {
            return Ok(Vec::new());
        }
        // One index probe (messages_by_recipient) per user.
        let rows = sqlx::query(
            "SELECT c.id FROM unnest($1::uuid[], $2::int8[]) AS c(id, after_seq)
             WHERE EXISTS (SELECT 1 FROM messages m
                           WHERE m.recipient_id = c.id AND m.seq > c.after_seq)",
        )
        .bind(cursors.iter().map(|&(user, _)| user).collect::<Vec<_>>())
        .bind(cursors.iter().map(|&(_, after)| after).collect::<Vec<_>>())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }

    async fn delete_messages(&self, user: Uuid, ids: &[Uuid]) -> StoreResult<u64> {
        self.commits.delete(user, ids.to_vec()).await
    }

    async fn insert_attachment(&self, a: Attachment, owner: Uuid, now: i64) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO attachments (id, owner_id, size, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(a.id)
        .bind(owner)
        .bind(i64::try_from(a.size).unwrap_or(i64::MAX))
        .bind(now)
        .bind(a.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn attachment(&self, id: Uuid, now: i64) -> StoreResult<Option<Attachment>> {
        let row = sqlx::query(
            "SELECT size, expires_at FROM attachments WHERE id = $1 AND expires_at > $2",
        )
        .bind(id)
        .bind(now)
        .fetch_optional(&self.pool)
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
        let ids = sqlx::query_scalar(
            "SELECT id FROM attachments WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(ids)
    }

    async fn delete_attachment(&self, id: Uuid) -> StoreResult<()> {
        sqlx::query("DELETE FROM attachments WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
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
            "INSERT INTO push_tokens (user_id, token, kind, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_id) DO UPDATE SET token = excluded.token, kind = excluded.kind,
                 updated_at = excluded.updated_at",
        )
        .bind(user)
        .bind(token)
        .bind(kind)
        .bind(now)
        .execute(&self.pool)
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
        // Every ACK flush cancels: one statement per group-commit batch.
        self.commits.cancel_push(user, now_ms).await
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
        let messages = sqlx::query("DELETE FROM messages WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let refresh_tokens = sqlx::query("DELETE FROM refresh_tokens WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(Purged {
            messages,
            refresh_tokens,
        })
    }

    async fn try_lease(
        &self,
        name: &str,
        holder: Uuid,
        ttl: Duration,
        now_ms: i64,
    ) -> StoreResult<bool> {
        // Take the lease if it is free, expired or already ours; one
        // statement, so two nodes can never both win.
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let won = sqlx::query(
            "INSERT INTO job_leases (name, holder, expires_at_ms) VALUES ($1, $2, $3 + $4)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
                 expires_at_ms = excluded.expires_at_ms
             WHERE job_leases.holder = excluded.holder OR job_leases.expires_at_ms <= $3
             RETURNING holder",
        )
        .bind(name)
        .bind(holder)
        .bind(now_ms)
        .bind(ttl_ms)
        .fetch_optional(&self.pool)
        .await?
        .is_some();
        Ok(won)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use super::*;
    use crate::store::conformance::{Check, add_user, conformance_tests, message};

    /// A store in a fresh schema of the test database, or `None` (skip)
    /// when PostgreSQL is not reachable and `OBSCURA_REQUIRE_BACKENDS` is unset.
    async fn test_store(test: &str) -> Option<(Arc<PgStore>, String)> {
        let schema = format!("t_unit_{}", &Uuid::new_v4().simple().to_string()[..12]);
        match PgStore::open(&test_settings(&schema)).await {
            Ok(store) => Some((Arc::new(store), schema)),
            Err(e) if std::env::var("OBSCURA_REQUIRE_BACKENDS").is_ok_and(|v| v == "1") => {
                panic!("{test}: PostgreSQL required: {e}")
            }
            Err(e) => {
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "SKIPPED {test}: PostgreSQL: {e}");
                None
            }
        }
    }

    fn test_settings(schema: &str) -> PgSettings {
        PgSettings {
            url: std::env::var("OBSCURA_TEST_DATABASE_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
            schema: Some(schema.to_owned()),
            max_connections: 8,
            acquire_timeout: Duration::from_secs(10),
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_millis(500)),
        }
    }

    async fn drop_schema(store: &PgStore, schema: &str) {
        let _ = sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .execute(&store.pool)
            .await;
        store.close().await;
    }

    async fn user(store: &PgStore, one_time: u32) -> Uuid {
        add_user(store, one_time).await
    }

    async fn enqueue(store: &PgStore, recipient: Uuid) {
        assert!(store.enqueue_message(message(recipient)).await.unwrap());
    }

    /// The shared store checks (`store::conformance`) in a fresh schema.
    async fn harness(test: &str, check: Check) {
        let Some((store, schema)) = test_store(test).await else {
            return;
        };
        check(store.clone()).await;
        drop_schema(&store, &schema).await;
    }

    conformance_tests!(super::harness);

    /// Two nodes (two stores on one schema) write to the same recipients at
    /// once. Each committed message must name the seq of its recipient's
    /// message just before it as `prev_seq`: a session that takes messages
    /// from its node's writer relies on it to notice one the other node wrote.
    #[tokio::test]
    async fn prev_seq_names_the_previous_message_across_nodes() {
        let Some((a, schema)) =
            test_store("prev_seq_names_the_previous_message_across_nodes").await
        else {
            return;
        };
        let b = Arc::new(PgStore::open(&test_settings(&schema)).await.unwrap());
        let committed = Arc::new(std::sync::Mutex::new(Vec::new()));
        for store in [&a, &b] {
            let committed = committed.clone();
            assert!(store.on_commit(Arc::new(move |recipient, c| {
                committed
                    .lock()
                    .unwrap()
                    .push((recipient, c.message.seq, c.prev_seq));
            })));
        }
        let recipients = [user(&a, 0).await, user(&a, 0).await];
        const TASKS: usize = 8;
        const EACH: usize = 30;
        let tasks: Vec<_> = (0..TASKS)
            .map(|i| {
                let store = if i % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(async move {
                    for k in 0..EACH {
                        enqueue(&store, recipients[(i + k) % 2]).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let mut committed = committed.lock().unwrap().clone();
        assert_eq!(committed.len(), TASKS * EACH);
        committed.sort_by_key(|&(_, seq, _)| seq);
        let mut last = HashMap::new();
        for (recipient, seq, prev_seq) in committed {
            let expected = last.insert(recipient, seq).unwrap_or(0);
            assert_eq!(prev_seq, expected, "prev_seq of message {seq}");
        }
        b.close().await;
        drop_schema(&a, &schema).await;
    }

    /// A server that accepts the connection and never answers: the writer
    /// fails the batch after its connect timeout instead of waiting forever.
    #[tokio::test]
    async fn the_batch_writer_gives_up_on_a_server_that_does_not_answer() {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        let holder = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = silent.accept().await {
                held.push(socket);
            }
        });
        let writer = PgBatchWriter {
            options: PgConnectOptions::new()
                .host("127.0.0.1")
                .port(port)
                .username("postgres"),
            connect_timeout: Duration::from_millis(200),
            conn: tokio::sync::Mutex::new(None),
        };
        let batch = [Write::Enqueue(message(Uuid::new_v4()))];
        let result = tokio::time::timeout(Duration::from_secs(30), writer.write_batch(&batch))
            .await
            .expect("the writer waited for a silent server");
        assert!(result.is_err());
        holder.abort();
    }

    #[tokio::test]
    async fn the_batch_writer_keeps_its_connection_until_it_breaks() {
        let Some((store, schema)) =
            test_store("the_batch_writer_keeps_its_connection_until_it_breaks").await
        else {
            return;
        };
        let recipient = user(&store, 0).await;
        let writer = PgBatchWriter {
            options: (*store.pool.connect_options()).clone(),
            connect_timeout: Duration::from_secs(10),
            conn: tokio::sync::Mutex::new(None),
        };
        let message = || message(recipient);
        let pid = || async {
            let mut slot = writer.conn.lock().await;
            let conn = slot.as_mut()?;
            Some(
                sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
                    .fetch_one(conn)
                    .await
                    .unwrap(),
            )
        };
        let first = message();
        let stored = writer
            .write_batch(&[Write::Enqueue(first.clone())])
            .await
            .unwrap();
        assert!(matches!(stored[..], [Outcome::Enqueued(Some(_))]));
        let opened = pid().await.expect("connected by the first batch");
        // A constraint violation (the same id again) fails the batch but
        // not the connection.
        let duplicate = writer.write_batch(&[Write::Enqueue(first)]).await;
        assert!(matches!(
            duplicate,
            Err(StoreError::Database(sqlx::Error::Database(_)))
        ));
        assert_eq!(pid().await, Some(opened));
        // The server drops the connection: that batch fails, the next one
        // runs on a new connection.
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(opened)
            .execute(&store.pool)
            .await
            .unwrap();
        assert!(
            writer
                .write_batch(&[Write::Enqueue(message())])
                .await
                .is_err()
        );
        assert_eq!(pid().await, None, "a broken connection is not kept");
        let again = writer
            .write_batch(&[Write::Enqueue(message())])
            .await
            .unwrap();
        assert!(matches!(again[..], [Outcome::Enqueued(Some(_))]));
        assert_ne!(pid().await, Some(opened));
        assert_eq!(
            store
                .pending_messages(recipient, 0, 10)
                .await
                .unwrap()
                .len(),
            2
        );
        drop_schema(&store, &schema).await;
    }

    /// Concurrent senders to one recipient while a pump pages by cursor,
    /// as a gateway session does: the pump must end up with every message
    /// (a late commit with a lower seq would be stepped over for good).
    #[tokio::test]
    async fn a_cursor_never_steps_over_a_late_commit() {
        let Some((store, schema)) = test_store("a_cursor_never_steps_over_a_late_commit").await
        else {
            return;
        };
        let recipient = user(&store, 0).await;
        const SENDERS: usize = 8;
        const EACH: usize = 40;
        let senders: Vec<_> = (0..SENDERS)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    for _ in 0..EACH {
                        enqueue(&store, recipient).await;
                    }
                })
            })
            .collect();
        let mut cursor = 0;
        let mut seen = HashSet::new();
        let mut finished = false;
        loop {
            let page = store.pending_messages(recipient, cursor, 7).await.unwrap();
            for m in &page {
                assert!(m.seq > cursor);
                cursor = m.seq;
                seen.insert(m.id);
            }
            if finished && page.is_empty() {
                break;
            }
            finished = senders.iter().all(|s| s.is_finished());
        }
        for s in senders {
            s.await.unwrap();
        }
        assert_eq!(seen.len(), SENDERS * EACH, "the cursor skipped messages");
        drop_schema(&store, &schema).await;
    }

    #[tokio::test]
    async fn a_lease_has_one_holder_until_it_expires() {
        let Some((store, schema)) = test_store("a_lease_has_one_holder_until_it_expires").await
        else {
            return;
        };
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let ttl = Duration::from_secs(10);
        assert!(store.try_lease("job", a, ttl, 1_000).await.unwrap());
        assert!(!store.try_lease("job", b, ttl, 2_000).await.unwrap());
        assert!(
            store.try_lease("job", a, ttl, 3_000).await.unwrap(),
            "renewal"
        );
        assert!(!store.try_lease("job", b, ttl, 12_999).await.unwrap());
        assert!(
            store.try_lease("job", b, ttl, 13_000).await.unwrap(),
            "expired"
        );
        assert!(!store.try_lease("job", a, ttl, 13_001).await.unwrap());
        assert!(store.try_lease("other", a, ttl, 13_001).await.unwrap());
        drop_schema(&store, &schema).await;
    }

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(valid_schema_name("obscura"));
        assert!(valid_schema_name("t_1a2b"));
        assert!(!valid_schema_name("1abc"));
        assert!(!valid_schema_name("a\"; DROP"));
        assert!(!valid_schema_name(""));
        assert!(!valid_schema_name(&"a".repeat(64)));
    }

    #[tokio::test]
    async fn wakeups_coalesce_lease_once_and_prune_refused_tokens() {
        let Some((store, schema)) =
            test_store("wakeups_coalesce_lease_once_and_prune_refused_tokens").await
        else {
            return;
        };
        let id = user(&store, 0).await;
        let all: &[&str] = &["fcm", "apns", "unifiedpush"];
        assert!(!store.schedule_push(id, 100, 0, all).await.unwrap());
        store.set_push_token(id, "tok", None, 0).await.unwrap();
        assert!(!store.schedule_push(id, 100, 0, &["apns"]).await.unwrap());
        assert!(store.schedule_push(id, 100, 0, all).await.unwrap());
        assert!(store.schedule_push(id, 150, 0, all).await.unwrap());
        assert_eq!(store.next_push_due().await.unwrap(), Some(100));
        let jobs = store
            .claim_pushes(Uuid::new_v4(), 100, 1100, 10)
            .await
            .unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].target.as_ref().unwrap().token, "tok");
        assert!(
            store
                .claim_pushes(Uuid::new_v4(), 200, 1200, 10)
                .await
                .unwrap()
                .is_empty(),
            "a leased job is nobody else's"
        );
        store
            .finish_push(&jobs[0], PushOutcome::InvalidToken, 300)
            .await
            .unwrap();
        assert_eq!(store.next_push_due().await.unwrap(), None);
        assert!(!store.schedule_push(id, 400, 0, all).await.unwrap());
        drop_schema(&store, &schema).await;
    }
}
