//! JSON shapes of the API (camelCase, keys as standard padded base64).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::domain::AuthTokens;
use crate::error::{Error, Result};
use crate::store::{OneTimePreKey, SignedPreKey};

pub fn decode_b64(value: &str, field: &str) -> Result<Vec<u8>> {
    STANDARD
        .decode(value.trim())
        .map_err(|_| Error::invalid(format!("{field}: not valid base64")))
}

pub fn encode_b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedPreKeyDto {
    pub key_id: u32,
    pub public_key: String,
    pub signature: String,
}

impl SignedPreKeyDto {
    pub fn decode(&self) -> Result<SignedPreKey> {
        Ok(SignedPreKey {
            key_id: self.key_id,
            public_key: decode_b64(&self.public_key, "signedPreKey.publicKey")?,
            signature: decode_b64(&self.signature, "signedPreKey.signature")?,
        })
    }

    pub fn encode(k: &SignedPreKey) -> Self {
        Self {
            key_id: k.key_id,
            public_key: encode_b64(&k.public_key),
            signature: encode_b64(&k.signature),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OneTimePreKeyDto {
    pub key_id: u32,
    pub public_key: String,
}

impl OneTimePreKeyDto {
    pub fn decode_all(keys: &[Self]) -> Result<Vec<OneTimePreKey>> {
        keys.iter()
            .map(|k| {
                Ok(OneTimePreKey {
                    key_id: k.key_id,
                    public_key: decode_b64(&k.public_key, "oneTimePreKeys.publicKey")?,
                })
            })
            .collect()
    }

    pub fn encode(k: &OneTimePreKey) -> Self {
        Self {
            key_id: k.key_id,
            public_key: encode_b64(&k.public_key),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthResponse {
    pub token: String,
    pub refresh_token: String,
    pub expires_at: i64,
}

impl From<AuthTokens> for AuthResponse {
    fn from(t: AuthTokens) -> Self {
        Self {
            token: t.token,
            refresh_token: t.refresh_token,
            expires_at: t.expires_at,
        }
    }
}
