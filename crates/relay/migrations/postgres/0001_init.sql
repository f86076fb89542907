-- Obscura relay, PostgreSQL schema (same model as migrations/sqlite, native
-- types). Times are UNIX seconds unless the column says _ms. The relay
-- applies this at start-up in the schema named by --database-schema.

CREATE TABLE users (
    id              UUID PRIMARY KEY,
    username        TEXT NOT NULL UNIQUE,
    password_hash   TEXT NOT NULL,
    identity_key    BYTEA NOT NULL,
    registration_id BIGINT NOT NULL,
    created_at      BIGINT NOT NULL
);

-- The current signed pre-key (one per user; ids only go up).
CREATE TABLE signed_pre_keys (
    user_id    UUID PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    key_id     BIGINT NOT NULL,
    public_key BYTEA NOT NULL,
    signature  BYTEA NOT NULL
);

-- seq orders keys by upload (oldest handed out and pruned first).
CREATE TABLE one_time_pre_keys (
    seq        BIGSERIAL PRIMARY KEY,
    user_id    UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    key_id     BIGINT NOT NULL,
    public_key BYTEA NOT NULL,
    UNIQUE (user_id, key_id)
);
CREATE INDEX one_time_pre_keys_by_user ON one_time_pre_keys (user_id, seq);

-- seq is the delivery order. A sequence alone is not commit order under
-- concurrent writers, so enqueue locks the recipient's users row first:
-- per recipient, seq values are drawn and committed one transaction at a time.
CREATE TABLE messages (
    seq          BIGSERIAL PRIMARY KEY,
    id           UUID NOT NULL UNIQUE,
    recipient_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    sender_id    UUID NOT NULL,
    timestamp_ms BIGINT NOT NULL,
    msg_type     INTEGER NOT NULL,
    content      BYTEA NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX messages_by_recipient ON messages (recipient_id, seq);
CREATE INDEX messages_by_expiry ON messages (expires_at);

-- Rotated tokens are kept (rotated) until they expire, to detect reuse.
CREATE TABLE refresh_tokens (
    token_hash BYTEA PRIMARY KEY,
    user_id    UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    family_id  UUID NOT NULL,
    expires_at BIGINT NOT NULL,
    rotated    BOOLEAN NOT NULL DEFAULT FALSE,
    revoked    BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_by_expiry ON refresh_tokens (expires_at);

CREATE TABLE attachments (
    id         UUID PRIMARY KEY,
    owner_id   UUID NOT NULL,
    size       BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX attachments_by_expiry ON attachments (expires_at);

-- "Single device" policy: one push token per user.
CREATE TABLE push_tokens (
    user_id    UUID PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    token      TEXT NOT NULL,
    kind       TEXT,
    updated_at BIGINT NOT NULL
);

-- Cluster-wide jobs: whoever holds an unexpired lease runs the job.
CREATE TABLE job_leases (
    name          TEXT PRIMARY KEY,
    holder        UUID NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
