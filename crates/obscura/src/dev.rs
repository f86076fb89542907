//! `obscura dev`: a local cluster in one command — a relay (embedded
//! SQLite, local attachments) and N vault guardians that know each other as
//! peers, each a child process of this same binary with its own data directory.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};

/// `obscura dev` options.
#[derive(Debug, Clone, clap::Args)]
pub struct DevArgs {
    /// Number of vault guardians to start.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=32))]
    pub guardians: u8,
    /// Directory for every server's data (one subdirectory each).
    #[arg(long, default_value = "./dev-data")]
    pub dir: PathBuf,
    /// Address to bind every listener to.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// First port: relay on it, relay management on +1, guardian i on
    /// +2+2i (HTTP) and +3+2i (peer). Default 0: any free ports.
    #[arg(long, default_value_t = 0)]
    pub base_port: u16,
}

/// One started server.
struct Proc {
    name: String,
    child: Child,
    http: SocketAddr,
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let exe = std::env::current_exe().context("locating the obscura binary")?;
    let port = |offset: u16| -> anyhow::Result<String> {
        let p = if args.base_port == 0 {
            0
        } else {
            args.base_port
                .checked_add(offset)
                .context("--base-port too high for this many guardians")?
        };
        Ok(SocketAddr::new(args.host, p).to_string())
    };

    // Peer addresses are fixed before any guardian starts, so each can be
    // told where the others are.
    let peer_addrs: Vec<String> = (0..u16::from(args.guardians))
        .map(|i| match args.base_port {
            0 => free_port(args.host),
            _ => port(3 + 2 * i),
        })
        .collect::<anyhow::Result<_>>()?;

    let mut procs: Vec<Proc> = Vec::new();
    let started = async {
        let relay_dir = data_dir(&args.dir, "relay")?;
        let relay_args = [
            "relay",
            "--listen",
            &port(0)?,
            "--mgmt-listen",
            &port(1)?,
            "--data-dir",
            &relay_dir,
        ];
        procs.push(start(&exe, "relay", &relay_args).await?);
        for (i, peer_addr) in peer_addrs.iter().enumerate() {
            let name = format!("guardian-{}", i + 1);
            let dir = data_dir(&args.dir, &name)?;
            let others: Vec<&str> = peer_addrs
                .iter()
                .filter(|a| *a != peer_addr)
                .map(String::as_str)
                .collect();
            let mut guardian_args = vec![
                "guardian".to_string(),
                "--listen".into(),
                port(2 + 2 * i as u16)?,
                "--peer-listen".into(),
                peer_addr.clone(),
                "--data-dir".into(),
                dir,
            ];
            if !others.is_empty() {
                guardian_args.push(format!("--peers={}", others.join(",")));
            }
            let guardian_args: Vec<&str> = guardian_args.iter().map(String::as_str).collect();
            procs.push(start(&exe, &name, &guardian_args).await?);
        }
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = started {
        shutdown(&mut procs).await;
        return Err(e);
    }

    // Machine-readable lines first (tests and scripts wait for them), then
    // what a person pastes into another shell.
    for p in &procs {
        println!("listening {} {}", p.name, p.http);
    }
    let guardians: Vec<String> = procs[1..]
        .iter()
        .map(|p| format!("http://{}", p.http))
        .collect();
    println!(
        "# Obscura dev cluster is up (data in {}). In another shell:",
        args.dir.display()
    );
    println!("export OBSCURA_RELAY=http://{}", procs[0].http);
    println!("export OBSCURA_GUARDIANS={}", guardians.join(","));
    println!(
        "export OBSCURA_PROFILE={}",
        args.dir.join("profile").display()
    );
    println!("# then e.g.: obscura account register --username alice");
    println!("#            echo secret | obscura backup -    and    obscura restore");
    println!("# Ctrl-C stops everything.");

    let outcome = supervise(&mut procs).await;
    shutdown(&mut procs).await;
    outcome
}

/// A currently free port on `host` (bound, then released: a dev-tool race
/// that only matters if another process grabs it in the next milliseconds).
fn free_port(host: IpAddr) -> anyhow::Result<String> {
    let listener =
        std::net::TcpListener::bind(SocketAddr::new(host, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.to_string())
}

fn data_dir(root: &Path, name: &str) -> anyhow::Result<String> {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir.to_string_lossy().into_owned())
}

/// Spawns `exe args…` and waits for its `listening http <addr>` line.
async fn start(exe: &Path, name: &str, args: &[&str]) -> anyhow::Result<Proc> {
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting the {name}"))?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let wait = async {
        while let Some(line) = lines.next_line().await? {
            let mut parts = line.split_whitespace();
            if let (Some("listening"), Some("http"), Some(addr)) =
                (parts.next(), parts.next(), parts.next())
            {
                return anyhow::Ok(Some(addr.parse::<SocketAddr>()?));
            }
        }
        Ok(None)
    };
    let http = match tokio::time::timeout(Duration::from_secs(60), wait).await {
        Ok(Ok(Some(addr))) => addr,
        Ok(Ok(None)) => bail!(
            "the {name} exited before it was ready: {}",
            child.wait().await?
        ),
        Ok(Err(e)) => return Err(e.context(format!("reading the {name}'s output"))),
        Err(_) => bail!("the {name} did not report its address within 60 s"),
    };
    // Keep draining its stdout so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    eprintln!("{name}: http://{http}");
    Ok(Proc {
        name: name.to_string(),
        child,
        http,
    })
}

/// Waits for Ctrl-C / SIGTERM, or for a child to die on its own (an error).
async fn supervise(procs: &mut [Proc]) -> anyhow::Result<()> {
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = sigterm.recv() => return Ok(()),
            _ = tick.tick() => {
                for p in procs.iter_mut() {
                    if let Some(status) = p.child.try_wait()? {
                        bail!("the {} exited unexpectedly ({status}); stopping the cluster", p.name);
                    }
                }
            }
        }
    }
}

/// SIGTERM to every child, then SIGKILL to those still running after 10 s.
async fn shutdown(procs: &mut [Proc]) {
    for p in procs.iter() {
        if let Some(pid) = p.child.id() {
            // `kill(1)` rather than libc: `unsafe` is forbidden in this workspace.
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
    }
    for p in procs.iter_mut() {
        if tokio::time::timeout(Duration::from_secs(10), p.child.wait())
            .await
            .is_err()
        {
            eprintln!("{} did not stop within 10 s; killing it", p.name);
            let _ = p.child.kill().await;
        }
    }
    eprintln!("dev cluster stopped");
}
