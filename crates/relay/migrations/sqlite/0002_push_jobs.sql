-- Wake-up push jobs: at most one row per user. due_at_ms NULL = nothing
-- pending; last_sent_ms drives the per-user throttle; a worker leases a row
-- (lease_owner = its claim id, until lease_until_ms) while it sends, so a
-- crashed worker's job is claimed again and a live one is sent once.
CREATE TABLE push_jobs (
    user_id        TEXT PRIMARY KEY NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    due_at_ms      INTEGER,
    attempts       INTEGER NOT NULL DEFAULT 0,
    last_sent_ms   INTEGER,
    lease_owner    TEXT,
    lease_until_ms INTEGER
);
CREATE INDEX push_jobs_due ON push_jobs(due_at_ms) WHERE due_at_ms IS NOT NULL;
