//! The relay's resolved configuration: every option in one place, defaults
//! applied, values checked once at start-up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use crate::cli::RelayArgs;
use crate::push::PushConfig;
use crate::push::apns::ApnsConfig;
use crate::push::fcm::FcmConfig;

/// OWASP's minimum argon2id parameters (m = 19 MiB, t = 2, p = 1).
pub const OWASP_ARGON2_MEMORY_KIB: u32 = 19_456;
pub const OWASP_ARGON2_ITERATIONS: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid value for {option}: {reason}")]
    Invalid {
        option: &'static str,
        reason: String,
    },
}

/// A token bucket: `per_sec` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    pub per_sec: f64,
    pub burst: u32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimits {
    /// Per authenticated user, on every authenticated route.
    pub user: Quota,
    /// Per client IP, on unauthenticated routes (key bundles, gateway
    /// handshake, token refresh).
    pub ip: Quota,
    /// Per client IP, on register / login.
    pub auth: Quota,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Argon2Params {
    pub fn below_owasp(&self) -> bool {
        self.memory_kib < OWASP_ARGON2_MEMORY_KIB || self.iterations < OWASP_ARGON2_ITERATIONS
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub mgmt_listen: SocketAddr,
    pub data_dir: PathBuf,
    pub jwt_secret: Option<String>,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// Reuse of a rotated refresh token this soon after its rotation is
    /// answered 401 without revoking its family.
    pub refresh_reuse_grace: Duration,
    pub argon2: Argon2Params,
    pub max_message_bytes: u64,
    pub storage_max_size_bytes: u64,
    pub attachment_ttl: Duration,
    pub message_ttl: Duration,
    pub cleanup_interval: Duration,
    pub prekey_min_threshold: u32,
    pub max_one_time_prekeys: u32,
    /// Shortest password accepted at registration (characters, ≥ 1).
    pub min_password_chars: usize,
    pub rate_limits: RateLimits,
    /// Each 64 KiB of a request body (or all of a smaller one) must arrive within this.
    pub body_read_timeout: Duration,
    /// An idle keep-alive connection is closed after this.
    pub keep_alive_timeout: Duration,
    pub trusted_proxies: Vec<IpNet>,
    /// Browser origins allowed to call the API (CORS); empty: none.
    pub cors: CorsOrigins,
    /// Where state, fan-out, shared limits and blobs live (SQLite + local by default).
    pub backends: BackendConfig,
    pub push: PushConfig,
}

impl Config {
    /// Layers the TOML file (if any) under the flags/environment and applies defaults.
    pub fn load(args: RelayArgs) -> Result<Self, ConfigError> {
        let args = match &args.config {
            Some(path) => {
                let file = read_toml(path)?;
                args.or(file)
            }
            None => args,
        };
        Self::resolve(args)
    }

    /// Applies defaults and validates.
    pub fn resolve(a: RelayArgs) -> Result<Self, ConfigError> {
        let secs =
            |v: Option<u64>, default: u64, option: &'static str| -> Result<Duration, ConfigError> {
                let v = v.unwrap_or(default);
                if v == 0 {
                    return Err(ConfigError::Invalid {
                        option,
                        reason: "must be at least 1".into(),
                    });
                }
                Ok(Duration::from_secs(v))
            };
        let quota = |per_sec: Option<f64>,
                     d_rate: f64,
                     burst: Option<u32>,
                     d_burst: u32,
                     option: &'static str| {
            let per_sec = per_sec.unwrap_or(d_rate);
            let burst = burst.unwrap_or(d_burst);
            if !(per_sec.is_finite() && per_sec > 0.0 && per_sec <= 1e9) {
                return Err(ConfigError::Invalid {
                    option,
                    reason: "rate must be a positive number".into(),
                });
            }
            if burst == 0 {
                return Err(ConfigError::Invalid {
                    option,
                    reason: "burst must be at least 1".into(),
                });
            }
            Ok(Quota { per_sec, burst })
        };
        let argon2 = Argon2Params {
            memory_kib: a.argon2_memory_kib.unwrap_or(OWASP_ARGON2_MEMORY_KIB),
            iterations: a.argon2_iterations.unwrap_or(OWASP_ARGON2_ITERATIONS),
            parallelism: a.argon2_parallelism.unwrap_or(1),
        };
        // Let argon2 itself judge the combination (e.g. m >= 8 * p).
        argon2::Params::new(
            argon2.memory_kib,
            argon2.iterations,
            argon2.parallelism,
            None,
        )
        .map_err(|e| ConfigError::Invalid {
            option: "argon2-*",
            reason: e.to_string(),
        })?;
        let push = resolve_push(&a)?;
        let max_message_bytes = a.max_message_bytes.unwrap_or(1024 * 1024);
        if max_message_bytes == 0 {
            return Err(ConfigError::Invalid {
                option: "max-message-bytes",
                reason: "must be at least 1".into(),
            });
        }
        let storage_max_size_bytes = a.storage_max_size_bytes.unwrap_or(100 * 1024 * 1024);
        if storage_max_size_bytes == 0 {
            return Err(ConfigError::Invalid {
                option: "storage-max-size-bytes",
                reason: "must be at least 1".into(),
            });
        }
        let max_one_time_prekeys = a.max_one_time_prekeys.unwrap_or(100);
        if max_one_time_prekeys == 0 {
            return Err(ConfigError::Invalid {
                option: "max-one-time-prekeys",
                reason: "must be at least 1".into(),
            });
        }
        let min_password_chars = a.min_password_chars.unwrap_or(1);
        if min_password_chars == 0 {
            return Err(ConfigError::Invalid {
                option: "min-password-chars",
                reason: "must be at least 1".into(),
            });
        }
        let backends = BackendConfig::resolve(&a)?;
        Ok(Config {
            listen: a
                .listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 3000))),
            mgmt_listen: a
                .mgmt_listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9090))),
            data_dir: a.data_dir.unwrap_or_else(|| PathBuf::from("./data")),
            jwt_secret: a.jwt_secret.filter(|s| !s.is_empty()),
            access_token_ttl: secs(a.access_token_ttl_secs, 900, "access-token-ttl-secs")?,
            refresh_token_ttl: secs(
                a.refresh_token_ttl_secs,
                30 * 86_400,
                "refresh-token-ttl-secs",
            )?,
            refresh_reuse_grace: Duration::from_secs(a.refresh_reuse_grace_secs.unwrap_or(60)),
            argon2,
            max_message_bytes,
            storage_max_size_bytes,
            attachment_ttl: secs(a.attachment_ttl_secs, 30 * 86_400, "attachment-ttl-secs")?,
            message_ttl: secs(a.message_ttl_secs, 30 * 86_400, "message-ttl-secs")?,
            cleanup_interval: secs(a.cleanup_interval_secs, 60, "cleanup-interval-secs")?,
            prekey_min_threshold: a.prekey_min_threshold.unwrap_or(10),
            max_one_time_prekeys,
            min_password_chars: min_password_chars as usize,
            rate_limits: RateLimits {
                user: quota(
                    a.rate_limit_per_sec,
                    50.0,
                    a.rate_limit_burst,
                    500,
                    "rate-limit-*",
                )?,
                ip: quota(
                    a.ip_rate_limit_per_sec,
                    20.0,
                    a.ip_rate_limit_burst,
                    200,
                    "ip-rate-limit-*",
                )?,
                auth: quota(
                    a.auth_rate_limit_per_sec,
                    5.0,
                    a.auth_rate_limit_burst,
                    50,
                    "auth-rate-limit-*",
                )?,
            },
            body_read_timeout: secs(a.body_read_timeout_secs, 30, "body-read-timeout-secs")?,
            keep_alive_timeout: secs(a.keep_alive_timeout_secs, 75, "keep-alive-timeout-secs")?,
            trusted_proxies: parse_trusted_proxies(a.trusted_proxies.as_deref().unwrap_or(""))?,
            cors: parse_cors_origins(a.cors_allowed_origins.as_deref().unwrap_or(""))?,
            backends,
            push,
        })
    }
}

/// Wake-up settings; a provider is enabled by its credentials.
fn resolve_push(a: &RelayArgs) -> Result<PushConfig, ConfigError> {
    let defaults = PushConfig::default();
    let invalid = |option: &'static str, reason: &str| ConfigError::Invalid {
        option,
        reason: reason.into(),
    };
    let url = |v: &Option<String>, default: &str, option: &'static str| {
        let v = v.clone().unwrap_or_else(|| default.to_owned());
        match url::Url::parse(&v) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(v),
            _ => Err(invalid(option, "must be an http(s) URL")),
        }
    };
    let throttle_secs = a.push_throttle_secs.unwrap_or(defaults.throttle.as_secs());
    let max_attempts = a.push_max_attempts.unwrap_or(defaults.max_attempts);
    if max_attempts == 0 {
        return Err(invalid("push-max-attempts", "must be at least 1"));
    }
    let fcm = match &a.fcm_service_account {
        None => None,
        Some(path) => Some(FcmConfig {
            service_account: path.clone(),
            endpoint: url(
                &a.fcm_endpoint,
                crate::push::fcm::DEFAULT_ENDPOINT,
                "fcm-endpoint",
            )?,
            token_endpoint: match &a.fcm_token_endpoint {
                Some(_) => Some(url(&a.fcm_token_endpoint, "", "fcm-token-endpoint")?),
                None => None,
            },
        }),
    };
    let apns = match &a.apns_key_file {
        None => None,
        Some(path) => {
            let required = |v: &Option<String>, option: &'static str| {
                v.clone()
                    .filter(|s| !s.trim().is_empty())
                    .ok_or_else(|| invalid(option, "required with --apns-key-file"))
            };
            Some(ApnsConfig {
                key_file: path.clone(),
                key_id: required(&a.apns_key_id, "apns-key-id")?,
                team_id: required(&a.apns_team_id, "apns-team-id")?,
                topic: required(&a.apns_topic, "apns-topic")?,
                endpoint: url(
                    &a.apns_endpoint,
                    crate::push::apns::DEFAULT_ENDPOINT,
                    "apns-endpoint",
                )?,
            })
        }
    };
    Ok(PushConfig {
        delay: a
            .push_delay_ms
            .map(Duration::from_millis)
            .unwrap_or(defaults.delay),
        throttle: Duration::from_secs(throttle_secs),
        max_attempts,
        fcm,
        apns,
        unifiedpush_allow_private: a.unifiedpush_allow_private.unwrap_or(false),
    })
}

fn read_toml(path: &Path) -> Result<RelayArgs, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    // Accept `snake_case` keys as well as the flag spelling.
    let table: toml::Table = toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.into(),
        source,
    })?;
    let table: toml::Table = table
        .into_iter()
        .map(|(k, v)| (k.replace('_', "-"), v))
        .collect();
    toml::Value::Table(table)
        .try_into()
        .map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })
}

/// Parses `"10.0.0.1, 192.168.0.0/16"`; bare addresses become /32 or /128.
pub fn parse_trusted_proxies(list: &str) -> Result<Vec<IpNet>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| ConfigError::Invalid {
                    option: "trusted-proxies",
                    reason: format!("not an IP or CIDR: {s}"),
                })
        })
        .collect()
}

/// Which browser origins may call the API (`--cors-allowed-origins`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CorsOrigins {
    /// No CORS headers at all (browsers allow same-origin pages only).
    #[default]
    None,
    /// `*`: any origin (tokens travel in headers, never in cookies).
    Any,
    /// Exactly these, e.g. `https://app.example`.
    List(Vec<String>),
}

pub fn parse_cors_origins(list: &str) -> Result<CorsOrigins, ConfigError> {
    let origins: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if origins.is_empty() {
        return Ok(CorsOrigins::None);
    }
    if origins == ["*"] {
        return Ok(CorsOrigins::Any);
    }
    origins
        .into_iter()
        .map(|o| {
            let scheme_ok = o.starts_with("https://") || o.starts_with("http://");
            if !scheme_ok
                || o.ends_with('/')
                || o.contains('*')
                || o.chars().any(char::is_whitespace)
            {
                return Err(ConfigError::Invalid {
                    option: "cors-allowed-origins",
                    reason: format!("not an origin like https://app.example (or a lone *): {o}"),
                });
            }
            Ok(o.to_string())
        })
        .collect::<Result<_, _>>()
        .map(CorsOrigins::List)
}

/// The database behind `store::Store`.
#[derive(Debug, Clone)]
pub enum Database {
    /// `<data-dir>/obscura.db` (the default).
    Sqlite,
    Postgres(crate::store::PgSettings),
}

/// Where attachment bytes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// `<data-dir>/attachments` (the default).
    Local,
    S3(S3Settings),
}

#[derive(Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub bucket: String,
    /// Key prefix inside the bucket ("" = bucket root).
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// What the shared rate limiter does while Redis does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisFailure {
    /// Fall back to this node's in-memory buckets (limits stay, per node).
    Local,
    /// Allow the request.
    Open,
    /// Refuse the request (429).
    Closed,
}

#[derive(Clone)]
pub struct RedisSettings {
    pub url: String,
    /// Start-up retries and reconnection pauses.
    pub backoff: crate::backoff::Backoff,
    pub key_prefix: String,
    pub timeout: Duration,
    pub on_failure: RedisFailure,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .field("on_failure", &self.on_failure)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct BackendConfig {
    pub database: Database,
    /// `None`: one node, in-process fan-out and limits.
    pub redis: Option<RedisSettings>,
    pub storage: Storage,
    /// Live sessions re-read the store this often (a lost notification only delays).
    pub delivery_poll: Duration,
    /// How unreachable services are retried (start-up, reconnects).
    pub backoff: crate::backoff::Backoff,
}

impl BackendConfig {
    fn resolve(a: &RelayArgs) -> Result<Self, ConfigError> {
        let invalid =
            |option: &'static str, reason: String| ConfigError::Invalid { option, reason };
        let positive =
            |v: Option<u64>, default: u64, option: &'static str| match v.unwrap_or(default) {
                0 => Err(invalid(option, "must be at least 1".into())),
                v => Ok(v),
            };
        let backoff = crate::backoff::Backoff::new(
            Duration::from_millis(positive(a.backoff_max_ms, 2000, "backoff-max-ms")?),
            Duration::from_secs(positive(
                a.connect_timeout_secs,
                30,
                "connect-timeout-secs",
            )?),
        );
        let database = match a.database_url.as_deref().filter(|u| !u.is_empty()) {
            None => Database::Sqlite,
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                let schema = a.database_schema.clone().filter(|s| !s.is_empty());
                if let Some(schema) = &schema
                    && !crate::store::postgres::valid_schema_name(schema)
                {
                    return Err(invalid(
                        "database-schema",
                        "use lower-case letters, digits and _ (at most 63)".into(),
                    ));
                }
                let max_connections = a.database_max_connections.unwrap_or(16);
                if max_connections == 0 {
                    return Err(invalid(
                        "database-max-connections",
                        "must be at least 1".into(),
                    ));
                }
                Database::Postgres(crate::store::PgSettings {
                    url: url.to_string(),
                    schema,
                    max_connections,
                    acquire_timeout: Duration::from_secs(positive(
                        a.database_acquire_timeout_secs,
                        10,
                        "database-acquire-timeout-secs",
                    )?),
                    backoff,
                })
            }
            Some(_) => {
                return Err(invalid(
                    "database-url",
                    "only postgres:// URLs are supported (omit it for SQLite)".into(),
                ));
            }
        };
        let redis = match a.redis_url.as_deref().filter(|u| !u.is_empty()) {
            None => None,
            Some(url) => {
                // TLS to Redis is not built in: keep Redis on a private network.
                if !url.starts_with("redis://") {
                    return Err(invalid(
                        "redis-url",
                        "expected redis://host:port[/db]".into(),
                    ));
                }
                let on_failure = match a.rate_limit_redis_failure.as_deref().unwrap_or("local") {
                    "local" => RedisFailure::Local,
                    "open" => RedisFailure::Open,
                    "closed" => RedisFailure::Closed,
                    other => {
                        return Err(invalid(
                            "rate-limit-redis-failure",
                            format!("{other:?}: expected local, open or closed"),
                        ));
                    }
                };
                Some(RedisSettings {
                    url: url.to_string(),
                    backoff,
                    key_prefix: a
                        .redis_key_prefix
                        .clone()
                        .unwrap_or_else(|| "obscura".into()),
                    timeout: Duration::from_millis(positive(
                        a.redis_timeout_ms,
                        1000,
                        "redis-timeout-ms",
                    )?),
                    on_failure,
                })
            }
        };
        let storage = match a.storage.as_deref().unwrap_or("local") {
            "" | "local" => Storage::Local,
            url => {
                let Some(rest) = url.strip_prefix("s3://") else {
                    return Err(invalid(
                        "storage",
                        "expected local or s3://bucket[/prefix]".into(),
                    ));
                };
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(invalid("storage", "s3:// needs a bucket name".into()));
                }
                let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
                Storage::S3(S3Settings {
                    bucket: bucket.to_string(),
                    prefix: prefix.trim_matches('/').to_string(),
                    endpoint: a.s3_endpoint.clone().filter(|e| !e.is_empty()),
                    region: a
                        .s3_region
                        .clone()
                        .or_else(|| env("AWS_REGION"))
                        .unwrap_or_else(|| "us-east-1".into()),
                    access_key_id: a
                        .s3_access_key_id
                        .clone()
                        .or_else(|| env("AWS_ACCESS_KEY_ID")),
                    secret_access_key: a
                        .s3_secret_access_key
                        .clone()
                        .or_else(|| env("AWS_SECRET_ACCESS_KEY")),
                })
            }
        };
        Ok(BackendConfig {
            database,
            redis,
            storage,
            delivery_poll: Duration::from_secs(positive(
                a.delivery_poll_secs,
                5,
                "delivery-poll-secs",
            )?),
            backoff,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documentation() {
        let c = Config::resolve(RelayArgs::default()).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:3000");
        assert_eq!(c.mgmt_listen.to_string(), "127.0.0.1:9090");
        assert_eq!(c.access_token_ttl, Duration::from_secs(900));
        assert_eq!(c.max_message_bytes, 1_048_576);
        assert_eq!(c.storage_max_size_bytes, 104_857_600);
        assert_eq!(c.body_read_timeout, Duration::from_secs(30));
        assert_eq!(c.keep_alive_timeout, Duration::from_secs(75));
        assert_eq!(
            c.argon2,
            Argon2Params {
                memory_kib: 19_456,
                iterations: 2,
                parallelism: 1
            }
        );
        assert!(!c.argon2.below_owasp());
        assert_eq!(
            c.rate_limits.user,
            Quota {
                per_sec: 50.0,
                burst: 500
            }
        );
        assert_eq!(
            c.rate_limits.ip,
            Quota {
                per_sec: 20.0,
                burst: 200
            }
        );
        assert_eq!(
            c.rate_limits.auth,
            Quota {
                per_sec: 5.0,
                burst: 50
            }
        );
        assert!(c.trusted_proxies.is_empty());
    }

    #[test]
    fn toml_is_below_flags_and_accepts_both_key_spellings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.toml");
        std::fs::write(
            &path,
            "data-dir = \"/srv/obscura\"\nmessage_ttl_secs = 60\nlisten = \"0.0.0.0:8080\"\n",
        )
        .unwrap();
        let args = RelayArgs {
            config: Some(path),
            listen: Some("127.0.0.1:1".parse().unwrap()),
            ..Default::default()
        };
        let c = Config::load(args).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:1");
        assert_eq!(c.data_dir, PathBuf::from("/srv/obscura"));
        assert_eq!(c.message_ttl, Duration::from_secs(60));
    }

    #[test]
    fn unknown_toml_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.toml");
        std::fs::write(&path, "listn = \"0.0.0.0:8080\"\n").unwrap();
        assert!(
            Config::load(RelayArgs {
                config: Some(path),
                ..Default::default()
            })
            .is_err()
        );
    }

    #[test]
    fn cors_origins_parse() {
        assert_eq!(parse_cors_origins(" ").unwrap(), CorsOrigins::None);
        assert_eq!(parse_cors_origins("*").unwrap(), CorsOrigins::Any);
        assert_eq!(
            parse_cors_origins("https://a.example, http://localhost:5173").unwrap(),
            CorsOrigins::List(vec![
                "https://a.example".into(),
                "http://localhost:5173".into()
            ])
        );
        for bad in [
            "a.example",
            "https://a.example/",
            "https://*.example",
            "*,https://a.example",
        ] {
            assert!(parse_cors_origins(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn trusted_proxies_parse() {
        let nets = parse_trusted_proxies(" 10.0.0.1, 192.168.0.0/16 ,::1").unwrap();
        assert_eq!(nets.len(), 3);
        assert!(nets[0].contains(&"10.0.0.1".parse::<std::net::IpAddr>().unwrap()));
        assert!(parse_trusted_proxies("nonsense").is_err());
    }

    #[test]
    fn backends_default_to_embedded_and_parse_urls() {
        let c = Config::resolve(RelayArgs::default()).unwrap();
        assert!(matches!(c.backends.database, Database::Sqlite));
        assert!(c.backends.redis.is_none());
        assert_eq!(c.backends.storage, Storage::Local);
        let c = Config::resolve(RelayArgs {
            database_url: Some("postgres://db/obscura".into()),
            database_schema: Some("relay_a".into()),
            redis_url: Some("redis://127.0.0.1:6379".into()),
            rate_limit_redis_failure: Some("closed".into()),
            storage: Some("s3://attachments/relay/".into()),
            s3_endpoint: Some("http://127.0.0.1:9000".into()),
            ..Default::default()
        })
        .unwrap();
        let Database::Postgres(pg) = &c.backends.database else {
            panic!("postgres expected")
        };
        assert_eq!(pg.schema.as_deref(), Some("relay_a"));
        assert_eq!(c.backends.redis.unwrap().on_failure, RedisFailure::Closed);
        let Storage::S3(s3) = &c.backends.storage else {
            panic!("s3 expected")
        };
        assert_eq!(
            (s3.bucket.as_str(), s3.prefix.as_str()),
            ("attachments", "relay")
        );
        for bad in [
            RelayArgs {
                database_url: Some("mysql://x".into()),
                ..Default::default()
            },
            RelayArgs {
                database_url: Some("postgres://x".into()),
                database_schema: Some("Robert'); DROP".into()),
                ..Default::default()
            },
            RelayArgs {
                redis_url: Some("redis://x".into()),
                rate_limit_redis_failure: Some("maybe".into()),
                ..Default::default()
            },
            RelayArgs {
                storage: Some("s3://".into()),
                ..Default::default()
            },
        ] {
            assert!(Config::resolve(bad).is_err());
        }
    }

    #[test]
    fn zero_values_are_rejected() {
        let args = RelayArgs {
            rate_limit_burst: Some(0),
            ..Default::default()
        };
        assert!(Config::resolve(args).is_err());
        let args = RelayArgs {
            message_ttl_secs: Some(0),
            ..Default::default()
        };
        assert!(Config::resolve(args).is_err());
    }
}
