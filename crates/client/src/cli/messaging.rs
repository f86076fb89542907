//! `obscura keys refill`, `obscura send`, `obscura listen`.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use obscura_proto::{EncryptedMessage, encrypted_message};

use super::{RelayArgs, read_input};
use crate::crypto::{self, MessageContent, RecipientKeys};
use crate::identity::{KeyStore, PRE_KEY_BATCH, fingerprint};
use crate::inbox::{self, Contacts, Inbox, Received, Trust};
use crate::profile::Profile;
use crate::relay::{Gateway, GatewayEvent, RelayClient, RelayError};

/// Largest message body: the relay's default 1 MiB limit minus framing.
const MAX_BODY_BYTES: usize = 1024 * 1024 - 4096;

#[derive(Debug, Clone, Subcommand)]
pub enum KeysCommand {
    /// Rotate the signed pre-key and publish fresh one-time pre-keys.
    Refill {
        #[command(flatten)]
        relay: RelayArgs,
        /// Number of one-time pre-keys to publish.
        #[arg(long, default_value_t = PRE_KEY_BATCH)]
        count: usize,
    },
}

#[derive(Debug, Clone, Args)]
pub struct SendArgs {
    #[command(flatten)]
    relay: RelayArgs,
    /// Recipient user id (UUID).
    recipient: String,
    /// File to send, or `-` for stdin.
    input: String,
    /// Accept and pin the recipient's identity key even if it changed.
    #[arg(long)]
    trust_new_identity: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ListenArgs {
    #[command(flatten)]
    relay: RelayArgs,
    /// Exit after this many new messages.
    #[arg(long)]
    count: Option<usize>,
    /// Exit when nothing arrives for this many seconds.
    #[arg(long)]
    idle_timeout: Option<u64>,
    /// Print each message as one JSON line instead of text.
    #[arg(long)]
    json: bool,
}

pub async fn keys(cmd: KeysCommand) -> anyhow::Result<()> {
    let KeysCommand::Refill { relay, count } = cmd;
    let (profile, client) = relay.connect()?;
    let mut keys = KeyStore::load(&profile)?.context("this profile has no keys: register first")?;
    refill(&profile, &client, &mut keys, count).await?;
    eprintln!("published a new signed pre-key and {count} one-time pre-keys");
    Ok(())
}

/// Rotates and refills, saving private keys before publishing the public ones.
async fn refill(
    profile: &Profile,
    client: &RelayClient,
    keys: &mut KeyStore,
    count: usize,
) -> anyhow::Result<()> {
    let upload = keys.refill(count);
    keys.save(profile)?;
    client.upload_keys(&upload).await?;
    Ok(())
}

pub async fn send(args: SendArgs) -> anyhow::Result<()> {
    let (profile, client) = args.relay.connect()?;
    let session = client.session().await.ok_or(RelayError::NotLoggedIn)?;
    let keys = KeyStore::load(&profile)?.context("this profile has no keys: register first")?;
    let body = read_input(&args.input, MAX_BODY_BYTES)?;
    // User ids are canonical lower-case hyphenated UUIDs everywhere.
    let recipient_id = uuid::Uuid::parse_str(&args.recipient)
        .with_context(|| format!("{:?} is not a user id (UUID)", args.recipient))?
        .hyphenated()
        .to_string();

    let bundle = client.fetch_bundle(&recipient_id).await?;
    let recipient = RecipientKeys::from_bundle(&bundle)?;
    let mut contacts = Contacts::load(&profile)?;
    match contacts.check(&profile, &recipient_id, &recipient.identity)? {
        Trust::Known => {}
        Trust::Pinned => eprintln!(
            "first contact with {}: pinned identity fingerprint {}",
            recipient_id,
            fingerprint(&recipient.identity)
        ),
        Trust::Changed { pinned_fingerprint } if args.trust_new_identity => {
            contacts.repin(&profile, &recipient_id, &recipient.identity)?;
            eprintln!(
                "identity of {} changed from {pinned_fingerprint} to {}: re-pinned as asked",
                recipient_id,
                fingerprint(&recipient.identity)
            );
        }
        Trust::Changed { pinned_fingerprint } => bail!(
            "the identity key of {} changed (pinned {pinned_fingerprint}, relay now serves {}); \
             verify it with them, then resend with --trust-new-identity",
            recipient_id,
            fingerprint(&recipient.identity)
        ),
    }
    let content = MessageContent::new(&session.user_id, &recipient_id, body);
    let message = EncryptedMessage {
        r#type: encrypted_message::Type::PrekeyMessage as i32,
        content: crypto::seal(&keys.identity(), &recipient, &content),
    };
    client.send_message(&recipient_id, &message).await?;
    eprintln!(
        "sent {} bytes to {} ({})",
        content.body.len(),
        recipient_id,
        if recipient.one_time_pre_key.is_some() {
            "signed + one-time pre-key"
        } else {
            "signed pre-key only"
        }
    );
    Ok(())
}

pub async fn listen(args: ListenArgs) -> anyhow::Result<()> {
    let (profile, client) = args.relay.connect()?;
    let session = client.session().await.ok_or(RelayError::NotLoggedIn)?;
    let mut keys = KeyStore::load(&profile)?.context("this profile has no keys: register first")?;
    let mut contacts = Contacts::load(&profile)?;
    let inbox = Inbox::open(&profile)?;
    let mut gateway = client.connect_gateway().await?;
    eprintln!(
        "listening as {} (messages are stored in {})",
        session.user_id,
        inbox.dir().display()
    );

    let mut received = 0usize;
    let mut backoff = Duration::from_secs(1);
    loop {
        if args.count.is_some_and(|n| received >= n) {
            break;
        }
        let next = match args.idle_timeout {
            Some(secs) => tokio::time::timeout(Duration::from_secs(secs), gateway.next()).await,
            None => Ok(gateway.next().await),
        };
        let event = match next {
            Ok(Ok(Some(event))) => {
                backoff = Duration::from_secs(1);
                event
            }
            Err(_elapsed) => {
                eprintln!(
                    "no message for {} s, stopping",
                    args.idle_timeout.unwrap_or(0)
                );
                break;
            }
            // Connection lost (network, relay restart): messages not yet
            // ACKed are redelivered, so reconnecting loses nothing.
            Ok(Ok(None)) | Ok(Err(RelayError::WebSocket(_))) => {
                gateway = reconnect(&client, &mut backoff).await?;
                continue;
            }
            Ok(Err(e)) => return Err(e.into()),
        };
        match event {
            GatewayEvent::PreKeyStatus(status) => {
                let count =
                    PRE_KEY_BATCH.saturating_sub(status.one_time_pre_key_count.max(0) as usize);
                if count > 0 {
                    refill(&profile, &client, &mut keys, count).await?;
                    eprintln!(
                        "relay holds {} one-time pre-keys (threshold {}): published {count} more",
                        status.one_time_pre_key_count, status.min_threshold
                    );
                }
            }
            GatewayEvent::Envelope(envelope) => {
                // Stored and fsync'd before the ACK: an ACK deletes it on the relay.
                match inbox::receive(
                    &profile,
                    &inbox,
                    &mut keys,
                    &mut contacts,
                    &session.user_id,
                    &envelope,
                )? {
                    Received::New { message, path } => {
                        received += 1;
                        if args.json {
                            println!("{}", serde_json::to_string(&message)?);
                        } else {
                            match &message.text {
                                Some(text) => println!("{}: {text}", message.from),
                                None => println!(
                                    "{}: [{} bytes of binary data, saved in {}]",
                                    message.from,
                                    message.size,
                                    path.display()
                                ),
                            }
                        }
                    }
                    Received::Duplicate => {}
                    Received::Rejected { reason, path } => {
                        eprintln!(
                            "rejected message {}: {reason} (raw copy in {})",
                            envelope.id,
                            path.display()
                        );
                    }
                }
                gateway.ack(&envelope.id).await?;
            }
        }
    }
    gateway.close().await;
    Ok(())
}

/// Reconnects to the gateway with exponential backoff (1 s doubling to 30 s),
/// until it works or the session is refused.
async fn reconnect(client: &RelayClient, backoff: &mut Duration) -> anyhow::Result<Gateway> {
    loop {
        eprintln!(
            "connection to the relay lost; reconnecting in {} s",
            backoff.as_secs()
        );
        tokio::time::sleep(*backoff).await;
        *backoff = (*backoff * 2).min(Duration::from_secs(30));
        match client.connect_gateway().await {
            Ok(gateway) => {
                eprintln!("reconnected");
                return Ok(gateway);
            }
            Err(e @ (RelayError::SessionExpired | RelayError::NotLoggedIn)) => return Err(e.into()),
            Err(e) => eprintln!("reconnect failed: {e}"),
        }
    }
}
