//! `GET /openapi.yaml`: the API contract as served by this relay.

use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;

/// The OpenAPI 3.0.3 document (kept in step with the handlers).
pub const OPENAPI_YAML: &str = include_str!("../../openapi.yaml");

pub async fn serve() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/yaml"),
        )],
        OPENAPI_YAML,
    )
}

#[cfg(test)]
mod tests {
    use super::OPENAPI_YAML;

    #[test]
    fn openapi_document_parses_and_lists_every_route() {
        let doc: serde_yaml::Value = serde_yaml::from_str(OPENAPI_YAML).expect("valid YAML");
        assert_eq!(doc["openapi"].as_str(), Some("3.0.3"));
        let paths = doc["paths"].as_mapping().expect("paths");
        for path in [
            "/v1/users",
            "/v1/sessions",
            "/v1/sessions/refresh",
            "/v1/keys",
            "/v1/keys/{userId}",
            "/v1/messages/{recipientId}",
            "/v1/gateway",
            "/v1/attachments",
            "/v1/attachments/{id}",
            "/v1/push-tokens",
        ] {
            assert!(paths.contains_key(path), "missing {path}");
        }
        let schemas = &doc["components"]["schemas"];
        for schema in [
            "ErrorResponse",
            "AuthResponse",
            "RegistrationRequest",
            "PreKeyBundleResponse",
            "AttachmentResponse",
        ] {
            assert!(schemas[schema].is_mapping(), "missing schema {schema}");
        }
        let too_many = &doc["components"]["responses"]["TooManyRequestsError"]["headers"];
        assert!(too_many["retry-after"].is_mapping());
        assert!(too_many["x-request-id"].is_mapping());
    }
}
