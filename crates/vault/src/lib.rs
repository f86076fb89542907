//! The Orama Vault guardian: stores one Shamir share per identity (V1) and
//! named secrets (V2), and speaks the binary peer protocol with other guardians.

pub mod cli {
    /// `obscura guardian` options.
    #[derive(Debug, Clone, clap::Args)]
    pub struct GuardianArgs {
        /// Address the HTTP API listens on.
        #[arg(
            long,
            env = "OBSCURA_GUARDIAN_LISTEN",
            default_value = "127.0.0.1:7500"
        )]
        pub listen: std::net::SocketAddr,
    }
}

/// Runs the guardian until SIGTERM/SIGINT.
pub async fn run(_args: cli::GuardianArgs) -> anyhow::Result<()> {
    anyhow::bail!("guardian not implemented yet")
}
