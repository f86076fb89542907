//! `obscura bench fsync`: what this disk can make durable per second,
//! the yardstick for durable writes (a guardian push, a relay commit).
//!
//! - `raw`: overwrite one block of one file, `fsync`; the disk's floor
//!   cost of one durable write.
//! - `atomic-replace`: write a temp file, `fsync` it, rename it over the
//!   target, `fsync` the directory; what a crash-safe file replace costs
//!   without batching (two flushes plus metadata).

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::report::{Latency, LatencySummary, Table, emit, rate};

#[derive(Debug, Clone, clap::Args)]
pub struct FsyncArgs {
    /// Directory on the disk to measure (a scratch file is created and removed).
    #[arg(long)]
    pub dir: PathBuf,
    /// Seconds per loop.
    #[arg(long, default_value_t = 3)]
    pub secs: u64,
    /// Bytes written per operation.
    #[arg(long, default_value_t = 4096)]
    pub size: usize,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoopReport {
    pub ops: u64,
    pub ops_per_sec: f64,
    pub latency: LatencySummary,
}

#[derive(Debug, Clone, Serialize)]
pub struct FsyncReport {
    pub dir: PathBuf,
    pub size: usize,
    pub raw: LoopReport,
    pub atomic_replace: LoopReport,
}

fn timed_loop(
    secs: u64,
    mut op: impl FnMut() -> std::io::Result<()>,
) -> anyhow::Result<LoopReport> {
    let mut latency = Latency::new();
    let start = Instant::now();
    let budget = Duration::from_secs(secs.max(1));
    while start.elapsed() < budget {
        let t = Instant::now();
        op()?;
        latency.record(t.elapsed());
    }
    Ok(LoopReport {
        ops: latency.len(),
        ops_per_sec: rate(latency.len(), start.elapsed()),
        latency: latency.summary(),
    })
}

fn raw(dir: &Path, secs: u64, block: &[u8]) -> anyhow::Result<LoopReport> {
    let path = dir.join(".obscura-bench-fsync");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    let report = timed_loop(secs, || {
        file.seek(SeekFrom::Start(0))?;
        file.write_all(block)?;
        file.sync_all()
    });
    std::fs::remove_file(&path)?;
    report
}

fn atomic_replace(dir: &Path, secs: u64, block: &[u8]) -> anyhow::Result<LoopReport> {
    let target = dir.join(".obscura-bench-target");
    let tmp = dir.join(".obscura-bench-target.tmp");
    let dir_handle = File::open(dir)?;
    let report = timed_loop(secs, || {
        let mut f = File::create(&tmp)?;
        f.write_all(block)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &target)?;
        dir_handle.sync_all()
    });
    let _ = std::fs::remove_file(&target);
    let _ = std::fs::remove_file(&tmp);
    report
}

pub fn measure(args: &FsyncArgs) -> anyhow::Result<FsyncReport> {
    let block = vec![0x5Au8; args.size.max(1)];
    Ok(FsyncReport {
        dir: args.dir.clone(),
        size: block.len(),
        raw: raw(&args.dir, args.secs, &block)?,
        atomic_replace: atomic_replace(&args.dir, args.secs, &block)?,
    })
}

pub async fn run(args: FsyncArgs) -> anyhow::Result<()> {
    let report = {
        let args = args.clone();
        tokio::task::spawn_blocking(move || measure(&args)).await??
    };
    let mut table = Table::new(format!(
        "fsync on {} ({} B writes)",
        report.dir.display(),
        report.size
    ));
    for (name, l) in [
        ("raw write+fsync", &report.raw),
        ("atomic replace", &report.atomic_replace),
    ] {
        table
            .row(name, format!("{:.0} ops/s", l.ops_per_sec))
            .latency(&format!("{name} latency"), &l.latency);
    }
    emit(&table, &report, args.json.as_deref())
}
