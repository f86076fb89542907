//! Guardians as a cluster: heartbeats and liveness, verify over the binary
//! protocol, and the framing rules of the peer port.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{BIN, Guardian, eventually, identity};

/// Free loopback ports for a mesh whose members must know each other's
/// peer ports up front.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

async fn guardian_ports(g: &Guardian) -> Vec<u16> {
    let (_, v) = g.get("/v1/vault/guardians").await;
    let mut ports: Vec<u16> = v["guardians"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["port"].as_u64().unwrap() as u16)
        .collect();
    ports.sort();
    ports
}

#[tokio::test]
async fn three_guardians_see_each_other_and_notice_a_death() {
    let peer_ports = free_ports(3);
    let peer_addr = |i: usize| format!("127.0.0.1:{}", peer_ports[i]);
    let mut gs = Vec::new();
    for i in 0..3 {
        let listen = peer_addr(i);
        let peers: Vec<String> = (0..3).filter(|j| *j != i).map(peer_addr).collect();
        let peers = peers.join(",");
        gs.push(
            Guardian::start(&[
                "--peer-listen",
                &listen,
                "--peers",
                &peers,
                "--heartbeat-interval-ms",
                "200",
                "--threshold",
                "2",
            ])
            .await,
        );
    }
    let mut http_ports: Vec<u16> = gs.iter().map(|g| g.server.addr("http").port()).collect();
    http_ports.sort();
    for g in &gs {
        eventually(20, "all three guardians listed", || async {
            guardian_ports(g).await == http_ports
        })
        .await;
        let (_, v) = g.get("/v1/vault/guardians").await;
        assert_eq!(
            (v["threshold"].clone(), v["total"].clone()),
            (json!(2), json!(3))
        );
        let (_, st) = g.get("/v1/vault/status").await;
        eventually(20, "peers alive", || async {
            let (_, st) = g.get("/v1/vault/status").await;
            st["peers"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["state"] == "alive")
        })
        .await;
        assert_eq!(st["peers"].as_array().unwrap().len(), 2);
    }

    let dead_http = gs[2].server.addr("http").port();
    gs[2].server.kill().await;
    let survivors: Vec<u16> = http_ports
        .iter()
        .copied()
        .filter(|p| *p != dead_http)
        .collect();
    for g in &gs[..2] {
        eventually(20, "dead guardian dropped from the listing", || async {
            guardian_ports(g).await == survivors
        })
        .await;
        eventually(20, "dead guardian marked dead", || async {
            let (_, st) = g.get("/v1/vault/status").await;
            st["peers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["peer"] == json!(peer_addr(2)) && p["state"] == "dead")
        })
        .await;
        let (_, v) = g.get("/v1/vault/guardians").await;
        assert_eq!(v["total"], 2);
    }
}

pub async fn verify_cli(peer: SocketAddr, id: &str) -> Value {
    let out = tokio::process::Command::new(BIN)
        .args([
            "guardian",
            "verify",
            "--peer",
            &peer.to_string(),
            "--identity",
            id,
        ])
        .env("OBSCURA_LOG", "warn")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn verify_reports_share_and_commitment_across_guardians() {
    let (a, b) = (Guardian::start(&[]).await, Guardian::start(&[]).await);
    let id = identity();
    let share = crate::common::random_bytes(2048);
    assert_eq!(a.push(&id, &share, 1).await.0, 200);
    assert_eq!(b.push(&id, b"different", 1).await.0, 200);

    let from_a = verify_cli(a.server.addr("peer"), &id).await;
    assert_eq!(from_a["has_share"], true);
    assert_eq!(from_a["commitment"], hex::encode(Sha256::digest(&share)));
    let from_b = verify_cli(b.server.addr("peer"), &id.to_uppercase()).await;
    assert_eq!(
        from_b["commitment"],
        hex::encode(Sha256::digest(b"different"))
    );

    let unknown = verify_cli(a.server.addr("peer"), &identity()).await;
    assert_eq!(
        (unknown["has_share"].clone(), unknown["commitment"].clone()),
        (json!(false), json!("0".repeat(64)))
    );

    // The same over a raw socket: 98-byte payload, identity echoed.
    let mut s = TcpStream::connect(a.server.addr("peer")).await.unwrap();
    let mut frame = vec![1u8, 0x03, 0, 0, 0, 65];
    frame.extend_from_slice(id.as_bytes());
    frame.push(64);
    s.write_all(&frame).await.unwrap();
    let mut resp = [0u8; 6 + 98];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut resp))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&resp[..6], &[1, 0x04, 0, 0, 0, 98]);
    assert_eq!(&resp[6..70], id.as_bytes());
    assert_eq!((resp[70], resp[71]), (64, 1));
    assert_eq!(&resp[72..], Sha256::digest(&share).as_slice());
}

fn heartbeat_frame(version: u8) -> Vec<u8> {
    let mut f = vec![version, 0x01, 0, 0, 0, 18];
    f.extend_from_slice(&[127, 0, 0, 1, 0x1d, 0x4c, 0, 0, 0, 0]);
    f.extend_from_slice(&1u64.to_be_bytes());
    f
}

#[tokio::test]
async fn wrong_version_frames_are_ignored() {
    let g = Guardian::start(&[]).await;
    let mut s = TcpStream::connect(g.server.addr("peer")).await.unwrap();
    // A version-2 verify request (which would be answered with 104 bytes),
    // then a version-1 heartbeat: the first bytes back must be the ack.
    let mut v2_verify = vec![2u8, 0x03, 0, 0, 0, 65];
    v2_verify.extend_from_slice(&[b'a'; 64]);
    v2_verify.push(64);
    s.write_all(&v2_verify).await.unwrap();
    s.write_all(&heartbeat_frame(1)).await.unwrap();
    let mut ack = [0u8; 6];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut ack))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ack, [1, 0x02, 0, 0, 0, 0]);
    // The connection is still usable.
    s.write_all(&heartbeat_frame(1)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut ack))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ack, [1, 0x02, 0, 0, 0, 0]);
}

#[tokio::test]
async fn oversized_frames_close_the_connection() {
    let g = Guardian::start(&[]).await;
    let mut s = TcpStream::connect(g.server.addr("peer")).await.unwrap();
    let len = (1024 * 1024 + 1u32).to_be_bytes();
    s.write_all(&[1, 0x01, len[0], len[1], len[2], len[3]])
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("connection not closed");
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    // The guardian itself is fine.
    assert_eq!(g.get("/v1/vault/health").await.0, 200);
}

#[tokio::test]
async fn verify_command_fails_cleanly_when_no_guardian_answers() {
    let port = free_ports(1)[0];
    let out = tokio::process::Command::new(BIN)
        .args([
            "guardian",
            "verify",
            "--peer",
            &format!("127.0.0.1:{port}"),
            "--identity",
            &identity(),
        ])
        .args(["--timeout-secs", "2"])
        .env("OBSCURA_LOG", "warn")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let bad = tokio::process::Command::new(BIN)
        .args([
            "guardian",
            "verify",
            "--peer",
            &format!("127.0.0.1:{port}"),
            "--identity",
            "xyz",
        ])
        .output()
        .await
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("identity must be exactly 64 hex characters")
    );
}
