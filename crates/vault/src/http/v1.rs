//! V1: one anonymous share per identity.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::body::{Fields, decode_share, read_limited};
use super::{ApiError, AppState};
use crate::config::{MAX_PULL_BODY, MAX_WRITE_BODY};
use crate::identity::Identity;

/// `POST /v1/vault/push {"identity","share","version"}`. Checks run in the
/// order of the contract's error table.
pub async fn push(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let bytes = read_limited(&headers, body, MAX_WRITE_BODY, s.body_timeout).await?;
    let fields = Fields::parse(&bytes);
    let identity = fields.str("identity")?;
    let share = fields.str("share")?;
    let id = Identity::parse(identity)?;
    s.check_bearer(&headers, &id)?;
    s.limits.check_identity(&id)?;
    let share = decode_share(share)?;
    let version = fields.version()?;
    s.vault.push(id, share, version).await?;
    Ok(Json(json!({ "status": "stored" })))
}

/// `POST /v1/vault/pull {"identity"}`.
pub async fn pull(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let bytes = read_limited(&headers, body, MAX_PULL_BODY, s.body_timeout).await?;
    let id = Identity::parse(Fields::parse(&bytes).str("identity")?)?;
    s.check_bearer(&headers, &id)?;
    s.limits.check_identity(&id)?;
    let stored = s.vault.pull(id).await?.ok_or(ApiError::ShareNotFound)?;
    Ok(Json(json!({ "share": STANDARD.encode(&stored.data) })))
}
