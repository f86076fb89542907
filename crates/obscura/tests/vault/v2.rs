//! V2 secrets: error table, round trips, isolation, traversal, the limit.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::StreamExt;
use reqwest::Method;
use serde_json::json;

use crate::common::{Guardian, err, identity, random_bytes, raw_request};

#[tokio::test]
async fn secrets_error_table() {
    let g = Guardian::start(&[]).await;
    let token = g.session(&identity(), "v2").await;
    let path = "/v2/vault/secrets/my-key";
    let put_raw = |tok: Option<&str>, body: Vec<u8>, p: &str| {
        let mut req = g.client.put(g.url(p)).body(body);
        if let Some(t) = tok {
            req = req.header("x-session-token", t);
        }
        async move { crate::common::status_json(req.send().await.unwrap()).await }
    };
    let body = |v: serde_json::Value| v.to_string().into_bytes();

    // 401s, on every secrets route.
    for (method, p) in [
        (Method::PUT, path),
        (Method::GET, path),
        (Method::DELETE, path),
        (Method::GET, "/v2/vault/secrets"),
    ] {
        let r = g
            .client
            .request(method.clone(), g.url(p))
            .send()
            .await
            .unwrap();
        assert_eq!(
            crate::common::status_json(r).await,
            (401, err("missing session token")),
            "{method} {p}"
        );
        assert_eq!(
            g.v2(method.clone(), p, "bogus", None).await,
            (401, err("invalid session token")),
            "{method} {p}"
        );
    }
    // 400s of PUT.
    assert_eq!(
        put_raw(Some(&token), Vec::new(), path).await,
        (400, err("empty body"))
    );
    assert_eq!(
        put_raw(Some(&token), vec![b' '; 1024 * 1024 + 1], path).await,
        (400, err("request body too large"))
    );
    assert_eq!(
        put_raw(
            Some(&token),
            body(json!({"share": "AQ==", "version": 1})),
            "/v2/vault/secrets/bad.name"
        )
        .await,
        (400, err("invalid secret name"))
    );
    assert_eq!(
        put_raw(Some(&token), body(json!({"version": 1})), path).await,
        (400, err("missing share field"))
    );
    assert_eq!(
        put_raw(
            Some(&token),
            body(json!({"share": "@@", "version": 1})),
            path
        )
        .await,
        (400, err("invalid base64 in share"))
    );
    let too_big = STANDARD.encode(vec![0u8; 512 * 1024 + 1]);
    assert_eq!(
        put_raw(
            Some(&token),
            body(json!({"share": too_big, "version": 1})),
            path
        )
        .await,
        (400, err("share data too large"))
    );
    assert_eq!(
        put_raw(Some(&token), body(json!({"share": "", "version": 1})), path).await,
        (400, err("share data is empty"))
    );
    for v in ["-1", "1.0", "\"1\"", "null", "18446744073709551616"] {
        let b = format!(r#"{{"share":"AQ==","version":{v}}}"#).into_bytes();
        assert_eq!(
            put_raw(Some(&token), b, path).await,
            (400, err("missing or invalid version field")),
            "{v}"
        );
    }
    assert_eq!(
        g.put_secret(&token, "my-key", b"v3", 3).await,
        (
            200,
            json!({"status": "stored", "name": "my-key", "version": 3})
        )
    );
    for stale in [3, 2] {
        assert_eq!(
            g.put_secret(&token, "my-key", b"old", stale).await,
            (
                400,
                err("version must be greater than current stored version")
            )
        );
    }
    // 404s.
    assert_eq!(
        g.get_secret(&token, "nope").await,
        (404, err("secret not found"))
    );
    assert_eq!(
        g.v2(Method::DELETE, "/v2/vault/secrets/nope", &token, None)
            .await,
        (404, err("secret not found"))
    );
    // 405s.
    assert_eq!(
        g.v2(Method::POST, path, &token, None).await,
        (405, err("method not allowed"))
    );
    assert_eq!(
        g.v2(Method::DELETE, "/v2/vault/secrets", &token, None)
            .await,
        (405, err("method not allowed"))
    );
}

#[tokio::test]
async fn secrets_round_trip_list_and_delete() {
    let g = Guardian::start(&[]).await;
    let token = g.session(&identity(), "v2").await;
    assert_eq!(
        g.v2(Method::GET, "/v2/vault/secrets", &token, None).await,
        (200, json!({"secrets": []}))
    );
    let mut expected = Vec::new();
    for (name, size) in [("one-byte", 1usize), ("one_kib", 1024), ("max", 512 * 1024)] {
        let data = random_bytes(size);
        assert_eq!(g.put_secret(&token, name, &data, u64::MAX).await.0, 200);
        let (st, v) = g.get_secret(&token, name).await;
        assert_eq!(st, 200);
        assert_eq!(
            STANDARD.decode(v["share"].as_str().unwrap()).unwrap(),
            data,
            "{name}"
        );
        assert_eq!(
            (v["name"].as_str().unwrap(), v["version"].as_u64().unwrap()),
            (name, u64::MAX)
        );
        assert!(v["created_ns"].as_u64().unwrap() > 0);
        assert_eq!(v["created_ns"], v["updated_ns"]);
        expected.push(json!({"name": name, "version": u64::MAX, "size": size}));
    }
    expected.sort_by_key(|e| e["name"].as_str().unwrap().to_string());
    assert_eq!(
        g.v2(Method::GET, "/v2/vault/secrets", &token, None).await,
        (200, json!({"secrets": expected}))
    );

    // An update keeps created_ns and moves updated_ns.
    let first = g.get_secret(&token, "one-byte").await.1;
    assert_eq!(g.put_secret(&token, "one-byte-2", b"x", 1).await.0, 200);
    assert_eq!(g.put_secret(&token, "one_kib", b"y", 1).await.0, 400);

    assert_eq!(
        g.v2(Method::DELETE, "/v2/vault/secrets/one-byte", &token, None)
            .await,
        (200, json!({"status": "deleted", "name": "one-byte"}))
    );
    assert_eq!(
        g.get_secret(&token, "one-byte").await,
        (404, err("secret not found"))
    );
    assert!(first["created_ns"].as_u64().is_some());
}

#[tokio::test]
async fn identities_are_isolated() {
    let g = Guardian::start(&[]).await;
    let (alice, bob) = (identity(), identity());
    let (ta, tb) = (g.session(&alice, "v2").await, g.session(&bob, "v2").await);
    assert_eq!(g.put_secret(&ta, "shared-name", b"alice", 5).await.0, 200);
    assert_eq!(g.push(&alice, b"alice-v1", 1).await.0, 200);
    // Bob sees nothing of Alice's, and his writes land in his own space.
    assert_eq!(
        g.get_secret(&tb, "shared-name").await,
        (404, err("secret not found"))
    );
    assert_eq!(
        g.v2(Method::GET, "/v2/vault/secrets", &tb, None).await,
        (200, json!({"secrets": []}))
    );
    assert_eq!(
        g.v2(Method::DELETE, "/v2/vault/secrets/shared-name", &tb, None)
            .await
            .0,
        404
    );
    assert_eq!(g.put_secret(&tb, "shared-name", b"bob", 1).await.0, 200);
    assert_eq!(
        g.get_secret(&ta, "shared-name").await.1["share"],
        STANDARD.encode(b"alice")
    );
    assert_eq!(
        g.get_secret(&tb, "shared-name").await.1["share"],
        STANDARD.encode(b"bob")
    );
    assert_eq!(g.pull(&bob).await.0, 404);
    assert_eq!(
        g.pull(&alice).await.1["share"],
        STANDARD.encode(b"alice-v1")
    );
}

#[tokio::test]
async fn traversal_names_are_refused_on_every_route() {
    let g = Guardian::start(&[]).await;
    let (attacker, victim) = (identity(), identity());
    let (ta, tv) = (
        g.session(&attacker, "v2").await,
        g.session(&victim, "v2").await,
    );
    assert_eq!(g.put_secret(&tv, "canary", b"canary data", 9).await.0, 200);
    assert_eq!(g.push(&victim, b"victim share", 9).await.0, 200);
    let addr = g.server.addr("http");
    let long = "a".repeat(129);
    let names = [
        "..".to_string(),
        "%2e%2e".into(),
        "%2E%2E".into(),
        ".".into(),
        "a/b".into(),
        format!("..%2F{victim}%2Fcanary"),
        format!("../{victim}/canary"),
        format!("%2e%2e%2f..%2fshares%2f{victim}"),
        long,
        "".into(),
        "%00".into(),
        "%ff".into(),
    ];
    let put_body = r#"{"share":"AQ==","version":100}"#;
    for name in &names {
        for method in ["GET", "DELETE", "PUT"] {
            let body = if method == "PUT" { put_body } else { "" };
            let req = format!(
                "{method} /v2/vault/secrets/{name} HTTP/1.1\r\nHost: x\r\nX-Session-Token: {ta}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let (st, v) = raw_request(addr, &req).await;
            let refused = (st == 400 && v == err("invalid secret name"))
                || (st == 404 && v == err("not found"));
            assert!(refused, "{method} {name:?} → {st} {v}");
        }
    }
    // The victim's data is untouched, and nothing was written for the attacker.
    let (st, v) = g.get_secret(&tv, "canary").await;
    assert_eq!(
        (st, v["share"].clone(), v["version"].clone()),
        (200, json!(STANDARD.encode(b"canary data")), json!(9))
    );
    assert_eq!(
        g.v2(Method::GET, "/v2/vault/secrets", &tv, None).await.1["secrets"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        g.pull(&victim).await.1["share"],
        STANDARD.encode(b"victim share")
    );
    assert_eq!(
        g.v2(Method::GET, "/v2/vault/secrets", &ta, None).await,
        (200, json!({"secrets": []}))
    );
    let top: Vec<_> = std::fs::read_dir(g.data_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(top.len(), 3, "unexpected entries in the data dir: {top:?}");
    // Exact answers where the router does reach the name check.
    let req = format!(
        "GET /v2/vault/secrets/.. HTTP/1.1\r\nHost: x\r\nX-Session-Token: {ta}\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(
        raw_request(addr, &req).await,
        (400, err("invalid secret name"))
    );
    let req = format!(
        "DELETE /v2/vault/secrets/%2e%2e HTTP/1.1\r\nHost: x\r\nX-Session-Token: {ta}\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(
        raw_request(addr, &req).await,
        (400, err("invalid secret name"))
    );
    // A `/` inside the name is an invalid name too (not an unknown route),
    // for every secret method; without a session it is still a 401 first.
    for (method, path) in [
        ("GET", "/v2/vault/secrets/a/b"),
        ("DELETE", "/v2/vault/secrets/a/b/c"),
        ("PUT", "/v2/vault/secrets/a/"),
        ("GET", "/v2/vault/secrets/a%2Fb"),
    ] {
        let body = if method == "PUT" { put_body } else { "" };
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nX-Session-Token: {ta}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        assert_eq!(
            raw_request(addr, &req).await,
            (400, err("invalid secret name")),
            "{method} {path}"
        );
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(raw_request(addr, &req).await.0, 401, "{method} {path}");
    }
}

#[tokio::test]
async fn the_thousand_secret_limit() {
    let g = Guardian::start(&[]).await;
    let token = g.session(&identity(), "v2").await;
    // 1010 different names at once: exactly 1000 fit, whatever the order.
    let statuses: Vec<(u16, serde_json::Value)> = futures::stream::iter(0..1010)
        .map(|i| {
            let (g, token) = (&g, &token);
            async move { g.put_secret(token, &format!("s{i}"), b"x", 1).await }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert_eq!(statuses.iter().filter(|(st, _)| *st == 200).count(), 1000);
    let refused: Vec<_> = statuses.iter().filter(|(st, _)| *st != 200).collect();
    assert_eq!(refused.len(), 10);
    assert!(
        refused
            .iter()
            .all(|r| **r == (409, err("too many secrets"))),
        "{refused:?}"
    );
    assert_eq!(
        g.put_secret(&token, "one-too-many", b"x", 1).await,
        (409, err("too many secrets"))
    );
    let list = g.v2(Method::GET, "/v2/vault/secrets", &token, None).await.1;
    let listed: Vec<&str> = list["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), 1000);
    // Updating an existing one is not a new secret.
    assert_eq!(g.put_secret(&token, listed[0], b"y", 2).await.0, 200);
    // Deleting frees a slot.
    assert_eq!(
        g.v2(
            Method::DELETE,
            &format!("/v2/vault/secrets/{}", listed[1]),
            &token,
            None
        )
        .await
        .0,
        200
    );
    assert_eq!(g.put_secret(&token, "one-too-many", b"x", 1).await.0, 200);
    // The limit is per identity.
    let other = g.session(&identity(), "v2").await;
    assert_eq!(g.put_secret(&other, "s0", b"x", 1).await.0, 200);
}

#[tokio::test]
async fn concurrent_puts_of_one_version_have_one_winner() {
    let g = Guardian::start(&[]).await;
    let token = g.session(&identity(), "v2").await;
    let results = futures::future::join_all((0..20u8).map(|i| {
        let (g, token) = (&g, &token);
        async move { g.put_secret(token, "contended", &[i; 8], 3).await }
    }))
    .await;
    assert_eq!(
        results.iter().filter(|(st, _)| *st == 200).count(),
        1,
        "{results:?}"
    );
    let (_, v) = g.get_secret(&token, "contended").await;
    let winner = STANDARD.decode(v["share"].as_str().unwrap()).unwrap();
    assert!(
        winner.iter().all(|b| *b == winner[0]) && winner.len() == 8,
        "mixed writes: {winner:?}"
    );
}
