//! `obscura backup` and `obscura restore`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::{ProfileArgs, read_input};
use crate::profile::{Profile, write_private};
use crate::vault::{self, GuardianOutcome, MAX_PAYLOAD_BYTES, VaultClient, VaultError};

const STATE_FILE: &str = "vault-state.json";

#[derive(Debug, Clone, Args)]
pub struct GuardianArgs {
    #[command(flatten)]
    profile: ProfileArgs,
    /// Guardian base URLs, comma-separated, in the same order for backup and restore.
    #[arg(
        long,
        env = "OBSCURA_GUARDIANS",
        value_delimiter = ',',
        required = true
    )]
    guardians: Vec<String>,
    /// Shares needed to restore (default: max(2, ⌊N/3⌋); 1 for one guardian).
    #[arg(long)]
    threshold: Option<usize>,
    /// Store as a named V2 secret instead of the identity's single V1 share.
    #[arg(long)]
    name: Option<String>,
    /// Per-guardian timeout in seconds.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// Split the secret itself, as other Orama clients do, instead of this
    /// client's verified envelope: for exchanging backups with them. Plain
    /// shares carry no check value (docs/client.md).
    #[arg(long)]
    plain: bool,
}

#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    guardians: GuardianArgs,
    /// File holding the secret, or `-` for stdin.
    input: String,
}

#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    guardians: GuardianArgs,
    /// Where to write the secret (mode 0600); stdout when absent.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

impl GuardianArgs {
    fn client(&self) -> anyhow::Result<(Profile, VaultClient)> {
        let profile = self.profile.open()?;
        let identity = vault::identity_from_secret(&profile.vault_secret()?);
        let format = if self.plain {
            vault::Format::Plain
        } else {
            vault::Format::Envelope
        };
        let client = VaultClient::new(
            &self.guardians,
            &identity,
            Duration::from_secs(self.timeout),
        )?
        .with_format(format);
        Ok((profile, client))
    }
}

fn progress(n: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(n as u64);
    bar.set_style(
        ProgressStyle::with_template(&format!("{what} {{bar:30}} {{pos}}/{{len}} guardians"))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn print_outcomes(outcomes: &[GuardianOutcome]) {
    for o in outcomes {
        eprintln!("  {}: {}", o.url, o.outcome);
    }
}

pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let g = &args.guardians;
    let (profile, client) = g.client()?;
    let payload = zeroize::Zeroizing::new(read_input(&args.input, MAX_PAYLOAD_BYTES)?);
    let quorum = client.quorum(g.threshold)?;

    // The version is recorded before any guardian sees it, so a retry after
    // a crash always uses a larger one.
    let key = g.name.clone().unwrap_or_default();
    let mut state: BTreeMap<String, u64> = profile.read_json(STATE_FILE)?.unwrap_or_default();
    let version = vault::next_version(state.get(&key).copied().unwrap_or(0));
    state.insert(key, version);
    profile.write_json(STATE_FILE, &state)?;

    eprintln!(
        "backing up {} bytes to {} guardians: any {} restore it, {} must store it",
        payload.len(),
        client.guardians().len(),
        quorum.threshold,
        quorum.write_quorum
    );
    let bar = progress(client.guardians().len(), "pushing");
    let result = client
        .backup(&payload, g.name.as_deref(), g.threshold, version, |o| {
            bar.suspend(|| eprintln!("  {}: {}", o.url, o.outcome));
            bar.inc(1);
        })
        .await;
    bar.finish_and_clear();
    let report = result?;
    eprintln!(
        "backup stored: version {} on {}/{} guardians (needed {})",
        report.version,
        report.stored,
        report.outcomes.len(),
        report.quorum.write_quorum
    );
    Ok(())
}

pub async fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let g = &args.guardians;
    let (_, client) = g.client()?;
    let bar = progress(client.guardians().len(), "pulling");
    let result = client
        .restore(g.name.as_deref(), g.threshold, |_| {
            bar.inc(1);
        })
        .await;
    bar.finish_and_clear();
    let report = match result {
        Ok(report) => report,
        Err(VaultError::Unrecoverable { error, outcomes }) => {
            print_outcomes(&outcomes);
            if !g.plain && matches!(error, vault::RecoverError::NoValidCombination { .. }) {
                eprintln!(
                    "hint: shares split by another Orama client carry no envelope; if that is where they come from, try --plain"
                );
            }
            anyhow::bail!("restore failed: {error}");
        }
        Err(e) => return Err(e.into()),
    };
    print_outcomes(&report.outcomes);
    let agreed = report
        .outcomes
        .iter()
        .filter(|o| matches!(o.outcome, vault::Outcome::Agreed { .. }))
        .count();
    eprintln!(
        "restored {} bytes, version {}, from {agreed} agreeing shares (threshold {}){}",
        report.secret.len(),
        report.version,
        report.threshold,
        if g.plain {
            "; plain shares: not verified"
        } else {
            ""
        }
    );
    match &args.output {
        Some(path) => write_private(path, &report.secret)
            .with_context(|| format!("writing {}", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&report.secret)?;
            out.flush()?;
        }
    }
    Ok(())
}
