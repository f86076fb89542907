//! `obscura`: one binary for the relay, the vault guardian and the client.

mod dev;
#[cfg(feature = "otlp")]
mod otlp;

use clap::{Parser, Subcommand};
use obscura_relay::cli::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "obscura",
    version,
    about = "Private-messaging relay, vault guardian and client"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the messaging relay (embedded SQLite + local disk by default).
    Relay(Box<obscura_relay::cli::RelayArgs>),
    /// Run a vault guardian.
    Guardian(obscura_vault::cli::GuardianArgs),
    /// Run a local cluster: a relay and N guardians, until Ctrl-C.
    Dev(dev::DevArgs),
    /// Load generators and benchmarks (public APIs only).
    #[command(subcommand)]
    Bench(obscura_bench::BenchCommand),
    #[command(flatten)]
    Client(obscura_client::cli::ClientCommand),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Held until `main` returns: flushes buffered trace spans (feature otlp).
    let _logging = match &cli.command {
        Command::Guardian(args) => {
            obscura_vault::telemetry::init_logging(args.serve.log_format);
            LogGuard::default()
        }
        Command::Relay(args) => init_logging(args.log_format.unwrap_or_default())?,
        _ => init_logging(LogFormat::Text)?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Relay(args) => obscura_relay::run(*args).await,
            Command::Guardian(args) => obscura_vault::run(args).await,
            Command::Dev(args) => dev::run(args).await,
            Command::Bench(cmd) => obscura_bench::run(cmd).await,
            Command::Client(cmd) => obscura_client::cli::run(cmd).await,
        }
    })
}

/// Logging of the relay (and the other non-guardian commands): the
/// `OBSCURA_LOG` filter, text or JSON lines on stderr, and with the `otlp`
/// feature an OTLP span exporter. The guardian sets up its own.
fn init_logging(format: LogFormat) -> anyhow::Result<LogGuard> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("OBSCURA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let logs = match format {
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
    {
        let (layer, guard) = otlp::layer("obscura-relay")?.unzip();
        subscriber.with(layer).init();
        Ok(LogGuard { _otlp: guard })
    }
    #[cfg(not(feature = "otlp"))]
    {
        subscriber.init();
        Ok(LogGuard::default())
    }
}

/// What must outlive the program's work for its logs and traces to be complete.
#[derive(Default)]
struct LogGuard {
    #[cfg(feature = "otlp")]
    _otlp: Option<otlp::Guard>,
}
