//! JSON bodies of the relay API (`obscura-server-api.openapi.txt`), field
//! names exactly as the contract spells them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedPreKey {
    pub key_id: u32,
    #[serde(with = "crate::b64")]
    pub public_key: Vec<u8>,
    #[serde(with = "crate::b64")]
    pub signature: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OneTimePreKey {
    pub key_id: u32,
    #[serde(with = "crate::b64")]
    pub public_key: Vec<u8>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationRequest<'a> {
    pub username: &'a str,
    pub password: &'a str,
    #[serde(flatten)]
    pub keys: PreKeyUpload,
}

/// `POST /v1/keys` body; with `identity_key` set it is also the key part of
/// a registration, and a device takeover when the key differs.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PreKeyUpload {
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "opt_b64")]
    pub identity_key: Option<Vec<u8>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration_id: Option<u32>,
    pub signed_pre_key: SignedPreKey,
    pub one_time_pre_keys: Vec<OneTimePreKey>,
}

fn opt_b64<S: serde::Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(bytes) => crate::b64::serialize(bytes, s),
        None => s.serialize_none(),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LoginRequest<'a> {
    pub username: &'a str,
    pub password: &'a str,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshRequest<'a> {
    pub refresh_token: &'a str,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthResponse {
    pub token: String,
    pub refresh_token: String,
    pub expires_at: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreKeyBundle {
    pub registration_id: u32,
    #[serde(with = "crate::b64")]
    pub identity_key: Vec<u8>,
    pub signed_pre_key: SignedPreKey,
    pub one_time_pre_key: Option<OneTimePreKey>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentResponse {
    pub id: String,
    pub expires_at: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ErrorResponse {
    pub error: String,
}
