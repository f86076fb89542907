-- Obscura relay, embedded SQLite schema. Ids are canonical lower-case UUID
-- strings; times are UNIX seconds unless the column says _ms.

CREATE TABLE users (
    id              TEXT PRIMARY KEY NOT NULL,
    username        TEXT NOT NULL UNIQUE,
    password_hash   TEXT NOT NULL,
    identity_key    BLOB NOT NULL,
    registration_id INTEGER NOT NULL,
    created_at      INTEGER NOT NULL
);

-- The current signed pre-key (one per user; ids only go up).
CREATE TABLE signed_pre_keys (
    user_id    TEXT PRIMARY KEY NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    key_id     INTEGER NOT NULL,
    public_key BLOB NOT NULL,
    signature  BLOB NOT NULL
);

-- seq orders keys by upload (oldest handed out and pruned first).
CREATE TABLE one_time_pre_keys (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    key_id     INTEGER NOT NULL,
    public_key BLOB NOT NULL,
    UNIQUE (user_id, key_id)
);
CREATE INDEX one_time_pre_keys_by_user ON one_time_pre_keys(user_id, seq);

-- seq is the delivery order: AUTOINCREMENT never reuses a value, and SQLite's
-- single writer makes seq order equal commit order.
CREATE TABLE messages (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    recipient_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    sender_id    TEXT NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    msg_type     INTEGER NOT NULL,
    content      BLOB NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX messages_by_recipient ON messages(recipient_id, seq);
CREATE INDEX messages_by_expiry ON messages(expires_at);

-- Rotated tokens are kept (rotated = 1) until they expire, to detect reuse.
CREATE TABLE refresh_tokens (
    token_hash BLOB PRIMARY KEY NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    family_id  TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    rotated    INTEGER NOT NULL DEFAULT 0,
    revoked    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX refresh_tokens_by_family ON refresh_tokens(family_id);
CREATE INDEX refresh_tokens_by_expiry ON refresh_tokens(expires_at);

CREATE TABLE attachments (
    id         TEXT PRIMARY KEY NOT NULL,
    owner_id   TEXT NOT NULL,
    size       INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX attachments_by_expiry ON attachments(expires_at);

-- "Single device" policy: one push token per user.
CREATE TABLE push_tokens (
    user_id    TEXT PRIMARY KEY NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token      TEXT NOT NULL,
    kind       TEXT,
    updated_at INTEGER NOT NULL
);
