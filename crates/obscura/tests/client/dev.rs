//! `obscura dev`: a whole local cluster from one command.

use obscura_testkit::Server;

use crate::support::{BIN, Client};

#[tokio::test]
async fn dev_starts_a_relay_and_guardians_that_the_cli_can_use() {
    let dir = obscura_testkit::data_dir();
    let data = dir.path().join("cluster");
    let mut dev = Server::start(
        BIN,
        &["dev", "--guardians", "2", "--dir", data.to_str().unwrap()],
        &[],
        &["relay", "guardian-1", "guardian-2"],
    )
    .await
    .expect("dev cluster starts");
    let relay = dev.url("relay");
    let guardians = format!("{},{}", dev.url("guardian-1"), dev.url("guardian-2"));

    let alice = Client::new(&relay);
    alice
        .ok(&["account", "register", "--username", "alice"], b"")
        .await;
    alice
        .ok(&["backup", "--guardians", &guardians, "-"], b"dev secret")
        .await;
    assert_eq!(
        alice.ok(&["restore", "--guardians", &guardians], b"").await,
        "dev secret"
    );
    for sub in ["relay", "guardian-1", "guardian-2"] {
        assert!(data.join(sub).is_dir(), "{sub} has its own data dir");
    }

    let status = dev.terminate().await.expect("dev stops on SIGTERM");
    assert!(status.success(), "{status}");
}
