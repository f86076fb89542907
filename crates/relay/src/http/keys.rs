//! `/v1/keys` (upload / takeover) and `/v1/keys/{userId}` (bundle).

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::dto::{OneTimePreKeyDto, SignedPreKeyDto, decode_b64, encode_b64};
use super::extract::{AuthUser, IpLimited, JsonBody, path_uuid};
use crate::domain::keys::KeyUploadRequest;
use crate::error::Result;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreKeyUploadRequest {
    #[serde(default)]
    identity_key: Option<String>,
    #[serde(default)]
    registration_id: Option<u32>,
    signed_pre_key: SignedPreKeyDto,
    one_time_pre_keys: Vec<OneTimePreKeyDto>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PreKeyBundleResponse {
    registration_id: u32,
    identity_key: String,
    signed_pre_key: SignedPreKeyDto,
    one_time_pre_key: Option<OneTimePreKeyDto>,
}

pub async fn upload(
    AuthUser(user): AuthUser,
    State(state): State<AppState>,
    JsonBody(req): JsonBody<PreKeyUploadRequest>,
) -> Result<StatusCode> {
    let request = KeyUploadRequest {
        identity_key: req
            .identity_key
            .as_deref()
            .map(|k| decode_b64(k, "identityKey"))
            .transpose()?,
        registration_id: req.registration_id,
        signed_pre_key: req.signed_pre_key.decode()?,
        one_time_pre_keys: OneTimePreKeyDto::decode_all(&req.one_time_pre_keys)?,
    };
    state.relay.upload_keys(user, request).await?;
    Ok(StatusCode::OK)
}

pub async fn bundle(
    _: IpLimited,
    State(state): State<AppState>,
    user_id: Result<Path<String>, PathRejection>,
) -> Result<Json<PreKeyBundleResponse>> {
    let bundle = state.relay.fetch_bundle(path_uuid(user_id)?).await?;
    Ok(Json(PreKeyBundleResponse {
        registration_id: bundle.identity.registration_id,
        identity_key: encode_b64(&bundle.identity.identity_key),
        signed_pre_key: SignedPreKeyDto::encode(&bundle.signed_pre_key),
        one_time_pre_key: bundle
            .one_time_pre_key
            .as_ref()
            .map(OneTimePreKeyDto::encode),
    }))
}
