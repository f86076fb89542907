//! `obscura bench`: load generators that speak only the public APIs (so they
//! can drive any implementation of the relay or guardian contract), plus a
//! raw disk `fsync` yardstick. Every command prints a table and can write
//! the same report as JSON (`--json FILE`) for comparing runs.
//!
//! Modules: [`relay`] (messages end to end, exactly-once check, with the
//! public-API client in [`relay::api`]), [`connections`] (idle WebSocket
//! cost), [`vault`] (guardian push/pull), [`fsync`]; shared pieces are the
//! [`ledger`] (exactly-once accounting), the [`probe`] carried inside each
//! message, and [`report`] (histograms, tables, JSON).

pub mod connections;
pub mod fsync;
pub mod ledger;
pub mod probe;
pub mod relay;
pub mod report;
pub mod vault;

use reqwest::Url;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum BenchCommand {
    /// Messages from random senders to random recipients, end to end, with
    /// latency percentiles and an exactly-once check (exit 1 if it fails).
    Relay(relay::RelayArgs),
    /// Hold N idle gateway WebSockets; report the server's RSS per socket.
    Connections(connections::ConnectionsArgs),
    /// Guardian push/pull (V1) and PUT/GET (V2) throughput and latency.
    Vault(vault::VaultArgs),
    /// This disk's raw durable-write (write + fsync) rate.
    Fsync(fsync::FsyncArgs),
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Relay(args) => relay::run(args).await,
        BenchCommand::Connections(args) => connections::run(args).await,
        BenchCommand::Vault(args) => vault::run(args).await,
        BenchCommand::Fsync(args) => fsync::run(args).await,
    }
}

/// Parses a base URL; the path always ends in `/` so that API paths join
/// under it (`http://host/prefix` + `v1/users` = `http://host/prefix/v1/users`).
pub fn base_url(s: &str) -> Result<Url, String> {
    let mut url = Url::parse(s).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("expected an http:// or https:// URL".into());
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    #[test]
    fn base_urls_end_in_a_slash() {
        let u = super::base_url("http://127.0.0.1:3000").unwrap();
        assert_eq!(
            u.join("v1/users").unwrap().as_str(),
            "http://127.0.0.1:3000/v1/users"
        );
        let u = super::base_url("http://h/prefix").unwrap();
        assert_eq!(
            u.join("v1/users").unwrap().as_str(),
            "http://h/prefix/v1/users"
        );
        assert!(super::base_url("ftp://h").is_err());
    }
}
