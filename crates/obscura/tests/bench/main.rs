//! The load generator's own correctness, against real servers: its
//! exactly-once accounting, its error tallies and its reports. No timing
//! assertions: speed lives in `docs/performance.md`, not in the suite.

use std::path::Path;

use obscura_testkit::Server;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_obscura");

/// A relay with the test-only argon2 cost; `limits` are extra flags.
async fn relay(dir: &Path, limits: &[&str]) -> Server {
    let dir = dir.to_str().expect("utf-8 path");
    let mut args = vec![
        "relay",
        "--listen",
        "127.0.0.1:0",
        "--mgmt-listen",
        "127.0.0.1:0",
        "--data-dir",
        dir,
        "--argon2-memory-kib",
        "1024",
        "--argon2-iterations",
        "1",
        "--auth-rate-limit-per-sec",
        "100000",
        "--auth-rate-limit-burst",
        "100000",
        "--ip-rate-limit-per-sec",
        "100000",
        "--ip-rate-limit-burst",
        "100000",
    ];
    args.extend_from_slice(limits);
    Server::start(BIN, &args, &[], &["http", "mgmt"])
        .await
        .expect("relay starts")
}

const GENEROUS_USER_LIMIT: &[&str] = &[
    "--rate-limit-per-sec",
    "100000",
    "--rate-limit-burst",
    "100000",
];

/// Runs `obscura bench <args> --json <file>`; returns (exit success, report, stdout).
async fn bench(args: &[&str]) -> (bool, Value, String) {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let json = out_dir.path().join("report.json");
    let output = tokio::process::Command::new(BIN)
        .arg("bench")
        .args(args)
        .arg("--json")
        .arg(&json)
        .env("OBSCURA_LOG", "error")
        .output()
        .await
        .expect("bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let text = std::fs::read_to_string(&json).unwrap_or_else(|_| {
        panic!(
            "no JSON report; stdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let report = serde_json::from_str(&text).expect("report is JSON");
    (output.status.success(), report, stdout)
}

fn assert_exactly_once(report: &Value, messages: u64) {
    let v = &report["exactly_once"];
    assert_eq!(v["accepted"], messages, "{report:#}");
    assert_eq!(v["delivered"], messages, "{report:#}");
    for field in [
        "missing",
        "duplicated",
        "delivered_unaccepted",
        "foreign",
        "misrouted",
    ] {
        assert_eq!(v[field], 0, "{field}: {report:#}");
    }
    assert_eq!(report["ok"], true);
    assert_eq!(report["end_to_end_latency"]["count"], messages);
    assert_eq!(report["send_latency"]["count"], messages);
}

#[tokio::test]
async fn closed_loop_delivers_every_message_exactly_once() {
    let dir = obscura_testkit::data_dir();
    let relay = relay(dir.path(), GENEROUS_USER_LIMIT).await;
    let url = relay.url("http");
    let (ok, report, stdout) = bench(&[
        "relay",
        "--url",
        &url,
        "--users",
        "5",
        "--messages",
        "400",
        "--concurrency",
        "8",
        "--size",
        "200",
        "--prekeys",
        "2",
    ])
    .await;
    assert!(ok, "{stdout}");
    assert_exactly_once(&report, 400);
    assert_eq!(report["mode"], "closed");
    assert_eq!(report["errors"], serde_json::json!({}));
    assert!(
        stdout.contains("exactly once") && stdout.contains("yes"),
        "{stdout}"
    );
}

#[tokio::test]
async fn open_loop_delivers_every_message_exactly_once() {
    let dir = obscura_testkit::data_dir();
    let relay = relay(dir.path(), GENEROUS_USER_LIMIT).await;
    let url = relay.url("http");
    let (ok, report, _) = bench(&[
        "relay",
        "--url",
        &url,
        "--users",
        "3",
        "--messages",
        "150",
        "--rate",
        "1000",
        "--prekeys",
        "0",
    ])
    .await;
    assert!(ok, "{report:#}");
    assert_exactly_once(&report, 150);
    assert_eq!(report["mode"], "open");
}

/// Refused sends are tallied by status and neither count as sent nor as
/// missing; what was accepted still arrives exactly once.
#[tokio::test]
async fn rate_limited_sends_are_errors_not_missing_messages() {
    let dir = obscura_testkit::data_dir();
    // One user sends everything (two users, random sender: both), and the
    // per-user bucket holds 5 sends with a negligible refill.
    let relay = relay(
        dir.path(),
        &["--rate-limit-per-sec", "0.001", "--rate-limit-burst", "5"],
    )
    .await;
    let url = relay.url("http");
    let (ok, report, _) = bench(&[
        "relay",
        "--url",
        &url,
        "--users",
        "2",
        "--messages",
        "60",
        "--concurrency",
        "4",
        "--prekeys",
        "0",
    ])
    .await;
    assert!(ok, "{report:#}");
    let v = &report["exactly_once"];
    let accepted = v["accepted"].as_u64().unwrap();
    let refused = report["errors"]["429"].as_u64().expect("429s tallied");
    assert!(accepted <= 10, "{report:#}");
    assert_eq!(accepted + refused, 60, "{report:#}");
    assert_eq!(v["missing"], 0);
    assert_eq!(v["delivered"], accepted);
    assert_eq!(v["delivered_unaccepted"], 0);
}

#[tokio::test]
async fn connections_are_held_and_measured() {
    let dir = obscura_testkit::data_dir();
    let relay = relay(dir.path(), GENEROUS_USER_LIMIT).await;
    let url = relay.url("http");
    let pid = relay.pid().to_string();
    let (ok, report, _) = bench(&[
        "connections",
        "--url",
        &url,
        "-n",
        "30",
        "--server-pid",
        &pid,
        "--hold-secs",
        "1",
        "--steps",
        "1",
    ])
    .await;
    assert!(ok, "{report:#}");
    assert_eq!(report["connections"], 30);
    assert_eq!(report["still_open"], 30, "{report:#}");
    assert!(report["server_rss_after"].as_u64().unwrap() > 0);
    assert!(report["server_bytes_per_connection"].is_number());
}

#[tokio::test]
async fn vault_phases_all_succeed_on_a_guardian() {
    let dir = obscura_testkit::data_dir();
    let data = dir.path().to_str().unwrap();
    let guardian = Server::start(
        BIN,
        &[
            "guardian",
            "--listen",
            "127.0.0.1:0",
            "--peer-listen",
            "127.0.0.1:0",
            "--data-dir",
            data,
            "--rate-limit-ip-per-min",
            "0",
            "--rate-limit-identity-per-min",
            "0",
        ],
        &[],
        &["http", "peer"],
    )
    .await
    .expect("guardian starts");
    let url = guardian.url("http");
    let (ok, report, _) = bench(&[
        "vault",
        "--url",
        &url,
        "--concurrency",
        "3",
        "--ops",
        "30",
        "--share-size",
        "700",
    ])
    .await;
    assert!(ok, "{report:#}");
    let phases = report["phases"].as_array().unwrap();
    let names: Vec<&str> = phases
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["v1-push", "v1-pull", "v2-put", "v2-get"]);
    for p in phases {
        assert_eq!(p["ok"], 30, "{p:#}");
        assert_eq!(p["errors"], serde_json::json!({}), "{p:#}");
        assert_eq!(p["latency"]["count"], 30);
    }
}

#[tokio::test]
async fn fsync_reports_both_loops() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, report, _) = bench(&[
        "fsync",
        "--dir",
        dir.path().to_str().unwrap(),
        "--secs",
        "1",
    ])
    .await;
    assert!(ok, "{report:#}");
    assert!(report["raw"]["ops"].as_u64().unwrap() > 0);
    assert!(report["atomic_replace"]["ops"].as_u64().unwrap() > 0);
    // Scratch files are cleaned up.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
