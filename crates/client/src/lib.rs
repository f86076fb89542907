//! Obscura client SDK: identities and pre-keys, the relay client, the vault
//! client and Shamir secret sharing. The `obscura` binary's client commands
//! live in [`cli`].

pub mod cli {
    /// Client subcommands of the `obscura` binary.
    #[derive(Debug, Clone, clap::Subcommand)]
    pub enum ClientCommand {}

    pub async fn run(cmd: ClientCommand) -> anyhow::Result<()> {
        match cmd {}
    }
}
