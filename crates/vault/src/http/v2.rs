//! V2: named secrets of the identity the session token belongs to. The name
//! is validated on every route before anything touches the disk.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::body::{Fields, decode_share, read_limited};
use super::{ApiError, AppState};
use crate::config::MAX_WRITE_BODY;
use crate::identity::{Identity, SecretName};

/// Session, then per-identity rate limit, then the name.
fn authorize(
    s: &AppState,
    headers: &HeaderMap,
    name: Result<Path<String>, PathRejection>,
) -> Result<(Identity, SecretName), ApiError> {
    let id = s.session(headers)?;
    s.limits.check_identity(&id)?;
    let Path(name) = name.map_err(|_| ApiError::InvalidSecretName)?;
    Ok((id, SecretName::parse(&name)?))
}

/// `PUT /v2/vault/secrets/{name} {"share","version"}`.
pub async fn put(
    State(s): State<AppState>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let (id, name) = authorize(&s, &headers, name)?;
    let bytes = read_limited(&headers, body, MAX_WRITE_BODY, s.body_timeout).await?;
    let fields = Fields::parse(&bytes);
    let share = decode_share(fields.str("share")?)?;
    let version = fields.version()?;
    let meta = s.vault.put_secret(id, name.clone(), share, version).await?;
    Ok(Json(
        json!({ "status": "stored", "name": name.as_str(), "version": meta.version }),
    ))
}

/// `GET /v2/vault/secrets/{name}`.
pub async fn get(
    State(s): State<AppState>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let (id, name) = authorize(&s, &headers, name)?;
    let stored = s
        .vault
        .get_secret(id, name.clone())
        .await?
        .ok_or(ApiError::SecretNotFound)?;
    Ok(Json(json!({
        "share": STANDARD.encode(&stored.data),
        "name": name.as_str(),
        "version": stored.meta.version,
        "created_ns": stored.meta.created_ns,
        "updated_ns": stored.meta.updated_ns,
    })))
}

/// `DELETE /v2/vault/secrets/{name}`.
pub async fn delete(
    State(s): State<AppState>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let (id, name) = authorize(&s, &headers, name)?;
    if !s.vault.delete_secret(id, name.clone()).await? {
        return Err(ApiError::SecretNotFound);
    }
    Ok(Json(json!({ "status": "deleted", "name": name.as_str() })))
}

/// `GET /v2/vault/secrets`.
pub async fn list(State(s): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let id = s.session(&headers)?;
    s.limits.check_identity(&id)?;
    let secrets: Vec<Value> = s
        .vault
        .list_secrets(id)
        .await?
        .into_iter()
        .map(|e| json!({ "name": e.name, "version": e.meta.version, "size": e.meta.size }))
        .collect();
    Ok(Json(json!({ "secrets": secrets })))
}

/// `/v2/vault/secrets/` (empty name) or `/v2/vault/secrets/a/b` (a `/` in
/// the name) on any secret method: authenticated like the others, then
/// refused as an invalid name.
pub async fn invalid_name(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let id = s.session(&headers)?;
    s.limits.check_identity(&id)?;
    Err(ApiError::InvalidSecretName)
}
