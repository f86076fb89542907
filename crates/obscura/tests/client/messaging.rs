//! Accounts, end-to-end encrypted messages and attachments through a real relay.

use std::os::unix::fs::PermissionsExt;

use crate::support::{Client, relay};

fn listen_json(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).expect("one JSON message per line"))
        .collect()
}

#[tokio::test]
async fn two_users_exchange_encrypted_messages_both_ways() {
    let (relay, _dir) = relay().await;
    let url = relay.url("http");
    let alice = Client::new(&url);
    let bob = Client::new(&url);
    let alice_id = alice
        .ok(&["account", "register", "--username", "alice"], b"")
        .await
        .trim()
        .to_string();
    let bob_id = bob
        .ok(&["account", "register", "--username", "bob"], b"")
        .await
        .trim()
        .to_string();
    assert_eq!(alice_id.len(), 36, "a UUID: {alice_id}");
    assert_ne!(alice_id, bob_id);

    // Private key material is 0600 in a 0700 profile.
    for file in ["keys.json", "session.json"] {
        let mode = std::fs::metadata(alice.profile.path().join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    let keys = std::fs::read_to_string(alice.profile.path().join("keys.json")).unwrap();

    // Alice → Bob from a file, Bob → Alice from stdin.
    let note = alice.profile.path().join("note.txt");
    std::fs::write(&note, "hello bob, this is alice").unwrap();
    alice
        .ok(&["send", &bob_id, note.to_str().unwrap()], b"")
        .await;
    alice
        .ok(&["send", &bob_id, "-"], "second: ünïcode".as_bytes())
        .await;
    bob.ok(&["send", &alice_id, "-"], b"hi alice, bob here")
        .await;

    let got = listen_json(
        &bob.ok(
            &["listen", "--json", "--count", "2", "--idle-timeout", "30"],
            b"",
        )
        .await,
    );
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["from"], alice_id.as_str());
    assert_eq!(got[0]["to"], bob_id.as_str());
    assert_eq!(got[0]["text"], "hello bob, this is alice");
    assert_eq!(got[1]["text"], "second: ünïcode");

    let got = listen_json(
        &alice
            .ok(
                &["listen", "--json", "--count", "1", "--idle-timeout", "30"],
                b"",
            )
            .await,
    );
    assert_eq!(got[0]["from"], bob_id.as_str());
    assert_eq!(got[0]["text"], "hi alice, bob here");

    // Nothing was rejected, and the ciphertext never contained the plaintext:
    // the stored files are the decrypted copies, in the profile only.
    let rejected = std::fs::read_dir(bob.profile.path().join("inbox/rejected"))
        .unwrap()
        .count();
    assert_eq!(rejected, 0);
    // Receiving consumed one-time pre-keys: Bob's key file changed.
    assert_ne!(
        std::fs::read_to_string(bob.profile.path().join("keys.json")).unwrap(),
        keys
    );

    // Acknowledged messages are not shown again.
    let again = bob
        .ok(&["listen", "--json", "--idle-timeout", "1"], b"")
        .await;
    assert!(again.trim().is_empty(), "redelivered: {again}");
}

#[tokio::test]
async fn a_changed_identity_key_is_refused_until_trusted() {
    let (relay, _dir) = relay().await;
    let url = relay.url("http");
    let alice = Client::new(&url);
    let bob = Client::new(&url);
    alice
        .ok(&["account", "register", "--username", "alice"], b"")
        .await;
    let bob_id = bob
        .ok(&["account", "register", "--username", "bob"], b"")
        .await
        .trim()
        .to_string();
    alice.ok(&["send", &bob_id, "-"], b"first").await;

    // Bob logs in from a fresh device: a new identity key (takeover).
    let bob2 = Client::new(&url);
    bob2.ok(&["account", "login", "--username", "bob"], b"")
        .await;
    let out = alice.run(&["send", &bob_id, "-"], b"second").await;
    assert!(!out.status.success());
    assert!(
        crate::support::stderr(&out).contains("identity key"),
        "{}",
        crate::support::stderr(&out)
    );
    alice
        .ok(&["send", &bob_id, "-", "--trust-new-identity"], b"third")
        .await;
    let got = listen_json(
        &bob2
            .ok(
                &["listen", "--json", "--count", "1", "--idle-timeout", "30"],
                b"",
            )
            .await,
    );
    assert_eq!(got[0]["text"], "third");
}

#[tokio::test]
async fn logout_revokes_the_session() {
    let (relay, _dir) = relay().await;
    let alice = Client::new(&relay.url("http"));
    alice
        .ok(&["account", "register", "--username", "alice"], b"")
        .await;
    alice.ok(&["account", "whoami"], b"").await;
    alice.ok(&["account", "logout"], b"").await;
    assert!(!alice.profile.path().join("session.json").exists());
    let out = alice.run(&["account", "whoami"], b"").await;
    assert!(!out.status.success());
    alice
        .ok(&["account", "login", "--username", "alice"], b"")
        .await;
    alice.ok(&["keys", "refill", "--count", "5"], b"").await;
}

#[tokio::test]
async fn attachments_round_trip_encrypted() {
    let (relay, _dir) = relay().await;
    let alice = Client::new(&relay.url("http"));
    alice
        .ok(&["account", "register", "--username", "alice"], b"")
        .await;
    let data: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let input = alice.profile.path().join("big.bin");
    std::fs::write(&input, &data).unwrap();
    let reference = alice
        .ok(&["attach", "put", input.to_str().unwrap()], b"")
        .await
        .trim()
        .to_string();
    let (id, key) = reference.split_once('#').expect("<id>#<key>");
    assert_eq!(id.len(), 36);

    let output = alice.profile.path().join("back.bin");
    alice
        .ok(
            &["attach", "get", &reference, "-o", output.to_str().unwrap()],
            b"",
        )
        .await;
    assert_eq!(std::fs::read(&output).unwrap(), data);

    // The relay stores ciphertext: fetching it raw does not give the file.
    let session: serde_json::Value =
        serde_json::from_slice(&std::fs::read(alice.profile.path().join("session.json")).unwrap())
            .unwrap();
    let raw = reqwest::Client::new()
        .get(format!("{}/v1/attachments/{id}", relay.url("http")))
        .bearer_auth(session["accessToken"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(raw.len() > data.len());
    assert!(!raw.windows(64).any(|w| w == &data[1000..1064]));

    // A wrong key fails and leaves no output file.
    let wrong = format!("{id}#{}", "A".repeat(key.len()));
    let bad_out = alice.profile.path().join("bad.bin");
    let out = alice
        .run(
            &["attach", "get", &wrong, "-o", bad_out.to_str().unwrap()],
            b"",
        )
        .await;
    assert!(!out.status.success());
    assert!(!bad_out.exists());
}

#[tokio::test]
async fn listen_refills_one_time_pre_keys_when_the_relay_runs_low() {
    let (relay, _dir) = crate::support::relay_with(&["--prekey-min-threshold", "50"]).await;
    let url = relay.url("http");
    let bob = Client::new(&url);
    let bob_id = bob
        .ok(&["account", "register", "--username", "bob"], b"")
        .await
        .trim()
        .to_string();
    // Someone fetches 60 of Bob's 100 bundles, consuming one-time pre-keys.
    let http = reqwest::Client::new();
    for _ in 0..60 {
        let bundle: serde_json::Value = http
            .get(format!("{url}/v1/keys/{bob_id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(bundle["oneTimePreKey"].is_object());
    }
    let out = bob.run(&["listen", "--idle-timeout", "2"], b"").await;
    let log = crate::support::stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("relay holds 40 one-time pre-keys (threshold 50): published 60 more"),
        "{log}"
    );

    // The relay hands out the new keys, signed pre-key rotated (id 2).
    let bundle: serde_json::Value = http
        .get(format!("{url}/v1/keys/{bob_id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bundle["signedPreKey"]["keyId"], 2);
    let again = bob.run(&["listen", "--idle-timeout", "1"], b"").await;
    assert!(
        !crate::support::stderr(&again).contains("published"),
        "no second refill needed"
    );
}

#[tokio::test]
async fn access_tokens_are_refreshed_transparently() {
    // Tokens live 5 s, under the client's 30 s refresh margin: every command
    // refreshes first, and must persist the rotated refresh token.
    let (relay, _dir) = crate::support::relay_with(&["--access-token-ttl-secs", "5"]).await;
    let alice = Client::new(&relay.url("http"));
    alice
        .ok(&["account", "register", "--username", "alice"], b"")
        .await;
    let refresh_token = || {
        let session: serde_json::Value = serde_json::from_slice(
            &std::fs::read(alice.profile.path().join("session.json")).unwrap(),
        )
        .unwrap();
        session["refreshToken"].as_str().unwrap().to_string()
    };
    let first = refresh_token();
    alice.ok(&["keys", "refill", "--count", "1"], b"").await;
    let second = refresh_token();
    assert_ne!(first, second, "the rotated refresh token is saved");
    // The saved token is the live one: the next refresh works too.
    alice.ok(&["keys", "refill", "--count", "1"], b"").await;
    assert_ne!(refresh_token(), second);
}

#[tokio::test]
async fn listen_reconnects_after_the_relay_restarts() {
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, BufReader};

    // A fixed port, so the restarted relay is where the listener expects it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen_addr = format!("127.0.0.1:{port}");
    let (mut relay, _dir) = crate::support::relay_with(&["--listen", &listen_addr]).await;
    let url = relay.url("http");
    let alice = Client::new(&url);
    let bob = Client::new(&url);
    alice
        .ok(&["account", "register", "--username", "alice"], b"")
        .await;
    let bob_id = bob
        .ok(&["account", "register", "--username", "bob"], b"")
        .await
        .trim()
        .to_string();

    let mut listener = tokio::process::Command::new(crate::support::BIN)
        .args(["listen", "--json", "--count", "1", "--idle-timeout", "60"])
        .env("OBSCURA_PROFILE", bob.profile.path())
        .env("OBSCURA_RELAY", &url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(listener.stderr.take().unwrap()).lines();
    let wait_for = async |lines: &mut tokio::io::Lines<_>, what: &str| {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(what) {
                return;
            }
        }
        panic!("the listener exited before printing {what:?}");
    };
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        wait_for(&mut stderr, "listening as"),
    )
    .await
    .expect("listener connects");

    relay.restart().await.unwrap();
    assert_eq!(relay.url("http"), url, "same address after restart");
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        wait_for(&mut stderr, "reconnected"),
    )
    .await
    .expect("listener reconnects");
    alice
        .ok(&["send", &bob_id, "-"], b"after the restart")
        .await;

    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        listener.wait_with_output(),
    )
    .await
    .expect("listener finishes")
    .unwrap();
    assert!(out.status.success());
    let got = listen_json(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(got[0]["text"], "after the restart");
}
