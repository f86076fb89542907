//! `obscura relay` command line.
//!
//! Every option is `Option<_>` so the three sources can be layered:
//! command-line flag > `OBSCURA_*` environment variable (both handled by
//! clap) > the TOML file given by `--config` > the built-in default
//! (applied in [`crate::config::Config::resolve`]). The same struct is the
//! TOML schema: keys are the flag names (`data-dir = "…"`; `data_dir` works too).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use serde::Deserialize;

/// Options of `obscura relay`.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RelayArgs {
    /// TOML file with any of the options below (keys are the flag names).
    #[arg(long, env = "OBSCURA_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Log line format on stderr: text for people, json (one object per line) for collectors. [default: text]
    #[arg(long, env = "OBSCURA_LOG_FORMAT", value_enum, value_name = "FORMAT")]
    #[serde(skip)]
    pub log_format: Option<LogFormat>,

    /// Public API address (port 0 = any free port). [default: 127.0.0.1:3000]
    #[arg(long, env = "OBSCURA_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Management address: /livez, /readyz, /metrics. [default: 127.0.0.1:9090]
    #[arg(long, env = "OBSCURA_MGMT_LISTEN", value_name = "ADDR")]
    pub mgmt_listen: Option<SocketAddr>,

    /// Data directory: SQLite database, attachments/, jwt-secret. [default: ./data]
    #[arg(long, env = "OBSCURA_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// JWT signing secret; overrides the one generated into the data directory.
    #[arg(
        long,
        env = "OBSCURA_JWT_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,

    /// Access-token lifetime in seconds. [default: 900]
    #[arg(long, env = "OBSCURA_ACCESS_TOKEN_TTL_SECS", value_name = "SECS")]
    pub access_token_ttl_secs: Option<u64>,

    /// Refresh-token lifetime in seconds. [default: 2592000]
    #[arg(long, env = "OBSCURA_REFRESH_TOKEN_TTL_SECS", value_name = "SECS")]
    pub refresh_token_ttl_secs: Option<u64>,

    /// A rotated refresh token presented again within this many seconds of its rotation gets a 401 only (a client racing itself, e.g. two tabs); later, its whole session family is revoked as stolen. 0 revokes on any reuse. [default: 60]
    #[arg(long, env = "OBSCURA_REFRESH_REUSE_GRACE_SECS", value_name = "SECS")]
    pub refresh_reuse_grace_secs: Option<u64>,

    /// Argon2id memory cost in KiB (OWASP minimum 19456). [default: 19456]
    #[arg(long, env = "OBSCURA_ARGON2_MEMORY_KIB", value_name = "KIB")]
    pub argon2_memory_kib: Option<u32>,

    /// Argon2id iterations (OWASP minimum 2). [default: 2]
    #[arg(long, env = "OBSCURA_ARGON2_ITERATIONS", value_name = "N")]
    pub argon2_iterations: Option<u32>,

    /// Argon2id parallelism. [default: 1]
    #[arg(long, env = "OBSCURA_ARGON2_PARALLELISM", value_name = "N")]
    pub argon2_parallelism: Option<u32>,

    /// Largest accepted POST /v1/messages body, in bytes. [default: 1048576]
    #[arg(long, env = "OBSCURA_MAX_MESSAGE_BYTES", value_name = "BYTES")]
    pub max_message_bytes: Option<u64>,

    /// Largest accepted attachment, in bytes. [default: 104857600]
    #[arg(long, env = "OBSCURA_STORAGE_MAX_SIZE_BYTES", value_name = "BYTES")]
    pub storage_max_size_bytes: Option<u64>,

    /// Attachments are deleted this many seconds after upload. [default: 2592000]
    #[arg(long, env = "OBSCURA_ATTACHMENT_TTL_SECS", value_name = "SECS")]
    pub attachment_ttl_secs: Option<u64>,

    /// Undelivered messages are deleted this many seconds after receipt. [default: 2592000]
    #[arg(long, env = "OBSCURA_MESSAGE_TTL_SECS", value_name = "SECS")]
    pub message_ttl_secs: Option<u64>,

    /// Seconds between TTL clean-up runs. [default: 60]
    #[arg(long, env = "OBSCURA_CLEANUP_INTERVAL_SECS", value_name = "SECS")]
    pub cleanup_interval_secs: Option<u64>,

    /// A PreKeyStatus frame is sent while fewer one-time pre-keys remain. [default: 10]
    #[arg(long, env = "OBSCURA_PREKEY_MIN_THRESHOLD", value_name = "N")]
    pub prekey_min_threshold: Option<u32>,

    /// One-time pre-keys kept per user; the oldest are pruned. [default: 100]
    #[arg(long, env = "OBSCURA_MAX_ONE_TIME_PREKEYS", value_name = "N")]
    pub max_one_time_prekeys: Option<u32>,

    /// Shortest password accepted at registration, in characters (the contract sets none, and existing clients allow short ones). [default: 1]
    #[arg(long, env = "OBSCURA_MIN_PASSWORD_CHARS", value_name = "N")]
    pub min_password_chars: Option<u32>,

    /// Sustained requests per second per authenticated user. [default: 50]
    #[arg(long, env = "OBSCURA_RATE_LIMIT_PER_SEC", value_name = "RATE")]
    pub rate_limit_per_sec: Option<f64>,

    /// Burst size per authenticated user. [default: 500]
    #[arg(long, env = "OBSCURA_RATE_LIMIT_BURST", value_name = "N")]
    pub rate_limit_burst: Option<u32>,

    /// Requests per second per IP on unauthenticated routes (key bundles, gateway handshake, token refresh). [default: 20]
    #[arg(long, env = "OBSCURA_IP_RATE_LIMIT_PER_SEC", value_name = "RATE")]
    pub ip_rate_limit_per_sec: Option<f64>,

    /// Burst size per IP on unauthenticated routes. [default: 200]
    #[arg(long, env = "OBSCURA_IP_RATE_LIMIT_BURST", value_name = "N")]
    pub ip_rate_limit_burst: Option<u32>,

    /// Requests per second per IP on register / login (each hashes a password). [default: 5]
    #[arg(long, env = "OBSCURA_AUTH_RATE_LIMIT_PER_SEC", value_name = "RATE")]
    pub auth_rate_limit_per_sec: Option<f64>,

    /// Burst size per IP on register / login. [default: 50]
    #[arg(long, env = "OBSCURA_AUTH_RATE_LIMIT_BURST", value_name = "N")]
    pub auth_rate_limit_burst: Option<u32>,

    /// Seconds within which each 64 KiB of a request body (or all of a smaller one) must arrive. [default: 30]
    #[arg(long, env = "OBSCURA_BODY_READ_TIMEOUT_SECS", value_name = "SECS")]
    pub body_read_timeout_secs: Option<u64>,

    /// Seconds an idle keep-alive connection is kept open between requests. [default: 75]
    #[arg(long, env = "OBSCURA_KEEP_ALIVE_TIMEOUT_SECS", value_name = "SECS")]
    pub keep_alive_timeout_secs: Option<u64>,

    /// Comma-separated origins (https://app.example) whose browser pages may call the API (CORS), or `*` for any. [default: none: no CORS headers]
    #[arg(long, env = "OBSCURA_CORS_ALLOWED_ORIGINS", value_name = "LIST")]
    pub cors_allowed_origins: Option<String>,

    /// Comma-separated IPs/CIDRs of reverse proxies whose X-Forwarded-For is believed. [default: none]
    #[arg(long, env = "OBSCURA_TRUSTED_PROXIES", value_name = "LIST")]
    pub trusted_proxies: Option<String>,

    // --- several nodes: PostgreSQL, Redis, S3 (docs/deploy.md) ---------------
    /// PostgreSQL URL (postgres://user:pass@host/db); without it the relay uses SQLite in the data directory.
    #[arg(
        long,
        env = "OBSCURA_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,

    /// PostgreSQL schema for the relay's tables, created at start. [default: the URL's search_path]
    #[arg(long, env = "OBSCURA_DATABASE_SCHEMA", value_name = "NAME")]
    pub database_schema: Option<String>,

    /// PostgreSQL connections per node. [default: 16]
    #[arg(long, env = "OBSCURA_DATABASE_MAX_CONNECTIONS", value_name = "N")]
    pub database_max_connections: Option<u32>,

    /// Longest wait for a pooled PostgreSQL connection, in seconds. [default: 10]
    #[arg(
        long,
        env = "OBSCURA_DATABASE_ACQUIRE_TIMEOUT_SECS",
        value_name = "SECS"
    )]
    pub database_acquire_timeout_secs: Option<u64>,

    /// How long start-up retries an unreachable PostgreSQL/Redis/S3, in seconds. [default: 30]
    #[arg(long, env = "OBSCURA_CONNECT_TIMEOUT_SECS", value_name = "SECS")]
    pub connect_timeout_secs: Option<u64>,

    /// Longest pause between two attempts to reach PostgreSQL, Redis or S3, in milliseconds (back-off doubles from 100 ms). [default: 2000]
    #[arg(long, env = "OBSCURA_BACKOFF_MAX_MS", value_name = "MS")]
    pub backoff_max_ms: Option<u64>,

    /// Redis URL (redis://host:6379/0): cross-node delivery and shared rate limits. [default: none, single node]
    #[arg(
        long,
        env = "OBSCURA_REDIS_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub redis_url: Option<String>,

    /// Prefix of every Redis key and channel, so deployments can share a Redis. [default: obscura]
    #[arg(long, env = "OBSCURA_REDIS_KEY_PREFIX", value_name = "PREFIX")]
    pub redis_key_prefix: Option<String>,

    /// Timeout of one Redis command, in milliseconds. [default: 1000]
    #[arg(long, env = "OBSCURA_REDIS_TIMEOUT_MS", value_name = "MS")]
    pub redis_timeout_ms: Option<u64>,

    /// Rate limiting while Redis is unreachable: local (per-node buckets), open (allow) or closed (refuse). [default: local]
    #[arg(long, env = "OBSCURA_RATE_LIMIT_REDIS_FAILURE", value_name = "MODE")]
    pub rate_limit_redis_failure: Option<String>,

    /// Connected sessions re-check the store this often, so a lost cross-node notification only delays delivery. [default: 5]
    #[arg(long, env = "OBSCURA_DELIVERY_POLL_SECS", value_name = "SECS")]
    pub delivery_poll_secs: Option<u64>,

    /// Attachment storage: `local` (data directory) or `s3://bucket[/prefix]`. [default: local]
    #[arg(long, env = "OBSCURA_STORAGE", value_name = "URL")]
    pub storage: Option<String>,

    /// S3 endpoint for S3-compatible servers (http://127.0.0.1:9000). [default: AWS]
    #[arg(long, env = "OBSCURA_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,

    /// S3 region. [default: us-east-1]
    #[arg(long, env = "OBSCURA_S3_REGION", value_name = "REGION")]
    pub s3_region: Option<String>,

    /// S3 access key id. [default: $AWS_ACCESS_KEY_ID]
    #[arg(long, env = "OBSCURA_S3_ACCESS_KEY_ID", value_name = "ID")]
    pub s3_access_key_id: Option<String>,

    /// S3 secret access key. [default: $AWS_SECRET_ACCESS_KEY]
    #[arg(
        long,
        env = "OBSCURA_S3_SECRET_ACCESS_KEY",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub s3_secret_access_key: Option<String>,

    /// Milliseconds between a message for an offline user and its wake-up push (a burst shares one). [default: 2000]
    #[arg(long, env = "OBSCURA_PUSH_DELAY_MS", value_name = "MS")]
    pub push_delay_ms: Option<u64>,

    /// At most one wake-up push per user per this many seconds. [default: 30]
    #[arg(long, env = "OBSCURA_PUSH_THROTTLE_SECS", value_name = "SECS")]
    pub push_throttle_secs: Option<u64>,

    /// Attempts per wake-up before transient provider failures make it give up. [default: 8]
    #[arg(long, env = "OBSCURA_PUSH_MAX_ATTEMPTS", value_name = "N")]
    pub push_max_attempts: Option<u32>,

    /// FCM service-account JSON key file; enables FCM wake-ups. [default: none]
    #[arg(long, env = "OBSCURA_FCM_SERVICE_ACCOUNT", value_name = "FILE")]
    pub fcm_service_account: Option<PathBuf>,

    /// FCM HTTP v1 API base URL. [default: https://fcm.googleapis.com]
    #[arg(long, env = "OBSCURA_FCM_ENDPOINT", value_name = "URL")]
    pub fcm_endpoint: Option<String>,

    /// OAuth2 token endpoint for the FCM service account. [default: the key file's token_uri]
    #[arg(long, env = "OBSCURA_FCM_TOKEN_ENDPOINT", value_name = "URL")]
    pub fcm_token_endpoint: Option<String>,

    /// APNs signing key (the AuthKey_KEYID.p8 file); enables APNs wake-ups with the three options below. [default: none]
    #[arg(long, env = "OBSCURA_APNS_KEY_FILE", value_name = "FILE")]
    pub apns_key_file: Option<PathBuf>,

    /// Key ID of the APNs signing key. [default: none]
    #[arg(long, env = "OBSCURA_APNS_KEY_ID", value_name = "ID")]
    pub apns_key_id: Option<String>,

    /// Apple developer team ID. [default: none]
    #[arg(long, env = "OBSCURA_APNS_TEAM_ID", value_name = "ID")]
    pub apns_team_id: Option<String>,

    /// The app's bundle ID (apns-topic). [default: none]
    #[arg(long, env = "OBSCURA_APNS_TOPIC", value_name = "BUNDLE_ID")]
    pub apns_topic: Option<String>,

    /// APNs API base URL (https://api.sandbox.push.apple.com for development builds). [default: https://api.push.apple.com]
    #[arg(long, env = "OBSCURA_APNS_ENDPOINT", value_name = "URL")]
    pub apns_endpoint: Option<String>,

    /// Accept http:// and private or loopback UnifiedPush endpoints (LAN distributors, tests). [default: false]
    #[arg(
        long,
        env = "OBSCURA_UNIFIEDPUSH_ALLOW_PRIVATE",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub unifiedpush_allow_private: Option<bool>,
}

/// Format of the log lines on stderr. Read before anything else (logging
/// starts first), so it is a flag or environment variable only, not a TOML key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl RelayArgs {
    /// Fills every option not given on the command line or in the
    /// environment from `file` (the lower-precedence source).
    pub fn or(self, file: RelayArgs) -> RelayArgs {
        RelayArgs {
            config: self.config,
            log_format: self.log_format,
            listen: self.listen.or(file.listen),
            mgmt_listen: self.mgmt_listen.or(file.mgmt_listen),
            data_dir: self.data_dir.or(file.data_dir),
            jwt_secret: self.jwt_secret.or(file.jwt_secret),
            access_token_ttl_secs: self.access_token_ttl_secs.or(file.access_token_ttl_secs),
            refresh_token_ttl_secs: self.refresh_token_ttl_secs.or(file.refresh_token_ttl_secs),
            refresh_reuse_grace_secs: self
                .refresh_reuse_grace_secs
                .or(file.refresh_reuse_grace_secs),
            argon2_memory_kib: self.argon2_memory_kib.or(file.argon2_memory_kib),
            argon2_iterations: self.argon2_iterations.or(file.argon2_iterations),
            argon2_parallelism: self.argon2_parallelism.or(file.argon2_parallelism),
            max_message_bytes: self.max_message_bytes.or(file.max_message_bytes),
            storage_max_size_bytes: self.storage_max_size_bytes.or(file.storage_max_size_bytes),
            attachment_ttl_secs: self.attachment_ttl_secs.or(file.attachment_ttl_secs),
            message_ttl_secs: self.message_ttl_secs.or(file.message_ttl_secs),
            cleanup_interval_secs: self.cleanup_interval_secs.or(file.cleanup_interval_secs),
            prekey_min_threshold: self.prekey_min_threshold.or(file.prekey_min_threshold),
            max_one_time_prekeys: self.max_one_time_prekeys.or(file.max_one_time_prekeys),
            min_password_chars: self.min_password_chars.or(file.min_password_chars),
            rate_limit_per_sec: self.rate_limit_per_sec.or(file.rate_limit_per_sec),
            rate_limit_burst: self.rate_limit_burst.or(file.rate_limit_burst),
            ip_rate_limit_per_sec: self.ip_rate_limit_per_sec.or(file.ip_rate_limit_per_sec),
            ip_rate_limit_burst: self.ip_rate_limit_burst.or(file.ip_rate_limit_burst),
            auth_rate_limit_per_sec: self
                .auth_rate_limit_per_sec
                .or(file.auth_rate_limit_per_sec),
            auth_rate_limit_burst: self.auth_rate_limit_burst.or(file.auth_rate_limit_burst),
            body_read_timeout_secs: self.body_read_timeout_secs.or(file.body_read_timeout_secs),
            keep_alive_timeout_secs: self
                .keep_alive_timeout_secs
                .or(file.keep_alive_timeout_secs),
            trusted_proxies: self.trusted_proxies.or(file.trusted_proxies),
            cors_allowed_origins: self.cors_allowed_origins.or(file.cors_allowed_origins),
            database_url: self.database_url.or(file.database_url),
            database_schema: self.database_schema.or(file.database_schema),
            database_max_connections: self
                .database_max_connections
                .or(file.database_max_connections),
            database_acquire_timeout_secs: self
                .database_acquire_timeout_secs
                .or(file.database_acquire_timeout_secs),
            connect_timeout_secs: self.connect_timeout_secs.or(file.connect_timeout_secs),
            backoff_max_ms: self.backoff_max_ms.or(file.backoff_max_ms),
            redis_url: self.redis_url.or(file.redis_url),
            redis_key_prefix: self.redis_key_prefix.or(file.redis_key_prefix),
            redis_timeout_ms: self.redis_timeout_ms.or(file.redis_timeout_ms),
            rate_limit_redis_failure: self
                .rate_limit_redis_failure
                .or(file.rate_limit_redis_failure),
            delivery_poll_secs: self.delivery_poll_secs.or(file.delivery_poll_secs),
            storage: self.storage.or(file.storage),
            s3_endpoint: self.s3_endpoint.or(file.s3_endpoint),
            s3_region: self.s3_region.or(file.s3_region),
            s3_access_key_id: self.s3_access_key_id.or(file.s3_access_key_id),
            s3_secret_access_key: self.s3_secret_access_key.or(file.s3_secret_access_key),
            push_delay_ms: self.push_delay_ms.or(file.push_delay_ms),
            push_throttle_secs: self.push_throttle_secs.or(file.push_throttle_secs),
            push_max_attempts: self.push_max_attempts.or(file.push_max_attempts),
            fcm_service_account: self.fcm_service_account.or(file.fcm_service_account),
            fcm_endpoint: self.fcm_endpoint.or(file.fcm_endpoint),
            fcm_token_endpoint: self.fcm_token_endpoint.or(file.fcm_token_endpoint),
            apns_key_file: self.apns_key_file.or(file.apns_key_file),
            apns_key_id: self.apns_key_id.or(file.apns_key_id),
            apns_team_id: self.apns_team_id.or(file.apns_team_id),
            apns_topic: self.apns_topic.or(file.apns_topic),
            apns_endpoint: self.apns_endpoint.or(file.apns_endpoint),
            unifiedpush_allow_private: self
                .unifiedpush_allow_private
                .or(file.unifiedpush_allow_private),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{Args, Command};

    /// Every flag is documented with its environment variable and TOML key.
    #[test]
    fn every_option_is_in_docs_configuration_md() {
        let docs = include_str!("../../../docs/configuration.md");
        let command = super::RelayArgs::augment_args(Command::new("relay"));
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if long == "help" {
                continue;
            }
            assert!(
                docs.contains(&format!("`--{long}")),
                "--{long} missing from docs/configuration.md"
            );
            let env = arg
                .get_env()
                .and_then(|e| e.to_str())
                .expect("every option has an env var");
            assert_eq!(
                env,
                format!("OBSCURA_{}", long.to_uppercase().replace('-', "_"))
            );
            assert!(
                docs.contains(&format!("`{env}`")),
                "{env} missing from docs/configuration.md"
            );
            // Neither can come from the TOML file (logging starts first).
            if long != "config" && long != "log-format" {
                assert!(
                    docs.contains(&format!("`{long}`")),
                    "TOML key {long} missing"
                );
            }
        }
    }
}
