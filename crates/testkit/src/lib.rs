//! Spawns real Obscura servers (child processes of the `obscura` binary) for
//! black-box tests, and finds the addresses they bound.
//!
//! Contract with the servers: after binding each listener a server prints one
//! line `listening <name> <addr>` to **stdout** (for example
//! `listening http 127.0.0.1:41234`). Logs go to stderr. Tests pass
//! `127.0.0.1:0` for every listen address so ports never collide.

pub mod backends;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running server process. Killed (SIGKILL) when dropped.
pub struct Server {
    child: Child,
    addrs: HashMap<String, SocketAddr>,
    bin: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    wait_for: Vec<String>,
}

impl Server {
    /// Starts `bin args…` and waits until it printed a `listening` line for
    /// every name in `wait_for`.
    pub async fn start(
        bin: impl AsRef<Path>,
        args: &[&str],
        envs: &[(&str, &str)],
        wait_for: &[&str],
    ) -> anyhow::Result<Self> {
        let bin = bin.as_ref().to_path_buf();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let envs: Vec<(String, String)> = envs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let wait_for: Vec<String> = wait_for.iter().map(|s| s.to_string()).collect();
        let (child, addrs) = spawn(&bin, &args, &envs, &wait_for).await?;
        Ok(Self {
            child,
            addrs,
            bin,
            args,
            envs,
            wait_for,
        })
    }

    /// The address bound for listener `name` (e.g. `http`, `mgmt`, `peer`).
    pub fn addr(&self, name: &str) -> SocketAddr {
        *self
            .addrs
            .get(name)
            .unwrap_or_else(|| panic!("no listener named {name}"))
    }

    /// `http://<addr of name>`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}", self.addr(name))
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("child still running")
    }

    /// SIGKILL, no chance to flush anything: what a power cut looks like to the process.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// SIGTERM and wait for a clean exit (graceful shutdown).
    pub async fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let pid = self.pid();
        // `kill(1)` rather than libc: `unsafe` is forbidden in this workspace.
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
        Ok(tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await??)
    }

    /// Kills the process and starts it again with the same arguments (the
    /// same data directory), on fresh ports unless the arguments fix them.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill().await;
        let (child, addrs) = spawn(&self.bin, &self.args, &self.envs, &self.wait_for).await?;
        self.child = child;
        self.addrs = addrs;
        Ok(())
    }

    /// Peak resident set size of the process (VmHWM), in bytes.
    pub fn peak_rss_bytes(&self) -> anyhow::Result<u64> {
        proc_status_kib(self.pid(), "VmHWM:").map(|kib| kib * 1024)
    }

    /// Current resident set size of the process (VmRSS), in bytes.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        proc_status_kib(self.pid(), "VmRSS:").map(|kib| kib * 1024)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn proc_status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .context("field not in /proc status")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("malformed /proc status")?
        .parse()?)
}

async fn spawn(
    bin: &Path,
    args: &[String],
    envs: &[(String, String)],
    wait_for: &[String],
) -> anyhow::Result<(Child, HashMap<String, SocketAddr>)> {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .env(
            "OBSCURA_LOG",
            std::env::var("OBSCURA_LOG").unwrap_or_else(|_| "error".into()),
        );
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("spawning {}", bin.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut addrs = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !wait_for.iter().all(|n| addrs.contains_key(n)) {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .context("server did not report its listeners within 60 s")??;
        let Some(line) = line else {
            let status = child.wait().await?;
            bail!("server exited before it was ready: {status}");
        };
        let mut parts = line.split_whitespace();
        if let (Some("listening"), Some(name), Some(addr)) =
            (parts.next(), parts.next(), parts.next())
        {
            addrs.insert(name.to_string(), addr.parse()?);
        }
    }
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, addrs))
}

/// A fresh temporary directory for a server's data, removed on drop.
pub fn data_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("obscura-test-")
        .tempdir()
        .expect("tempdir")
}
