//! The relay backends a black-box test can run against, and the real
//! services behind them.
//!
//! [`Backend::Sqlite`] is the embedded default. [`Backend::Postgres`] is the
//! clustered stack: PostgreSQL (its own schema per test), Redis (its own key
//! prefix per test) and an S3 server (`s3s-fs`, its own process and
//! directory per test). A test picks up the backend it runs under through
//! [`Backend::current`], so one test body serves every backend (see
//! `#[backend_test]`).
//!
//! Where the services come from: `OBSCURA_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), `OBSCURA_TEST_REDIS_URL`
//! (default `redis://127.0.0.1:6379`) and `s3s-fs` on the `PATH` or in
//! `~/.cargo/bin`. Missing services make the test skip with a printed
//! reason, or fail when `OBSCURA_REQUIRE_BACKENDS=1` (CI), so CI can never
//! pass by skipping.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub use obscura_testkit_macros::backend_test;

tokio::task_local! {
    static CURRENT: Backend;
}

/// Which backend the servers of the running test use.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    Postgres(Services),
}

/// Where the shared services are (no per-test state).
#[derive(Debug, Clone)]
pub struct Services {
    pub database_url: String,
    pub redis_url: String,
    pub s3s_fs: PathBuf,
}

impl Backend {
    /// The backend of the running test (SQLite outside `#[backend_test]`).
    pub fn current() -> Backend {
        CURRENT.try_with(Clone::clone).unwrap_or(Backend::Sqlite)
    }

    /// Runs `test` with this backend as [`Backend::current`].
    pub async fn run<F: Future>(self, test: F) -> F::Output {
        CURRENT.scope(self, test).await
    }

    /// The PostgreSQL + Redis + S3 stack, if its services are reachable.
    /// Otherwise prints why `test` is skipped and returns `None`, or panics
    /// when `OBSCURA_REQUIRE_BACKENDS=1`.
    pub fn postgres(test: &str) -> Option<Backend> {
        match Services::discover() {
            Ok(services) => Some(Backend::Postgres(services)),
            Err(reason) if require_backends() => {
                panic!("{test}: backend services required (OBSCURA_REQUIRE_BACKENDS=1): {reason:#}")
            }
            Err(reason) => {
                // Straight to stderr: the test harness captures eprintln!
                // of passing tests, and a skip must be visible.
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {reason:#}");
                None
            }
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }
}

/// True in CI: backend tests must run, not skip.
pub fn require_backends() -> bool {
    std::env::var("OBSCURA_REQUIRE_BACKENDS").is_ok_and(|v| v == "1")
}

impl Services {
    pub fn discover() -> anyhow::Result<Services> {
        let database_url = std::env::var("OBSCURA_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let redis_url = std::env::var("OBSCURA_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        reachable("PostgreSQL", &database_url)?;
        reachable("Redis", &redis_url)?;
        let s3s_fs = find_s3s_fs().context(
            "s3s-fs not found (cargo install s3s-fs --version 0.14.1 --features binary --locked)",
        )?;
        Ok(Services {
            database_url,
            redis_url,
            s3s_fs,
        })
    }

    /// Fresh, isolated resources for one deployment (one or several relays).
    pub async fn deployment(&self) -> anyhow::Result<Deployment> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let s3 = S3Server::start(&self.s3s_fs).await?;
        Ok(Deployment {
            schema: format!("t_{}", &id[..16]),
            redis_prefix: format!("obscura-test-{}", &id[..16]),
            bucket: format!("b-{}", &id[..16]),
            services: self.clone(),
            s3: Arc::new(s3),
        })
    }
}

/// A PostgreSQL schema, a Redis key prefix and an S3 server of its own;
/// every relay started with [`Deployment::relay_args`] shares them, like the
/// nodes of one cluster. The schema is dropped when the last clone goes.
#[derive(Clone)]
pub struct Deployment {
    pub schema: String,
    pub redis_prefix: String,
    pub bucket: String,
    pub services: Services,
    pub s3: Arc<S3Server>,
}

impl Deployment {
    /// The `obscura relay` flags that put a node on this deployment.
    pub fn relay_args(&self) -> Vec<String> {
        [
            "--database-url",
            &self.services.database_url,
            "--database-schema",
            &self.schema,
            "--database-max-connections",
            "4",
            "--redis-url",
            &self.services.redis_url,
            "--redis-key-prefix",
            &self.redis_prefix,
            "--storage",
            &format!("s3://{}", self.bucket),
            "--s3-endpoint",
            &format!("http://{}", self.s3.addr),
            "--s3-region",
            "us-east-1",
            "--s3-access-key-id",
            S3Server::ACCESS_KEY,
            "--s3-secret-access-key",
            S3Server::SECRET_KEY,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// Files stored under the bucket (what the S3 server keeps on disk).
    pub fn stored_objects(&self) -> usize {
        count_files(&self.s3.root.path().join(&self.bucket))
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if Arc::strong_count(&self.s3) > 1 {
            return;
        }
        // Best effort: leftovers are harmless (CI drops t_* schemas first;
        // rate-limit keys expire by themselves).
        forget_redis_key(
            &self.services.redis_url,
            &format!("{}:generation", self.redis_prefix),
        );
        let url = self.services.database_url.clone();
        let sql = format!(
            "SET lock_timeout = '2s'; DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            self.schema
        );
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                use sqlx::{Connection, Executor};
                let mut conn = sqlx::PgConnection::connect(&url).await?;
                conn.execute(sql.as_str()).await?;
                conn.close().await
            })
            .map_err(anyhow::Error::from)
        })
        .join();
    }
}

/// `DEL key` as an inline command on a plain socket (no client needed).
fn forget_redis_key(url: &str, key: &str) {
    use std::io::{Read, Write};
    let Ok(addr) = socket_addr(url) else {
        return;
    };
    if let Ok(mut conn) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
        let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
        let _ = conn.write_all(format!("DEL {key}\r\n").as_bytes());
        let _ = conn.read(&mut [0u8; 64]);
    }
}

fn count_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() { count_files(&p) } else { 1 }
        })
        .sum()
}

/// An `s3s-fs` process (an S3 server over a local directory) on an
/// ephemeral port, with its own directory and credentials; killed on drop.
pub struct S3Server {
    pub addr: SocketAddr,
    pub root: tempfile::TempDir,
    child: std::sync::Mutex<Child>,
}

impl S3Server {
    pub const ACCESS_KEY: &'static str = "obscura-test";
    pub const SECRET_KEY: &'static str = "obscura-test-secret";

    pub async fn start(bin: &std::path::Path) -> anyhow::Result<S3Server> {
        let root = crate::data_dir();
        let mut child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(["--access-key", Self::ACCESS_KEY])
            .args(["--secret-key", Self::SECRET_KEY])
            .arg(root.path())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if let Some((_, url)) = line.split_once("server is running at http://") {
                    return Ok(url.trim().parse::<SocketAddr>()?);
                }
            }
            bail!("s3s-fs exited before it was ready")
        })
        .await
        .context("s3s-fs did not report its address within 30 s")??;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(S3Server {
            addr,
            root,
            child: std::sync::Mutex::new(child),
        })
    }

    /// SIGKILL: the object store becomes unreachable (outage tests).
    pub fn kill(&self) {
        if let Ok(mut child) = self.child.lock() {
            let _ = child.start_kill();
        }
    }
}

/// The `host:port` of a service URL, resolved.
fn socket_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    host_port
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {host_port}"))?
        .next()
        .with_context(|| format!("no address for {host_port}"))
}

/// A TCP connection to the URL's host:port succeeds within a second.
fn reachable(what: &str, url: &str) -> anyhow::Result<()> {
    let addr = socket_addr(url).with_context(|| what.to_string())?;
    TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        .with_context(|| format!("{what} not reachable at {addr}"))?;
    Ok(())
}

fn find_s3s_fs() -> Option<PathBuf> {
    let exe = "s3s-fs";
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(exe)).find(|p| p.is_file())
}
