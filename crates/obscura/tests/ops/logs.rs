//! `--log-format json`: one JSON object per line, the request id on every
//! line of a request, and no secrets.

use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::support::{Device, TIMEOUT, unique_name};

#[tokio::test]
async fn json_logs_carry_the_request_id_and_no_secrets() {
    let dir = obscura_testkit::data_dir();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_obscura"))
        .args([
            "relay",
            "--log-format",
            "json",
            "--listen",
            "127.0.0.1:0",
            "--mgmt-listen",
            "127.0.0.1:0",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--argon2-memory-kib",
            "1024",
            "--argon2-iterations",
            "1",
        ])
        .env("OBSCURA_LOG", "info,tower_http=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("obscura starts");
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let http = tokio::time::timeout(TIMEOUT, async {
        loop {
            let line = stdout.next_line().await.unwrap().expect("listening line");
            if let Some(addr) = line.strip_prefix("listening http ") {
                return addr.to_owned();
            }
        }
    })
    .await
    .expect("relay listening");

    let password = "correct horse battery staple (log test)";
    let device = Device::new(1);
    let resp = reqwest::Client::new()
        .post(format!("http://{http}/v1/users"))
        .header("x-request-id", "ops-log-test-1")
        .json(&device.registration_json(&unique_name("log"), password))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let token = resp.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = reqwest::Client::new()
        .put(format!("http://{http}/v1/push-tokens"))
        .header("x-request-id", "ops-log-test-2")
        .bearer_auth(&token)
        .json(&json!({"token": "push-token-that-must-not-be-logged"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    tokio::time::timeout(TIMEOUT, child.wait())
        .await
        .expect("graceful exit")
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();

    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    for id in ["ops-log-test-1", "ops-log-test-2"] {
        let of_request: Vec<&Value> = lines
            .iter()
            .filter(|l| l["span"]["request_id"] == id)
            .collect();
        assert!(
            of_request.len() >= 2,
            "the request's start and end are logged with its id: {stderr}"
        );
        assert!(of_request.iter().all(|l| l["span"]["path"].is_string()));
    }
    for secret in [password, &token, "push-token-that-must-not-be-logged"] {
        assert!(!stderr.contains(secret), "a secret was logged");
    }
}
