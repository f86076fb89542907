-- Wake-up push jobs (see migrations/sqlite/0002_push_jobs.sql): at most one
-- row per user; due_at_ms NULL = nothing pending; last_sent_ms drives the
-- throttle; lease_owner/lease_until_ms make each job sent once per cluster.
CREATE TABLE push_jobs (
    user_id        UUID PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    due_at_ms      BIGINT,
    attempts       INTEGER NOT NULL DEFAULT 0,
    last_sent_ms   BIGINT,
    lease_owner    UUID,
    lease_until_ms BIGINT
);
CREATE INDEX push_jobs_due ON push_jobs(due_at_ms) WHERE due_at_ms IS NOT NULL;
