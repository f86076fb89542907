//! `obscura`: one binary for the relay, the vault guardian and the client.

mod dev;
#[cfg(feature = "otlp")]
mod otlp;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "obscura",
    version,
    about = "Private-messaging relay, vault guardian and client"
)]
struct Cli {
    /// Log line format on stderr: `text` for people, `json` (one object per line) for collectors.
    #[arg(
        long,
        global = true,
        env = "OBSCURA_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the messaging relay (embedded SQLite + local disk by default).
    Relay(Box<obscura_relay::cli::RelayArgs>),
    /// Run a vault guardian.
    Guardian(obscura_vault::cli::GuardianArgs),
    /// Run a local cluster: a relay and N guardians, until Ctrl-C.
    Dev(dev::DevArgs),
    #[command(flatten)]
    Client(obscura_client::cli::ClientCommand),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("OBSCURA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let logs = match cli.log_format {
        LogFormat::Text => logs.boxed(),
        // Span fields (request_id, method, path) ride along on every line.
        LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    };
    let subscriber = tracing_subscriber::registry().with(filter).with(logs);
    #[cfg(feature = "otlp")]
    let (subscriber, _otlp) = {
        let service = match &cli.command {
            Command::Guardian(_) => "obscura-guardian",
            _ => "obscura-relay",
        };
        let (layer, guard) = otlp::layer(service)?.unzip();
        (subscriber.with(layer), guard)
    };
    subscriber.init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Relay(args) => obscura_relay::run(*args).await,
            Command::Guardian(args) => obscura_vault::run(args).await,
            Command::Dev(args) => dev::run(args).await,
            Command::Client(cmd) => obscura_client::cli::run(cmd).await,
        }
    })
}
