//! `obscura attach put|get`: encrypted, streamed, with a progress bar.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::AsyncReadExt;

use super::RelayArgs;
use crate::attachment::{self, AttachmentKey, CHUNK, Opener, Sealer};
use crate::profile::sync_dir;

#[derive(Debug, Clone, Subcommand)]
pub enum AttachCommand {
    /// Encrypt and upload a file; prints `<id>#<key>` (send it to the recipient).
    Put {
        #[command(flatten)]
        relay: RelayArgs,
        /// File to upload.
        file: PathBuf,
    },
    /// Download and decrypt an attachment given as `<id>#<key>`.
    Get {
        #[command(flatten)]
        relay: RelayArgs,
        reference: String,
        /// Output file (`-` = stdout).
        #[arg(short, long)]
        output: PathBuf,
    },
}

fn bar(len: Option<u64>) -> ProgressBar {
    let bar = match len {
        Some(len) => ProgressBar::new(len),
        None => ProgressBar::new_spinner(),
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

pub async fn run(cmd: AttachCommand) -> anyhow::Result<()> {
    match cmd {
        AttachCommand::Put { relay, file } => {
            let (_, client) = relay.connect()?;
            let mut input = tokio::fs::File::open(&file)
                .await
                .with_context(|| format!("opening {}", file.display()))?;
            let size = input.metadata().await?.len();
            let progress = bar(Some(size));
            let (sealer, key, header) = Sealer::new();
            let bar_for_stream = progress.clone();
            // Read one chunk ahead so the last frame can be flagged final.
            let frames = futures::stream::once(async move { Ok::<_, std::io::Error>(header) })
                .chain(futures::stream::try_unfold(
                    // An empty file still sends one (empty, final) frame.
                    (
                        input_chunk(&mut input)
                            .await
                            .map(|c| Some(c.unwrap_or_default())),
                        input,
                        sealer,
                    ),
                    move |(current, mut input, mut sealer)| {
                        let bar = bar_for_stream.clone();
                        async move {
                            let Some(chunk) = current? else {
                                return Ok(None);
                            };
                            let next = input_chunk(&mut input).await?;
                            let frame = sealer.seal(&chunk, next.is_none());
                            bar.inc(chunk.len() as u64);
                            Ok(Some((frame, (Ok(next), input, sealer))))
                        }
                    },
                ));
            let response = client
                .upload_attachment(
                    reqwest::Body::wrap_stream(frames),
                    Some(attachment::encrypted_len(size)),
                )
                .await?;
            progress.finish_and_clear();
            eprintln!(
                "uploaded {size} bytes; expires at {} (UNIX time)",
                response.expires_at
            );
            println!("{}#{}", response.id, key.encode());
        }
        AttachCommand::Get {
            relay,
            reference,
            output,
        } => {
            let (_, client) = relay.connect()?;
            let (id, key) = reference
                .split_once('#')
                .context("the reference must look like <id>#<key>")?;
            let id = uuid::Uuid::parse_str(id)
                .context("the attachment id must be a UUID")?
                .hyphenated()
                .to_string();
            let mut opener = Opener::new(AttachmentKey::decode(key)?);
            let response = client.download_attachment(&id).await?;
            let progress = bar(response.content_length());
            let to_stdout = output.as_os_str() == "-";
            let tmp = output.with_extension("part");
            let mut sink: Box<dyn Write> = if to_stdout {
                Box::new(std::io::stdout().lock())
            } else {
                Box::new(
                    std::fs::File::create(&tmp)
                        .with_context(|| format!("creating {}", tmp.display()))?,
                )
            };
            let mut body = response.bytes_stream();
            while let Some(piece) = body.next().await {
                let piece = piece.context("download interrupted")?;
                progress.inc(piece.len() as u64);
                sink.write_all(&opener.feed(&piece)?)?;
            }
            progress.finish_and_clear();
            if let Err(e) = opener.finish() {
                if !to_stdout {
                    let _ = std::fs::remove_file(&tmp);
                }
                bail!("{e}");
            }
            sink.flush()?;
            drop(sink);
            if !to_stdout {
                std::fs::File::open(&tmp)?.sync_all()?;
                std::fs::rename(&tmp, &output)?;
                sync_dir(
                    output
                        .parent()
                        .filter(|p| !p.as_os_str().is_empty())
                        .unwrap_or(std::path::Path::new(".")),
                )?;
                eprintln!("saved {}", output.display());
            }
        }
    }
    Ok(())
}

/// Reads up to one full chunk; `None` at end of file.
async fn input_chunk(input: &mut tokio::fs::File) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; CHUNK];
    let mut filled = 0;
    while filled < CHUNK {
        let n = input.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    buf.truncate(filled);
    Ok(if filled == 0 { None } else { Some(buf) })
}
