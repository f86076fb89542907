//! The wake-up queue on SQLite (`push_jobs`, migration 0002). Every rule of
//! `crate::push::queue` is one statement or one transaction on the writer.

use sqlx::Row;
use uuid::Uuid;

use super::{SqliteStore, uuid_col};
use crate::store::{PushJob, PushOutcome, PushTarget, StoreError, StoreResult};

impl SqliteStore {
    pub(super) async fn push_schedule(
        &self,
        user: Uuid,
        due_ms: i64,
        throttle_ms: i64,
        kinds: &[&str],
    ) -> StoreResult<bool> {
        let kinds = serde_json::to_string(kinds)
            .map_err(|e| StoreError::Corrupt(format!("push kinds: {e}")))?;
        // No token, no row; a pending job keeps its due time (coalescing);
        // a new one waits for the throttle window of the last one sent.
        let row = sqlx::query(
            "INSERT INTO push_jobs (user_id, due_at_ms)
             SELECT user_id, ?2 FROM push_tokens
             WHERE user_id = ?1 AND COALESCE(kind, 'fcm') IN (SELECT value FROM json_each(?4))
             ON CONFLICT (user_id) DO UPDATE SET
                 attempts = CASE WHEN push_jobs.due_at_ms IS NULL THEN 0 ELSE push_jobs.attempts END,
                 due_at_ms = COALESCE(push_jobs.due_at_ms,
                     MAX(excluded.due_at_ms, COALESCE(push_jobs.last_sent_ms + ?3, 0)))
             RETURNING due_at_ms",
        )
        .bind(user.to_string())
        .bind(due_ms)
        .bind(throttle_ms)
        .bind(kinds)
        .fetch_optional(&self.writer)
        .await?;
        Ok(row.is_some())
    }

    pub(super) async fn push_cancel(&self, user: Uuid, now_ms: i64) -> StoreResult<()> {
        // Every ACK flush lands here, beside its delete: the cancel rides the
        // same group commit (one UPDATE for all of a batch's cancels). A
        // look on a reader first would cost more than it saves: a pooled
        // reader is two round trips to a worker thread (query, sqlx's ping
        // on release), and a batch whose UPDATE matches nothing writes no
        // page.
        self.commits.cancel_push(user, now_ms).await
    }

    pub(super) async fn push_next_due(&self) -> StoreResult<Option<i64>> {
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(MAX(due_at_ms, COALESCE(lease_until_ms, 0)))
             FROM push_jobs WHERE due_at_ms IS NOT NULL",
        )
        .fetch_one(&self.reader)
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
        let claim_id = claim.to_string();
        let mut tx = self.writer.begin().await?;
        let leased = sqlx::query(
            "UPDATE push_jobs SET lease_owner = ?1, lease_until_ms = ?2
             WHERE user_id IN (
                 SELECT user_id FROM push_jobs
                 WHERE due_at_ms IS NOT NULL AND due_at_ms <= ?3
                   AND (lease_until_ms IS NULL OR lease_until_ms <= ?3)
                 ORDER BY due_at_ms LIMIT ?4)",
        )
        .bind(&claim_id)
        .bind(lease_until_ms)
        .bind(now_ms)
        .bind(i64::from(limit))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if leased == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT j.user_id, j.attempts, t.token, t.kind
             FROM push_jobs j LEFT JOIN push_tokens t ON t.user_id = j.user_id
             WHERE j.lease_owner = ?",
        )
        .bind(&claim_id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                let attempts: i64 = r.try_get("attempts")?;
                let token: Option<String> = r.try_get("token")?;
                Ok(PushJob {
                    user: uuid_col(r, "user_id")?,
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
        let user = job.user.to_string();
        let claim = job.claim.to_string();
        let mut tx = self.writer.begin().await?;
        let update = match outcome {
            PushOutcome::Sent => sqlx::query(
                "UPDATE push_jobs SET due_at_ms = NULL, attempts = 0, last_sent_ms = ?3,
                     lease_owner = NULL, lease_until_ms = NULL
                 WHERE user_id = ?1 AND lease_owner = ?2",
            )
            .bind(&user)
            .bind(&claim)
            .bind(now_ms),
            PushOutcome::Retry { at_ms } => sqlx::query(
                "UPDATE push_jobs SET due_at_ms = ?3, attempts = attempts + 1,
                     lease_owner = NULL, lease_until_ms = NULL
                 WHERE user_id = ?1 AND lease_owner = ?2",
            )
            .bind(&user)
            .bind(&claim)
            .bind(at_ms),
            PushOutcome::InvalidToken | PushOutcome::Done => sqlx::query(
                "UPDATE push_jobs SET due_at_ms = NULL, attempts = 0,
                     lease_owner = NULL, lease_until_ms = NULL
                 WHERE user_id = ?1 AND lease_owner = ?2",
            )
            .bind(&user)
            .bind(&claim),
        };
        let owned = update.execute(&mut *tx).await?.rows_affected() == 1;
        if owned
            && outcome == PushOutcome::InvalidToken
            && let Some(target) = &job.target
        {
            // Only the token that was refused: a newer registration stays.
            sqlx::query("DELETE FROM push_tokens WHERE user_id = ? AND token = ?")
                .bind(&user)
                .bind(&target.token)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn count_queued_messages(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages")
            .fetch_one(&self.reader)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Identity, NewUser, SignedPreKey, Store};

    const ALL: &[&str] = &["fcm", "apns", "unifiedpush"];

    async fn store_with_token(token: Option<&str>) -> (tempfile::TempDir, SqliteStore, Uuid) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let user = Uuid::new_v4();
        store
            .create_user(NewUser {
                id: user,
                username: format!("u-{user}"),
                password_hash: "x".into(),
                identity: Identity {
                    identity_key: vec![5; 33],
                    registration_id: 1,
                },
                signed_pre_key: SignedPreKey {
                    key_id: 1,
                    public_key: vec![5; 33],
                    signature: vec![7; 64],
                },
                one_time_pre_keys: vec![],
                created_at: 0,
            })
            .await
            .unwrap();
        if let Some(token) = token {
            store
                .set_push_token(user, token, Some("fcm"), 0)
                .await
                .unwrap();
        }
        (dir, store, user)
    }

    #[tokio::test]
    async fn no_token_no_job() {
        let (_dir, store, user) = store_with_token(None).await;
        assert!(!store.schedule_push(user, 100, 1000, ALL).await.unwrap());
        assert_eq!(store.next_push_due().await.unwrap(), None);
    }

    #[tokio::test]
    async fn no_configured_provider_no_job() {
        let (_dir, store, user) = store_with_token(Some("tok")).await;
        let only_up: &[&str] = &["unifiedpush"];
        assert!(!store.schedule_push(user, 100, 1000, only_up).await.unwrap());
        assert!(store.schedule_push(user, 100, 1000, ALL).await.unwrap());
    }

    #[tokio::test]
    async fn bursts_coalesce_and_a_claim_is_exclusive() {
        let (_dir, store, user) = store_with_token(Some("tok")).await;
        assert!(store.schedule_push(user, 100, 1000, ALL).await.unwrap());
        assert!(store.schedule_push(user, 150, 1000, ALL).await.unwrap());
        assert_eq!(store.next_push_due().await.unwrap(), Some(100));
        assert!(
            store
                .claim_pushes(Uuid::new_v4(), 99, 1099, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let jobs = store
            .claim_pushes(Uuid::new_v4(), 100, 1100, 10)
            .await
            .unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].target.as_ref().unwrap().token, "tok");
        // Leased: nobody else gets it, and a connect cannot cancel it midway.
        assert!(
            store
                .claim_pushes(Uuid::new_v4(), 200, 1200, 10)
                .await
                .unwrap()
                .is_empty()
        );
        store.cancel_push(user, 200).await.unwrap();
        store
            .finish_push(&jobs[0], PushOutcome::Sent, 300)
            .await
            .unwrap();
        assert_eq!(store.next_push_due().await.unwrap(), None);
        // Throttled: the next job waits for last_sent + throttle.
        assert!(store.schedule_push(user, 400, 1000, ALL).await.unwrap());
        assert_eq!(store.next_push_due().await.unwrap(), Some(1300));
        store.cancel_push(user, 500).await.unwrap();
        assert_eq!(store.next_push_due().await.unwrap(), None);
    }

    #[tokio::test]
    async fn an_expired_lease_is_claimed_again_and_the_old_claim_is_ignored() {
        let (_dir, store, user) = store_with_token(Some("tok")).await;
        store.schedule_push(user, 0, 0, ALL).await.unwrap();
        let lost = store.claim_pushes(Uuid::new_v4(), 0, 10, 10).await.unwrap();
        assert_eq!(store.next_push_due().await.unwrap(), Some(10));
        let again = store
            .claim_pushes(Uuid::new_v4(), 10, 20, 10)
            .await
            .unwrap();
        assert_eq!(again.len(), 1);
        store
            .finish_push(&lost[0], PushOutcome::InvalidToken, 11)
            .await
            .unwrap();
        assert_eq!(again[0].target.as_ref().unwrap().token, "tok");
        store
            .finish_push(&again[0], PushOutcome::Retry { at_ms: 50 }, 12)
            .await
            .unwrap();
        let retried = store
            .claim_pushes(Uuid::new_v4(), 50, 60, 10)
            .await
            .unwrap();
        assert_eq!(retried[0].attempts, 1);
        store
            .finish_push(&retried[0], PushOutcome::InvalidToken, 51)
            .await
            .unwrap();
        // The token is gone: no further jobs.
        assert!(!store.schedule_push(user, 100, 0, ALL).await.unwrap());
    }
}
