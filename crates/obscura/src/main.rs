//! `obscura`: one binary for the relay, the vault guardian and the client.

mod dev;

use clap::{Parser, Subcommand};

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
    if let Command::Guardian(args) = &cli.command {
        obscura_vault::telemetry::init_logging(args.serve.log_format);
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("OBSCURA_LOG")
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
            )
            .with_writer(std::io::stderr)
            .init();
    }
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
