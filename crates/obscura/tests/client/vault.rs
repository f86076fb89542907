//! Backup and restore across real guardian processes.

use std::path::{Path, PathBuf};

use crate::support::{Client, guardian_list, guardians, stderr};

/// Every file named `name` under `dir`.
fn find_files(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == name) {
                found.push(path);
            }
        }
    }
    found
}

#[tokio::test]
async fn backup_to_five_then_restore_with_two_guardians_killed() {
    let mut gs = guardians(5).await;
    let list = guardian_list(&gs);
    let client = Client::new("http://127.0.0.1:9");
    let secret = b"the launch codes are 0000".to_vec();
    let out = client
        .run(&["backup", "--guardians", &list, "-"], &secret)
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(
        log.contains("any 2 restore it"),
        "K = max(2, 5/3) = 2: {log}"
    );
    assert_eq!(log.matches(": stored").count(), 5, "{log}");

    gs[1].server.kill().await;
    gs[3].server.kill().await;
    let target = client.profile.path().join("restored");
    let out = client
        .run(
            &[
                "restore",
                "--guardians",
                &list,
                "-o",
                target.to_str().unwrap(),
            ],
            b"",
        )
        .await;
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert_eq!(std::fs::read(&target).unwrap(), secret);
    // Restore stops once K = 2 shares verify (no newer stored backup can
    // hide in the other three), so the third live guardian and the dead
    // ones may or may not have answered by then.
    assert!(log.matches("share verified").count() >= 2, "{log}");
    for (i, g) in gs.iter().enumerate() {
        let line = log
            .lines()
            .find(|l| l.contains(&g.url()))
            .expect("a line per guardian");
        let expected: &[&str] = if i == 1 || i == 3 {
            &["unreachable", "not waited for"]
        } else {
            &["share verified", "not waited for"]
        };
        assert!(expected.iter().any(|e| line.contains(e)), "{log}");
    }

    // Stdout output works too, and a second backup gets a newer version.
    let out = client
        .run(&["backup", "--guardians", &list, "-"], b"v2")
        .await;
    assert!(
        !out.status.success(),
        "W = 4 of 5 cannot be reached with 3 alive: {}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("only 3 of 4"), "{}", stderr(&out));
}

#[tokio::test]
async fn restore_refuses_with_fewer_than_k_shares() {
    let mut gs = guardians(5).await;
    let list = guardian_list(&gs);
    let client = Client::new("http://127.0.0.1:9");
    client
        .ok(
            &["backup", "--guardians", &list, "--threshold", "3", "-"],
            b"secret",
        )
        .await;
    for g in &mut gs[..3] {
        g.server.kill().await;
    }
    let out = client
        .run(&["restore", "--guardians", &list, "--threshold", "3"], b"")
        .await;
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing is written on failure");
    assert!(
        stderr(&out).contains("only 2 share(s) available, 3 needed"),
        "{}",
        stderr(&out)
    );

    // Nothing backed up at all for another profile: refused too.
    let stranger = Client::new("http://127.0.0.1:9");
    let out = stranger
        .run(&["restore", "--guardians", &guardian_list(&gs[3..])], b"")
        .await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("has no share"), "{}", stderr(&out));
}

#[tokio::test]
async fn a_corrupted_share_is_detected_and_restore_uses_the_others() {
    let mut gs = guardians(5).await;
    let list = guardian_list(&gs);
    let client = Client::new("http://127.0.0.1:9");
    let secret = vec![0x5Au8; 4096];
    client
        .ok(&["backup", "--guardians", &list, "-"], &secret)
        .await;

    // Guardian 0 rots on disk: flip bytes of its stored share (not the x byte).
    let files = find_files(gs[0].dir.path(), "share.bin");
    assert_eq!(files.len(), 1, "one share stored on guardian 0: {files:?}");
    let mut bytes = std::fs::read(&files[0]).unwrap();
    assert!(bytes.len() > 100);
    let len = bytes.len();
    for b in &mut bytes[len - 50..] {
        *b ^= 0xA5;
    }
    std::fs::write(&files[0], &bytes).unwrap();
    // Leave it with only two good guardians besides the bad one.
    gs[3].server.kill().await;
    gs[4].server.kill().await;

    let target = client.profile.path().join("restored");
    let out = client
        .run(
            &[
                "restore",
                "--guardians",
                &list,
                "-o",
                target.to_str().unwrap(),
            ],
            b"",
        )
        .await;
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert_eq!(std::fs::read(&target).unwrap(), secret);
    let bad_line = log
        .lines()
        .find(|l| l.contains(&gs[0].url()))
        .expect("a line for guardian 0");
    assert!(
        !bad_line.contains("share verified"),
        "the corrupt share must not count: {log}"
    );
    assert_eq!(log.matches("share verified").count(), 2, "{log}");
}

#[tokio::test]
async fn a_guardian_with_a_stale_version_is_ignored() {
    let mut gs = guardians(5).await;
    let client = Client::new("http://127.0.0.1:9");
    client
        .ok(
            &["backup", "--guardians", &guardian_list(&gs), "-"],
            b"old secret",
        )
        .await;

    // Guardian 4 is down during the second backup (W = 4 is still met).
    gs[4].server.kill().await;
    let out = client
        .run(
            &["backup", "--guardians", &guardian_list(&gs), "-"],
            b"new secret",
        )
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    gs[4].server.restart().await.unwrap();

    // Guardian 4 is back with the old share, on a new port.
    let list = guardian_list(&gs);
    let out = client.run(&["restore", "--guardians", &list], b"").await;
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert_eq!(out.stdout, b"new secret");
    let stale_line = log
        .lines()
        .find(|l| l.contains(&gs[4].url()))
        .expect("a line for guardian 4");
    assert!(
        stale_line.contains("older backup")
            || stale_line.contains("ignored")
            || stale_line.contains("not waited for"),
        "{log}"
    );

    // Only guardians 3 and 4 reachable: one new share and one old one are
    // not K = 2 agreeing shares of anything, so restore refuses rather than
    // mixing them.
    for g in &mut gs[..3] {
        g.server.kill().await;
    }
    let out = client.run(&["restore", "--guardians", &list], b"").await;
    assert!(!out.status.success(), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn named_v2_secrets_round_trip_and_are_separate() {
    let gs = guardians(3).await;
    let list = guardian_list(&gs);
    let client = Client::new("http://127.0.0.1:9");
    client
        .ok(
            &["backup", "--guardians", &list, "--name", "wallet-seed", "-"],
            b"seed words",
        )
        .await;
    client
        .ok(
            &["backup", "--guardians", &list, "--name", "api_key", "-"],
            b"sk-123",
        )
        .await;
    client
        .ok(
            &["backup", "--guardians", &list, "--name", "wallet-seed", "-"],
            b"seed words v2",
        )
        .await;
    let out = client
        .ok(
            &["restore", "--guardians", &list, "--name", "wallet-seed"],
            b"",
        )
        .await;
    assert_eq!(out, "seed words v2");
    let out = client
        .ok(&["restore", "--guardians", &list, "--name", "api_key"], b"")
        .await;
    assert_eq!(out, "sk-123");
    let out = client
        .run(&["restore", "--guardians", &list, "--name", "missing"], b"")
        .await;
    assert!(!out.status.success());
    let out = client
        .run(
            &["backup", "--guardians", &list, "--name", "../escape", "-"],
            b"x",
        )
        .await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid secret name"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn sdk_restores_what_the_sdk_backed_up_and_versions_increase() {
    use obscura_client::vault::{self, VaultClient};
    let gs = guardians(3).await;
    let urls: Vec<String> = gs.iter().map(|g| g.url()).collect();
    let identity = vault::identity_from_secret(b"sdk test identity secret");
    let client = VaultClient::new(&urls, &identity, std::time::Duration::from_secs(10)).unwrap();
    let v1 = vault::next_version(0);
    let report = client
        .backup(b"first", None, None, v1, |_| {})
        .await
        .unwrap();
    assert_eq!(report.stored, 3);
    // A replayed (equal) version is refused by every guardian's anti-rollback check.
    let err = client
        .backup(b"replay", None, None, v1, |_| {})
        .await
        .unwrap_err();
    match err {
        vault::VaultError::QuorumNotReached {
            stored: 0,
            outcomes,
            ..
        } => {
            assert!(outcomes.iter().all(|o| matches!(
                o.outcome,
                vault::Outcome::Failed(vault::GuardianError::StaleVersion)
                    | vault::Outcome::Failed(vault::GuardianError::Http { status: 400, .. })
            )))
        }
        other => panic!("expected a refused stale version, got {other:?}"),
    }
    let v2 = vault::next_version(v1);
    client
        .backup(b"second", None, None, v2, |_| {})
        .await
        .unwrap();
    let restored = client.restore(None, None, |_| {}).await.unwrap();
    assert_eq!(restored.secret.as_slice(), b"second");
    assert_eq!(restored.version, v2);
}

#[tokio::test]
async fn a_guardian_serving_a_wrong_share_is_outvoted() {
    use obscura_client::vault::{self, Guardian};
    let gs = guardians(3).await;
    let list = guardian_list(&gs);
    let client = Client::new("http://127.0.0.1:9");
    client
        .ok(&["backup", "--guardians", &list, "-"], b"the real secret")
        .await;

    // Guardian 0 turns faulty: it now holds (and serves, checksum and all) a
    // share of the right shape and a newer version that belongs to nothing.
    let vault_key = std::fs::read(client.profile.path().join("vault.key")).unwrap();
    let identity = vault::identity_from_secret(&vault_key);
    let faulty = Guardian::new(reqwest::Client::new(), &gs[0].url(), &identity);
    let pulled = faulty
        .pull()
        .await
        .unwrap()
        .expect("guardian 0 holds a share");
    let mut wrong = pulled.share.clone();
    for b in &mut wrong[1..] {
        *b = b.wrapping_mul(7).wrapping_add(1);
    }
    let newer = vault::next_version(u64::MAX / 2);
    faulty.push(&wrong, newer).await.unwrap();

    let out = client.run(&["restore", "--guardians", &list], b"").await;
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert_eq!(out.stdout, b"the real secret");
    let line = log
        .lines()
        .find(|l| l.contains(&gs[0].url()))
        .expect("a line for guardian 0");
    // Flagged, or not needed: restore may finish on the two good shares
    // before the faulty one arrives.
    assert!(
        line.contains("does not verify") || line.contains("not waited for"),
        "{log}"
    );
}

#[tokio::test]
async fn a_guardian_that_never_answers_times_out_without_blocking_the_others() {
    // A black hole: accepts connections, never answers.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole_url = format!("http://{}", hole.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = hole.accept().await {
            held.push(socket);
        }
    });
    let gs = guardians(4).await;
    let mut urls: Vec<String> = gs.iter().map(|g| g.url()).collect();
    urls.insert(2, hole_url.clone());
    let list = urls.join(",");
    let client = Client::new("http://127.0.0.1:9");

    let out = client
        .run(
            &["backup", "--guardians", &list, "--timeout", "1", "-"],
            b"patience",
        )
        .await;
    let log = stderr(&out);
    assert!(
        out.status.success(),
        "W = 4 of 5 reached without the silent one: {log}"
    );
    assert!(
        log.contains(&format!("{hole_url}: failed: timed out")),
        "{log}"
    );

    let out = client
        .run(&["restore", "--guardians", &list, "--timeout", "1"], b"")
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, b"patience");
}

/// A black hole: accepts connections and never answers. Returns its URL.
async fn black_hole() -> String {
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", hole.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = hole.accept().await {
            held.push(socket);
        }
    });
    url
}

/// Line of `log` about the guardian at `url`.
fn line_for<'a>(log: &'a str, url: &str) -> &'a str {
    // "URL: " so that port 4123 does not match port 41234.
    let prefix = format!("{url}: ");
    log.lines()
        .find(|l| l.contains(&prefix))
        .unwrap_or_else(|| panic!("a line for {url}: {log}"))
}

// The restores below use `--timeout 600`, far beyond `run_cli`'s 120 s
// limit: had restore waited for the silent guardian, the CLI would not
// finish in time and `run_cli` would panic. No timing is measured.

#[tokio::test]
async fn restore_finishes_at_k_agreeing_shares_without_waiting_for_a_silent_guardian() {
    let gs = guardians(3).await;
    let client = Client::new("http://127.0.0.1:9");
    client
        .ok(
            &["backup", "--guardians", &guardian_list(&gs), "-"],
            b"no need to wait",
        )
        .await;

    // Guardian 3 (x = 3) is replaced by a black hole; K = 2 of N = 3.
    let hole = black_hole().await;
    let list = format!("{},{},{hole}", gs[0].url(), gs[1].url());
    let out = client
        .run(&["restore", "--guardians", &list, "--timeout", "600"], b"")
        .await;
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert_eq!(out.stdout, b"no need to wait");
    assert_eq!(log.matches("share verified").count(), 2, "{log}");
    assert!(line_for(&log, &hole).contains("not waited for"), "{log}");
}

#[tokio::test]
async fn restore_outvotes_a_wrong_share_and_still_skips_a_silent_guardian() {
    use obscura_client::vault::{self, Guardian};
    let gs = guardians(4).await;
    let client = Client::new("http://127.0.0.1:9");
    client
        .ok(
            &["backup", "--guardians", &guardian_list(&gs), "-"],
            b"outvoted and quick",
        )
        .await;

    // Guardian 0 turns faulty (a wrong share of the right shape, newer
    // version); guardian 3 is replaced by a black hole. K = 2 of N = 4.
    // If the wrong share is among the first two answers, restore must keep
    // waiting for guardian 2 instead of failing.
    let vault_key = std::fs::read(client.profile.path().join("vault.key")).unwrap();
    let faulty = Guardian::new(
        reqwest::Client::new(),
        &gs[0].url(),
        &vault::identity_from_secret(&vault_key),
    );
    let mut wrong = faulty.pull().await.unwrap().expect("a share").share;
    for b in &mut wrong[1..] {
        *b = b.wrapping_mul(7).wrapping_add(1);
    }
    faulty
        .push(&wrong, vault::next_version(u64::MAX / 2))
        .await
        .unwrap();

    let hole = black_hole().await;
    let list = format!("{},{},{},{hole}", gs[0].url(), gs[1].url(), gs[2].url());
    let out = client
        .run(&["restore", "--guardians", &list, "--timeout", "600"], b"")
        .await;
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert_eq!(out.stdout, b"outvoted and quick");
    assert_eq!(log.matches("share verified").count(), 2, "{log}");
    assert!(
        !line_for(&log, &gs[0].url()).contains("share verified"),
        "{log}"
    );
    assert!(line_for(&log, &hole).contains("not waited for"), "{log}");
}

#[tokio::test]
async fn a_single_guardian_is_the_local_key_case() {
    let gs = guardians(1).await;
    let list = guardian_list(&gs);
    let client = Client::new("http://127.0.0.1:9");
    let out = client
        .run(&["backup", "--guardians", &list, "-"], b"solo")
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("any 1 restore it, 1 must store it"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        client.ok(&["restore", "--guardians", &list], b"").await,
        "solo"
    );
}

/// `--plain` is the ecosystem's format (`shamir-shares.md`) both ways: our
/// plain backup combines into the secret by the spec's rule alone, and
/// another client's split (no envelope) restores with `--plain` — while the
/// default restore refuses such shares and says why.
#[tokio::test]
async fn plain_backups_are_the_ecosystem_format_both_ways() {
    use obscura_client::shamir::{self, Share};
    use obscura_client::vault::{self, Guardian};
    let gs = guardians(3).await;
    let list = guardian_list(&gs);
    let client = Client::new("http://127.0.0.1:9");
    client
        .ok(
            &["backup", "--plain", "--guardians", &list, "-"],
            b"plain secret",
        )
        .await;
    let vault_key = std::fs::read(client.profile.path().join("vault.key")).unwrap();
    let identity = vault::identity_from_secret(&vault_key);
    let at = |i: usize| Guardian::new(reqwest::Client::new(), &gs[i].url(), &identity);

    // Ours → theirs: any K = 2 of the shares, combined as the spec says.
    let mut shares = Vec::new();
    for i in [2, 0] {
        let pulled = at(i).pull().await.unwrap().expect("a share");
        shares.push(Share::from_bytes(&pulled.share).unwrap());
    }
    assert_eq!(
        shamir::combine(&shares).unwrap().as_slice(),
        b"plain secret"
    );
    let out = client
        .run(&["restore", "--plain", "--guardians", &list], b"")
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, b"plain secret");
    assert!(stderr(&out).contains("not verified"), "{}", stderr(&out));

    // Theirs → ours: another client's split of a named secret, pushed
    // through the guardians' API.
    let theirs = shamir::split(b"from another client", 2, 3, &mut rand_core::OsRng).unwrap();
    let version = vault::next_version(0);
    for (i, share) in theirs.iter().enumerate() {
        at(i)
            .put_secret("shared", &share.to_bytes(), version)
            .await
            .unwrap();
    }
    let restore = |plain: bool| {
        let mut args = vec!["restore", "--name", "shared", "--guardians", &list];
        if plain {
            args.push("--plain");
        }
        let client = &client;
        async move { client.run(&args, b"").await }
    };
    let out = restore(true).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, b"from another client");
    let out = restore(false).await;
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(stderr(&out).contains("try --plain"), "{}", stderr(&out));
}
