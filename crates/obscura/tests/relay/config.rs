//! Configuration layering (flag > environment > TOML > default), observed
//! through PreKeyStatus.min_threshold, and `obscura relay --help`.

use crate::support::*;

async fn threshold_seen(relay: &Relay) -> i32 {
    let user = relay.register(0).await;
    let mut socket = relay.connect(&user.token).await;
    socket.pre_key_status().await.min_threshold
}

#[backend_test]
async fn flags_beat_environment_beat_toml() {
    let dir = obscura_testkit::data_dir();
    let toml = dir.path().join("relay.toml");
    std::fs::write(&toml, "prekey-min-threshold = 5\n").unwrap();
    let toml = toml.to_str().unwrap();

    let relay = Relay::start_with(&["--config", toml]).await;
    assert_eq!(threshold_seen(&relay).await, 5, "TOML over the default");

    let env = [("OBSCURA_PREKEY_MIN_THRESHOLD", "7")];
    let relay = Relay::start_with_env(&["--config", toml], &env).await;
    assert_eq!(threshold_seen(&relay).await, 7, "environment over TOML");

    let relay =
        Relay::start_with_env(&["--config", toml, "--prekey-min-threshold", "3"], &env).await;
    assert_eq!(threshold_seen(&relay).await, 3, "flag over environment");

    let relay = Relay::start().await;
    assert_eq!(threshold_seen(&relay).await, 10, "documented default");
}

#[test]
fn help_lists_every_option() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_obscura"))
        .args(["relay", "--help"])
        .output()
        .expect("runs");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--mgmt-listen",
        "--data-dir",
        "--config",
        "--jwt-secret",
        "--access-token-ttl-secs",
        "--refresh-token-ttl-secs",
        "--argon2-memory-kib",
        "--argon2-iterations",
        "--argon2-parallelism",
        "--max-message-bytes",
        "--storage-max-size-bytes",
        "--attachment-ttl-secs",
        "--message-ttl-secs",
        "--cleanup-interval-secs",
        "--prekey-min-threshold",
        "--max-one-time-prekeys",
        "--rate-limit-per-sec",
        "--rate-limit-burst",
        "--ip-rate-limit-per-sec",
        "--ip-rate-limit-burst",
        "--auth-rate-limit-per-sec",
        "--auth-rate-limit-burst",
        "--trusted-proxies",
    ] {
        assert!(
            help.contains(flag),
            "`obscura relay --help` does not list {flag}"
        );
        let env = format!(
            "OBSCURA_{}",
            flag.trim_start_matches("--")
                .replace('-', "_")
                .to_uppercase()
        );
        assert!(
            help.contains(&env),
            "`obscura relay --help` does not name {env}"
        );
    }
}

/// Argon2 parameters below the OWASP minimums are allowed (tests need them)
/// but announced with a WARN on stderr at startup.
#[backend_test]
async fn weak_argon2_parameters_warn_at_startup() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let dir = obscura_testkit::data_dir();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_obscura"))
        .args([
            "relay",
            "--listen",
            "127.0.0.1:0",
            "--mgmt-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .args(["--argon2-memory-kib", "1024", "--argon2-iterations", "1"])
        .env("OBSCURA_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let found = tokio::time::timeout(TIMEOUT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("WARN") && line.to_lowercase().contains("argon2") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    let _ = child.kill().await;
    assert!(found, "no WARN about weak argon2 parameters on stderr");
}

/// A bad configuration stops the server at startup with a non-zero exit,
/// instead of running with something the operator did not ask for.
#[backend_test]
async fn invalid_configuration_fails_fast() {
    let dir = obscura_testkit::data_dir();
    let bad_toml = dir.path().join("bad.toml");
    std::fs::write(&bad_toml, "no-such-option = 1\n").unwrap();
    let data = dir.path().join("data");
    let base = [
        "relay",
        "--listen",
        "127.0.0.1:0",
        "--mgmt-listen",
        "127.0.0.1:0",
    ];
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "unknown TOML key",
            vec!["--config".into(), bad_toml.to_str().unwrap().into()],
        ),
        (
            "missing TOML file",
            vec![
                "--config".into(),
                dir.path().join("absent.toml").to_str().unwrap().into(),
            ],
        ),
        (
            "non-numeric limit",
            vec!["--max-message-bytes".into(), "lots".into()],
        ),
        (
            "bad listen address",
            vec!["--listen".into(), "not-an-address".into()],
        ),
    ];
    for (what, extra) in cases {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_obscura"));
        cmd.args(base).arg("--data-dir").arg(&data).args(&extra);
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        let status = tokio::time::timeout(TIMEOUT, cmd.status())
            .await
            .unwrap_or_else(|_| panic!("{what}: the server kept running"))
            .expect("spawned");
        assert!(!status.success(), "{what}: exit status {status}");
    }
}
