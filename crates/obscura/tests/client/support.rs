//! Spawning servers and running the CLI.

use std::path::Path;
use std::process::{Output, Stdio};

use obscura_testkit::Server;
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;

pub const BIN: &str = env!("CARGO_BIN_EXE_obscura");
pub const PASSWORD: &str = "correct horse battery staple";

/// A relay on fresh ports and a fresh data directory, with cheap password
/// hashing and rate limits high enough for tests.
pub async fn relay() -> (Server, TempDir) {
    relay_with(&[]).await
}

/// [`relay`] with extra command-line flags (`--listen` among them replaces
/// the default ephemeral port).
pub async fn relay_with(extra: &[&str]) -> (Server, TempDir) {
    let dir = obscura_testkit::data_dir();
    let data = dir.path().to_string_lossy().into_owned();
    let mut args = vec!["relay"];
    if !extra.contains(&"--listen") {
        args.extend(["--listen", "127.0.0.1:0"]);
    }
    args.extend([
        "--mgmt-listen",
        "127.0.0.1:0",
        "--data-dir",
        &data,
        "--argon2-memory-kib",
        "1024",
        "--argon2-iterations",
        "1",
        "--auth-rate-limit-per-sec",
        "1000",
        "--auth-rate-limit-burst",
        "1000",
        "--ip-rate-limit-per-sec",
        "1000",
        "--ip-rate-limit-burst",
        "1000",
        "--rate-limit-per-sec",
        "1000",
        "--rate-limit-burst",
        "1000",
    ]);
    args.extend_from_slice(extra);
    let server = Server::start(BIN, &args, &[], &["http", "mgmt"])
        .await
        .expect("relay starts");
    (server, dir)
}

/// A guardian with its own data directory.
pub struct Guardian {
    pub server: Server,
    pub dir: TempDir,
}

impl Guardian {
    pub fn url(&self) -> String {
        self.server.url("http")
    }
}

pub async fn guardians(n: usize) -> Vec<Guardian> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let dir = obscura_testkit::data_dir();
        let data = dir.path().to_string_lossy().into_owned();
        let server = Server::start(
            BIN,
            &[
                "guardian",
                "--listen",
                "127.0.0.1:0",
                "--peer-listen",
                "127.0.0.1:0",
                "--data-dir",
                &data,
            ],
            &[],
            &["http", "peer"],
        )
        .await
        .expect("guardian starts");
        out.push(Guardian { server, dir });
    }
    out
}

pub fn guardian_list(guardians: &[Guardian]) -> String {
    guardians
        .iter()
        .map(Guardian::url)
        .collect::<Vec<_>>()
        .join(",")
}

/// A client profile directory plus the relay it talks to.
pub struct Client {
    pub profile: TempDir,
    pub relay: String,
}

impl Client {
    pub fn new(relay: &str) -> Self {
        Self {
            profile: obscura_testkit::data_dir(),
            relay: relay.to_string(),
        }
    }

    /// Runs `obscura <args…>` with this profile, feeding `stdin`.
    pub async fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        run_cli(self.profile.path(), &self.relay, args, stdin).await
    }

    /// Like [`run`], but the command must succeed; returns stdout.
    pub async fn ok(&self, args: &[&str], stdin: &[u8]) -> String {
        let out = self.run(args, stdin).await;
        assert!(
            out.status.success(),
            "obscura {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }
}

pub async fn run_cli(profile: &Path, relay: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = tokio::process::Command::new(BIN)
        .args(args)
        .env("OBSCURA_PROFILE", profile)
        .env("OBSCURA_RELAY", relay)
        .env("OBSCURA_PASSWORD", PASSWORD)
        .env("OBSCURA_LOG", "warn")
        .env_remove("OBSCURA_GUARDIANS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn obscura");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin).await.expect("write stdin");
    drop(input);
    tokio::time::timeout(
        std::time::Duration::from_secs(120),
        child.wait_with_output(),
    )
    .await
    .expect("the CLI finishes within 120 s")
    .expect("CLI output")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
