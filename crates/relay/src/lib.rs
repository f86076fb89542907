//! The Obscura relay: accounts, pre-keys, store-and-forward messaging,
//! WebSocket delivery, attachments and push tokens.

pub mod cli {
    /// `obscura relay` options.
    #[derive(Debug, Clone, clap::Args)]
    pub struct RelayArgs {
        /// Address the public API listens on.
        #[arg(long, env = "OBSCURA_LISTEN", default_value = "127.0.0.1:3000")]
        pub listen: std::net::SocketAddr,
    }
}

/// Runs the relay until SIGTERM/SIGINT.
pub async fn run(_args: cli::RelayArgs) -> anyhow::Result<()> {
    anyhow::bail!("relay not implemented yet")
}
