//! Management port (/livez, /readyz) and the served OpenAPI document.

use crate::support::*;

#[backend_test]
async fn livez_and_readyz_on_the_management_port() {
    let relay = Relay::start().await;
    for path in ["/livez", "/readyz"] {
        let resp = relay.http.get(relay.mgmt_url(path)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{path}");
    }
    assert_ne!(
        relay.server.addr("mgmt"),
        relay.server.addr("http"),
        "separate listener"
    );
}

#[backend_test]
async fn openapi_yaml_is_valid_and_lists_every_path() {
    let relay = Relay::start().await;
    let resp = relay
        .http
        .get(relay.url("/openapi.yaml"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_request_id(resp.headers());
    let text = resp.text().await.unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("/openapi.yaml parses as YAML");
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "openapi version field"
    );
    let paths = doc["paths"]
        .as_mapping()
        .expect("paths is a mapping (indentation intact)");
    let expected: &[(&str, &[&str])] = &[
        ("/v1/users", &["post"]),
        ("/v1/sessions", &["post", "delete"]),
        ("/v1/sessions/refresh", &["post"]),
        ("/v1/keys", &["post"]),
        ("/v1/keys/{userId}", &["get"]),
        ("/v1/messages/{recipientId}", &["post"]),
        ("/v1/gateway", &["get"]),
        ("/v1/attachments", &["post"]),
        ("/v1/attachments/{id}", &["get"]),
        ("/v1/push-tokens", &["put"]),
    ];
    for (path, methods) in expected {
        let item = paths
            .get(*path)
            .unwrap_or_else(|| panic!("path {path} missing"));
        for m in *methods {
            assert!(
                item.get(*m).and_then(|op| op.get("responses")).is_some(),
                "{m} {path} with responses"
            );
        }
    }
    // The documented statuses include every one the contract lists.
    let statuses: &[(&str, &str, &[&str])] = &[
        ("/v1/users", "post", &["201", "400", "409", "429"]),
        ("/v1/sessions", "post", &["200", "401", "429"]),
        ("/v1/sessions", "delete", &["200", "401"]),
        ("/v1/sessions/refresh", "post", &["200", "401"]),
        ("/v1/keys", "post", &["200", "400", "401", "429"]),
        ("/v1/keys/{userId}", "get", &["200", "404", "429"]),
        (
            "/v1/messages/{recipientId}",
            "post",
            &["201", "400", "401", "404", "429"],
        ),
        ("/v1/gateway", "get", &["101", "401", "429"]),
        ("/v1/attachments", "post", &["201", "400", "401", "429"]),
        ("/v1/attachments/{id}", "get", &["200", "401", "404", "429"]),
        ("/v1/push-tokens", "put", &["200", "400", "401", "429"]),
    ];
    for (path, method, codes) in statuses {
        let responses = &doc["paths"][*path][*method]["responses"];
        for code in *codes {
            let listed = responses.get(*code).is_some()
                || code
                    .parse::<u64>()
                    .is_ok_and(|n| responses.get(serde_yaml::Value::from(n)).is_some());
            assert!(listed, "{method} {path} does not document {code}");
        }
    }
    let schemas = doc["components"]["schemas"]
        .as_mapping()
        .expect("components.schemas");
    for name in [
        "ErrorResponse",
        "AuthResponse",
        "LoginRequest",
        "LogoutRequest",
        "RefreshRequest",
        "RegisterPushTokenRequest",
        "RegistrationRequest",
        "PreKeyUploadRequest",
        "PreKeyBundleResponse",
        "SignedPreKey",
        "OneTimePreKey",
        "AttachmentResponse",
    ] {
        assert!(schemas.get(name).is_some(), "schema {name} missing");
    }
    assert!(
        doc["components"]["schemas"]["AuthResponse"]["properties"]["expiresAt"].is_mapping(),
        "nested structure survived (AuthResponse.properties.expiresAt)"
    );
}
