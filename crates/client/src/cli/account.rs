//! `obscura account register|login|logout|whoami`.

use std::io::BufRead;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::RelayArgs;
use crate::identity::{KeyStore, PRE_KEY_BATCH, fingerprint};

#[derive(Debug, Clone, Subcommand)]
pub enum AccountCommand {
    /// Create an account with a new identity; prints the user id.
    Register(Credentials),
    /// Log in and publish this profile's identity with fresh pre-keys (a new
    /// identity on a profile without keys: a device takeover, pending
    /// messages for the old identity are lost).
    Login(Credentials),
    /// Revoke the session on the relay and forget it locally.
    Logout(RelayArgs),
    /// Print the user id, username and identity fingerprint.
    Whoami(RelayArgs),
}

#[derive(Debug, Clone, Args)]
pub struct Credentials {
    #[command(flatten)]
    relay: RelayArgs,
    #[arg(long)]
    username: String,
    /// Password; read from stdin when absent.
    #[arg(long, env = "OBSCURA_PASSWORD", hide_env_values = true)]
    password: Option<String>,
}

impl Credentials {
    fn password(&self) -> anyhow::Result<String> {
        if let Some(p) = &self.password {
            return Ok(p.clone());
        }
        eprint!("password for {}: ", self.username);
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password")?;
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }
}

pub async fn run(cmd: AccountCommand) -> anyhow::Result<()> {
    match cmd {
        AccountCommand::Register(creds) => {
            let (profile, relay) = creds.relay.connect()?;
            let password = creds.password()?;
            // Keys are saved before the relay sees them: a registration that
            // succeeds can never leave the profile without its private keys.
            let keys = match KeyStore::load(&profile)? {
                Some(keys) => keys,
                None => {
                    let keys = KeyStore::generate();
                    keys.save(&profile)?;
                    keys
                }
            };
            let session = relay
                .register(&creds.username, &password, keys.full_upload())
                .await?;
            eprintln!(
                "registered {} as {} (identity fingerprint {})",
                session.username,
                session.user_id,
                fingerprint(&keys.identity().public())
            );
            println!("{}", session.user_id);
        }
        AccountCommand::Login(creds) => {
            let (profile, relay) = creds.relay.connect()?;
            let password = creds.password()?;
            let session = relay.login(&creds.username, &password).await?;
            // This device becomes the account's device (single-device
            // policy): publish our identity with fresh pre-keys. The relay
            // treats it as a refill if it already holds this identity, and as
            // a takeover (pending messages for the old identity are lost) if not.
            let (keys, upload) = match KeyStore::load(&profile)? {
                Some(mut keys) => {
                    let upload = keys.claim(PRE_KEY_BATCH);
                    (keys, upload)
                }
                None => {
                    let keys = KeyStore::generate();
                    let upload = keys.full_upload();
                    (keys, upload)
                }
            };
            keys.save(&profile)?;
            relay.upload_keys(&upload).await?;
            eprintln!(
                "published identity {} with fresh pre-keys",
                fingerprint(&keys.identity().public())
            );
            eprintln!("logged in as {} ({})", session.username, session.user_id);
            println!("{}", session.user_id);
        }
        AccountCommand::Logout(args) => {
            let (_, relay) = args.connect()?;
            relay.logout().await?;
            eprintln!("logged out");
        }
        AccountCommand::Whoami(args) => {
            let (profile, relay) = args.connect()?;
            let session = relay
                .session()
                .await
                .ok_or(crate::relay::RelayError::NotLoggedIn)?;
            let keys = KeyStore::load(&profile)?.context("this profile has no keys")?;
            println!(
                "{} {} {}",
                session.user_id,
                session.username,
                fingerprint(&keys.identity().public())
            );
        }
    }
    Ok(())
}
