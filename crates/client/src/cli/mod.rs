//! The `obscura` binary's client subcommands. Each handler is a thin layer
//! over the SDK: parse, call, report.

mod account;
mod attach;
mod messaging;
mod vault;

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::profile::Profile;
use crate::relay::RelayClient;

/// Client subcommands of the `obscura` binary.
#[derive(Debug, Clone, Subcommand)]
pub enum ClientCommand {
    /// Register, log in or log out of a relay account.
    #[command(subcommand)]
    Account(account::AccountCommand),
    /// Manage published pre-keys.
    #[command(subcommand)]
    Keys(messaging::KeysCommand),
    /// Send an end-to-end encrypted message.
    Send(messaging::SendArgs),
    /// Receive messages over the WebSocket gateway.
    Listen(messaging::ListenArgs),
    /// Upload or download an encrypted attachment.
    #[command(subcommand)]
    Attach(attach::AttachCommand),
    /// Split a secret into Shamir shares across vault guardians.
    Backup(vault::BackupArgs),
    /// Recover a secret from vault guardians.
    Restore(vault::RestoreArgs),
}

/// Where the profile lives.
#[derive(Debug, Clone, Args)]
pub struct ProfileArgs {
    /// Profile directory (keys, session, inbox). Default: ~/.obscura
    #[arg(long, env = "OBSCURA_PROFILE", global = true)]
    pub profile: Option<PathBuf>,
}

impl ProfileArgs {
    fn open(&self) -> anyhow::Result<Profile> {
        let dir = match &self.profile {
            Some(dir) => dir.clone(),
            None => {
                PathBuf::from(std::env::var_os("HOME").context("HOME is not set; pass --profile")?)
                    .join(".obscura")
            }
        };
        Ok(Profile::open(dir)?)
    }
}

/// Which relay to talk to, and the profile.
#[derive(Debug, Clone, Args)]
pub struct RelayArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Relay base URL.
    #[arg(long, env = "OBSCURA_RELAY", default_value = "http://127.0.0.1:3000")]
    pub relay: String,
}

impl RelayArgs {
    fn connect(&self) -> anyhow::Result<(Profile, RelayClient)> {
        let profile = self.profile.open()?;
        let client = RelayClient::new(&self.relay, profile.clone())?;
        Ok((profile, client))
    }
}

pub async fn run(cmd: ClientCommand) -> anyhow::Result<()> {
    match cmd {
        ClientCommand::Account(cmd) => account::run(cmd).await,
        ClientCommand::Keys(cmd) => messaging::keys(cmd).await,
        ClientCommand::Send(args) => messaging::send(args).await,
        ClientCommand::Listen(args) => messaging::listen(args).await,
        ClientCommand::Attach(cmd) => attach::run(cmd).await,
        ClientCommand::Backup(args) => vault::backup(args).await,
        ClientCommand::Restore(args) => vault::restore(args).await,
    }
}

/// Reads a whole input (`-` = stdin), refusing more than `limit` bytes.
fn read_input(path: &str, limit: usize) -> anyhow::Result<Vec<u8>> {
    let mut data = Vec::new();
    let reader: Box<dyn Read> = if path == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(path).with_context(|| format!("opening {path}"))?)
    };
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut data)
        .with_context(|| format!("reading {path}"))?;
    anyhow::ensure!(data.len() <= limit, "{path} is larger than {limit} bytes");
    Ok(data)
}
