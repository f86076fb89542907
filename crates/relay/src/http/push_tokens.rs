//! `PUT /v1/push-tokens`.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::AppState;
use super::extract::{AuthUser, JsonBody};
use crate::error::Result;

#[derive(Deserialize)]
pub struct RegisterPushTokenRequest {
    token: String,
    /// Optional provider hint (`"fcm"`, `"apns"`); `platform` is accepted as an alias.
    #[serde(default, alias = "platform")]
    r#type: Option<String>,
}

pub async fn put(
    AuthUser(user): AuthUser,
    State(state): State<AppState>,
    JsonBody(req): JsonBody<RegisterPushTokenRequest>,
) -> Result<StatusCode> {
    state
        .relay
        .set_push_token(user, &req.token, req.r#type.as_deref())
        .await?;
    Ok(StatusCode::OK)
}
