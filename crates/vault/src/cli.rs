//! `obscura guardian` command line: every option of the guardian, each with
//! its `OBSCURA_GUARDIAN_*` environment variable. `docs/vault-configuration.md`
//! lists them; keep the two in step.

use std::net::SocketAddr;
use std::path::PathBuf;

/// `obscura guardian [OPTIONS] [verify …]`
#[derive(Debug, Clone, clap::Args)]
#[command(args_conflicts_with_subcommands = true, args_override_self = true)]
pub struct GuardianArgs {
    /// Operator action instead of running the guardian.
    #[command(subcommand)]
    pub action: Option<GuardianAction>,

    /// Options of the running guardian (boxed: they are many, and the
    /// binary's command enum should stay small).
    #[command(flatten)]
    pub serve: Box<ServeArgs>,
}

/// Options of a running guardian.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address the HTTP API listens on.
    #[arg(
        long,
        env = "OBSCURA_GUARDIAN_LISTEN",
        default_value = "127.0.0.1:7500"
    )]
    pub listen: SocketAddr,

    /// Address the binary peer protocol listens on.
    #[arg(
        long,
        env = "OBSCURA_GUARDIAN_PEER_LISTEN",
        default_value = "127.0.0.1:7501"
    )]
    pub peer_listen: SocketAddr,

    /// Address of the management listener (`/metrics`, `/livez`, `/readyz`),
    /// e.g. 127.0.0.1:7502. Not started unless given; keep it off public networks.
    #[arg(long, env = "OBSCURA_GUARDIAN_MGMT_LISTEN")]
    pub mgmt_listen: Option<SocketAddr>,

    /// Log line format on stderr: `text` (human-readable) or `json` (one object per line).
    #[arg(
        long,
        env = "OBSCURA_GUARDIAN_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    pub log_format: LogFormat,

    /// Directory holding shares, secrets and the integrity key.
    #[arg(
        long,
        env = "OBSCURA_GUARDIAN_DATA_DIR",
        default_value = "./vault-data"
    )]
    pub data_dir: PathBuf,

    /// Peer-protocol addresses of the other guardians (HOST:PORT, comma separated).
    #[arg(long, env = "OBSCURA_GUARDIAN_PEERS", value_delimiter = ',', num_args = 0..)]
    pub peers: Vec<String>,

    /// Shamir threshold K reported by `/v1/vault/guardians`. Default: the
    /// ecosystem's read quorum for N = 1 + number of peers (max(2, N/3), 1 when alone).
    #[arg(long, env = "OBSCURA_GUARDIAN_THRESHOLD")]
    pub threshold: Option<u32>,

    /// Milliseconds between two heartbeats to each peer.
    #[arg(
        long,
        env = "OBSCURA_GUARDIAN_HEARTBEAT_INTERVAL_MS",
        default_value_t = 5000
    )]
    pub heartbeat_interval_ms: u64,

    /// Consecutive missed heartbeat acks after which a peer is dead (one miss = suspect).
    #[arg(long, env = "OBSCURA_GUARDIAN_DEAD_AFTER_MISSES", default_value_t = 3)]
    pub dead_after_misses: u32,

    /// Sustained requests per minute allowed per client IP on push/pull/secrets/auth (0 = no limit).
    #[arg(
        long,
        env = "OBSCURA_GUARDIAN_RATE_LIMIT_IP_PER_MIN",
        default_value_t = 60000
    )]
    pub rate_limit_ip_per_min: u32,

    /// Burst allowed per client IP above the sustained rate (also the `X-RateLimit-Limit` value).
    #[arg(
        long,
        env = "OBSCURA_GUARDIAN_RATE_LIMIT_IP_BURST",
        default_value_t = 1000
    )]
    pub rate_limit_ip_burst: u32,

    /// Sustained requests per minute allowed per identity on push/pull/secrets (0 = no limit).
    #[arg(
        long,
        env = "OBSCURA_GUARDIAN_RATE_LIMIT_IDENTITY_PER_MIN",
        default_value_t = 12000
    )]
    pub rate_limit_identity_per_min: u32,

    /// Burst allowed per identity above the sustained rate (also the `X-RateLimit-Limit` value).
    #[arg(
        long,
        env = "OBSCURA_GUARDIAN_RATE_LIMIT_IDENTITY_BURST",
        default_value_t = 500
    )]
    pub rate_limit_identity_burst: u32,

    /// Seconds a client may take to send a request's headers (also the keep-alive idle limit).
    #[arg(
        long,
        env = "OBSCURA_GUARDIAN_HEADER_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub header_timeout_secs: u64,

    /// Seconds a client may take to send a request's body.
    #[arg(long, env = "OBSCURA_GUARDIAN_BODY_TIMEOUT_SECS", default_value_t = 30)]
    pub body_timeout_secs: u64,

    /// Seconds a client may leave an answer unread (a blocked write) before its connection is closed.
    #[arg(
        long,
        env = "OBSCURA_GUARDIAN_WRITE_TIMEOUT_SECS",
        default_value_t = 30
    )]
    pub write_timeout_secs: u64,

    /// Seconds a peer connection may stay silent before it is closed.
    #[arg(
        long,
        env = "OBSCURA_GUARDIAN_PEER_IDLE_TIMEOUT_SECS",
        default_value_t = 60
    )]
    pub peer_idle_timeout_secs: u64,

    /// Maximum simultaneous HTTP connections; further ones wait in the accept queue.
    #[arg(long, env = "OBSCURA_GUARDIAN_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// Lifetime of an authentication challenge, in seconds.
    #[arg(
        long,
        env = "OBSCURA_GUARDIAN_CHALLENGE_TTL_SECS",
        default_value_t = 60
    )]
    pub challenge_ttl_secs: u64,

    /// Lifetime of a session token, in seconds.
    #[arg(
        long,
        env = "OBSCURA_GUARDIAN_SESSION_TTL_SECS",
        default_value_t = 3600
    )]
    pub session_ttl_secs: u64,

    /// Maximum number of named secrets per identity (V2).
    #[arg(long, env = "OBSCURA_GUARDIAN_MAX_SECRETS", default_value_t = 1000)]
    pub max_secrets: usize,

    /// MiB of memory for the cache of verified shares and secrets that
    /// answers repeated reads without touching the disk (0 = no cache).
    #[arg(long, env = "OBSCURA_GUARDIAN_RECORD_CACHE_MIB", default_value_t = 64)]
    pub record_cache_mib: u64,
}

/// Format of the log lines written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Operator actions of `obscura guardian`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum GuardianAction {
    /// Ask a guardian over the peer protocol whether it holds a share for an
    /// identity, and print its answer (has_share, SHA-256 commitment) as JSON.
    Verify(VerifyArgs),
}

/// `obscura guardian verify --peer HOST:PORT --identity HEX`
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// Peer-protocol address of the guardian to ask.
    #[arg(long)]
    pub peer: String,
    /// The identity (64 hex characters).
    #[arg(long)]
    pub identity: String,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 5)]
    pub timeout_secs: u64,
}
