//! `/v{1,2}/vault/auth/{challenge,session}`: the same protocol on both prefixes.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use super::body::{Fields, read_limited};
use super::{ApiError, AppState};
use crate::auth::Challenge;
use crate::config::MAX_OTHER_BODY;
use crate::identity::Identity;

#[derive(Serialize)]
pub struct ChallengeResponse {
    nonce: String,
    created_ns: i128,
    tag: String,
    expires_in_seconds: u64,
}

#[derive(Serialize)]
pub struct SessionResponse {
    session_token: String,
    expires_in_seconds: u64,
}

/// `POST …/auth/challenge {"identity"}`.
pub async fn challenge(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ChallengeResponse>, ApiError> {
    let bytes = read_limited(&headers, body, MAX_OTHER_BODY, s.body_timeout).await?;
    let id = Identity::parse(Fields::parse(&bytes).str("identity")?)?;
    let ch = s.auth.issue_challenge(&id);
    Ok(Json(ChallengeResponse {
        nonce: STANDARD.encode(ch.nonce),
        created_ns: ch.created_ns,
        tag: STANDARD.encode(ch.tag),
        expires_in_seconds: s.auth.challenge_ttl().as_secs(),
    }))
}

/// `POST …/auth/session {"identity","nonce","created_ns","tag"}`: redeems
/// the challenge (once) for a session token.
pub async fn session(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<SessionResponse>, ApiError> {
    let bytes = read_limited(&headers, body, MAX_OTHER_BODY, s.body_timeout).await?;
    let fields = Fields::parse(&bytes);
    let identity = fields.str("identity")?;
    let nonce = fields.str("nonce")?;
    let tag = fields.str("tag")?;
    let created_ns = fields.created_ns()?;
    let id = Identity::parse(identity)?;
    let ch = Challenge {
        nonce: decode32(nonce)?,
        created_ns,
        tag: decode32(tag)?,
    };
    s.auth.redeem_challenge(&id, &ch)?;
    Ok(Json(SessionResponse {
        session_token: s.auth.issue_session(&id),
        expires_in_seconds: s.auth.session_ttl().as_secs(),
    }))
}

/// 32 bytes in base64; anything else cannot be a challenge we issued.
fn decode32(b64: &str) -> Result<[u8; 32], ApiError> {
    STANDARD
        .decode(b64)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or(ApiError::InvalidChallenge)
}
