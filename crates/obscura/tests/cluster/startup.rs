//! A node whose backend is unreachable or misconfigured stops at start-up
//! with an error naming it (after retrying for `--connect-timeout-secs`),
//! instead of serving half-working.

use std::process::Stdio;
use std::time::Duration;

async fn start_failure(args: &[&str]) -> String {
    let dir = obscura_testkit::data_dir();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_obscura"));
    cmd.args([
        "relay",
        "--listen",
        "127.0.0.1:0",
        "--mgmt-listen",
        "127.0.0.1:0",
    ])
    .arg("--data-dir")
    .arg(dir.path())
    .args(["--connect-timeout-secs", "1"])
    .args(args)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("the relay gave up within its connect timeout")
        .expect("relay ran");
    assert!(!out.status.success(), "started despite a dead backend");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("listening"),
        "announced listeners: {stdout}"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn unreachable_backends_stop_start_up_with_an_error_naming_them() {
    let err = start_failure(&["--database-url", "postgres://postgres@127.0.0.1:1/test"]).await;
    assert!(err.contains("PostgreSQL"), "{err}");

    let err = start_failure(&["--database-url", "mysql://x"]).await;
    assert!(err.contains("database-url"), "{err}");
}
