//! The wake-up queue on PostgreSQL (`push_jobs`, migration 0002): the same
//! rules as `store/sqlite/push_jobs.rs`, safe with many nodes writing. A
//! claim takes due rows with `FOR UPDATE SKIP LOCKED`, so concurrent workers
//! on different nodes never lease the same job nor wait for each other.
//!
//! Wiring (when `store/postgres.rs` is present): `mod push_jobs;` in it and
//! the six `Store` methods delegating here, as `store/sqlite.rs` does.

use sqlx::Row;
use uuid::Uuid;

use super::PgStore;
use crate::store::{PushJob, PushOutcome, PushTarget, StoreError, StoreResult};

impl PgStore {
    pub(super) async fn push_schedule(
        &self,
        user: Uuid,
        due_ms: i64,
        throttle_ms: i64,
        kinds: &[&str],
    ) -> StoreResult<bool> {
        let kinds: Vec<String> = kinds.iter().map(|k| (*k).to_owned()).collect();
        let row = sqlx::query(
            "INSERT INTO push_jobs (user_id, due_at_ms)
             SELECT user_id, $2 FROM push_tokens
             WHERE user_id = $1 AND COALESCE(kind, 'fcm') = ANY($4)
             ON CONFLICT (user_id) DO UPDATE SET
                 attempts = CASE WHEN push_jobs.due_at_ms IS NULL THEN 0 ELSE push_jobs.attempts END,
                 due_at_ms = COALESCE(push_jobs.due_at_ms,
                     GREATEST(excluded.due_at_ms, COALESCE(push_jobs.last_sent_ms + $3, 0)))
             RETURNING due_at_ms",
        )
        .bind(user)
        .bind(due_ms)
        .bind(throttle_ms)
        .bind(&kinds)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    pub(super) async fn push_next_due(&self) -> StoreResult<Option<i64>> {
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(GREATEST(due_at_ms, COALESCE(lease_until_ms, 0)))
             FROM push_jobs WHERE due_at_ms IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(due)
    }

    pub(super) async fn push_claim(
        &self,
        claim: Uuid,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<PushJob>> {
        let rows = sqlx::query(
            "WITH due AS (
                 SELECT user_id FROM push_jobs
                 WHERE due_at_ms IS NOT NULL AND due_at_ms <= $3
                   AND (lease_until_ms IS NULL OR lease_until_ms <= $3)
                 ORDER BY due_at_ms LIMIT $4
                 FOR UPDATE SKIP LOCKED)
             UPDATE push_jobs j SET lease_owner = $1, lease_until_ms = $2
             FROM due LEFT JOIN push_tokens t ON t.user_id = due.user_id
             WHERE j.user_id = due.user_id
             RETURNING j.user_id, j.attempts, t.token, t.kind",
        )
        .bind(claim)
        .bind(lease_until_ms)
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let attempts: i32 = r.try_get("attempts")?;
                let token: Option<String> = r.try_get("token")?;
                Ok(PushJob {
                    user: r.try_get("user_id")?,
                    claim,
                    attempts: u32::try_from(attempts)
                        .map_err(|_| StoreError::Corrupt(format!("attempts: {attempts}")))?,
                    target: token
                        .map(|token| -> StoreResult<PushTarget> {
                            Ok(PushTarget {
                                token,
                                kind: r.try_get("kind")?,
                            })
                        })
                        .transpose()?,
                })
            })
            .collect()
    }

    pub(super) async fn push_finish(
        &self,
        job: &PushJob,
        outcome: PushOutcome,
        now_ms: i64,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let update = match outcome {
            PushOutcome::Sent => sqlx::query(
                "UPDATE push_jobs SET due_at_ms = NULL, attempts = 0, last_sent_ms = $3,
                     lease_owner = NULL, lease_until_ms = NULL
                 WHERE user_id = $1 AND lease_owner = $2",
            )
            .bind(job.user)
            .bind(job.claim)
            .bind(now_ms),
            PushOutcome::Retry { at_ms } => sqlx::query(
                "UPDATE push_jobs SET due_at_ms = $3, attempts = attempts + 1,
                     lease_owner = NULL, lease_until_ms = NULL
                 WHERE user_id = $1 AND lease_owner = $2",
            )
            .bind(job.user)
            .bind(job.claim)
            .bind(at_ms),
            PushOutcome::InvalidToken | PushOutcome::Done => sqlx::query(
                "UPDATE push_jobs SET due_at_ms = NULL, attempts = 0,
                     lease_owner = NULL, lease_until_ms = NULL
                 WHERE user_id = $1 AND lease_owner = $2",
            )
            .bind(job.user)
            .bind(job.claim),
        };
        let owned = update.execute(&mut *tx).await?.rows_affected() == 1;
        if owned
            && outcome == PushOutcome::InvalidToken
            && let Some(target) = &job.target
        {
            sqlx::query("DELETE FROM push_tokens WHERE user_id = $1 AND token = $2")
                .bind(job.user)
                .bind(&target.token)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn count_queued_messages(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages")
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
