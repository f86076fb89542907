//! `/v1/users`, `/v1/sessions`, `/v1/sessions/refresh`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::AppState;
use super::dto::{AuthResponse, OneTimePreKeyDto, SignedPreKeyDto, decode_b64};
use super::extract::{AuthLimited, AuthUser, IpLimited, JsonBody};
use crate::domain::accounts::Registration;
use crate::error::Result;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationRequest {
    username: String,
    password: String,
    identity_key: String,
    registration_id: u32,
    signed_pre_key: SignedPreKeyDto,
    one_time_pre_keys: Vec<OneTimePreKeyDto>,
}

#[derive(Deserialize)]
pub struct LoginRequest {
    username: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshTokenRequest {
    refresh_token: String,
}

pub async fn register(
    _: AuthLimited,
    State(state): State<AppState>,
    JsonBody(req): JsonBody<RegistrationRequest>,
) -> Result<(StatusCode, Json<AuthResponse>)> {
    let registration = Registration {
        username: req.username,
        password: req.password,
        identity_key: decode_b64(&req.identity_key, "identityKey")?,
        registration_id: req.registration_id,
        signed_pre_key: req.signed_pre_key.decode()?,
        one_time_pre_keys: OneTimePreKeyDto::decode_all(&req.one_time_pre_keys)?,
    };
    let (_, tokens) = state.relay.register(registration).await?;
    Ok((StatusCode::CREATED, Json(tokens.into())))
}

pub async fn login(
    _: AuthLimited,
    State(state): State<AppState>,
    JsonBody(req): JsonBody<LoginRequest>,
) -> Result<Json<AuthResponse>> {
    Ok(Json(
        state.relay.login(&req.username, req.password).await?.into(),
    ))
}

pub async fn logout(
    AuthUser(user): AuthUser,
    State(state): State<AppState>,
    JsonBody(req): JsonBody<RefreshTokenRequest>,
) -> Result<StatusCode> {
    state.relay.logout(user, &req.refresh_token).await?;
    Ok(StatusCode::OK)
}

/// No password is hashed here (the refresh token is 256 random bits, looked
/// up by its SHA-256), so the strict login bucket does not apply: a whole
/// NAT of clients refreshing every few minutes must not be refused.
pub async fn refresh(
    _: IpLimited,
    State(state): State<AppState>,
    JsonBody(req): JsonBody<RefreshTokenRequest>,
) -> Result<Json<AuthResponse>> {
    Ok(Json(state.relay.refresh(&req.refresh_token).await?.into()))
}
