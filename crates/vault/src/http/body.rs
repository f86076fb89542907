//! Reading request bodies within a size limit and a deadline, and pulling the
//! documented fields out of the JSON.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http_body_util::BodyExt;
use serde_json::{Map, Value};

use super::error::ApiError;
use crate::config::MAX_SHARE_SIZE;

/// Reads the whole body, failing as soon as it exceeds `limit` (a declared
/// Content-Length above the limit is refused before reading anything) or
/// takes longer than `timeout`. An empty body is an error.
pub async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::BodyTooLarge);
    }
    let limited = http_body_util::Limited::new(body, limit);
    let bytes = match tokio::time::timeout(timeout, limited.collect()).await {
        Err(_) => return Err(ApiError::BodyTimeout),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(ApiError::BodyTooLarge);
        }
        Ok(Err(_)) => return Err(ApiError::BodyTimeout),
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    if bytes.is_empty() {
        return Err(ApiError::EmptyBody);
    }
    Ok(bytes)
}

/// The top-level fields of a JSON body. A body that is not a JSON object has
/// no fields, so it fails with the contract's `missing … field` errors.
pub struct Fields(Map<String, Value>);

impl Fields {
    pub fn parse(bytes: &[u8]) -> Self {
        match serde_json::from_slice(bytes) {
            Ok(Value::Object(map)) => Self(map),
            _ => Self(Map::new()),
        }
    }

    /// A string field; absent or not a string → `missing <name> field`.
    pub fn str(&self, name: &'static str) -> Result<&str, ApiError> {
        self.0
            .get(name)
            .and_then(Value::as_str)
            .ok_or(ApiError::MissingField(name))
    }

    /// `version`: a JSON integer in 0..=2^64−1, exactly (no floats, strings
    /// or negatives).
    pub fn version(&self) -> Result<u64, ApiError> {
        self.0
            .get("version")
            .and_then(Value::as_u64)
            .ok_or(ApiError::InvalidVersion)
    }

    /// An integer field that may be negative (`created_ns`).
    pub fn int(&self, name: &'static str) -> Result<i128, ApiError> {
        let v = self.0.get(name).ok_or(ApiError::MissingField(name))?;
        v.as_i64()
            .map(i128::from)
            .or_else(|| v.as_u64().map(i128::from))
            .ok_or(ApiError::MissingField(name))
    }
}

/// Decodes a share: standard base64, 1 ..= 512 KiB once decoded.
pub fn decode_share(b64: &str) -> Result<Vec<u8>, ApiError> {
    let data = STANDARD.decode(b64).map_err(|_| ApiError::InvalidBase64)?;
    if data.len() > MAX_SHARE_SIZE {
        return Err(ApiError::ShareTooLarge);
    }
    if data.is_empty() {
        return Err(ApiError::ShareEmpty);
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_an_exact_u64() {
        let v = |s: &str| Fields::parse(s.as_bytes()).version().ok();
        assert_eq!(v(r#"{"version":18446744073709551615}"#), Some(u64::MAX));
        assert_eq!(v(r#"{"version":0}"#), Some(0));
        for bad in [
            r#"{"version":18446744073709551616}"#,
            r#"{"version":-1}"#,
            r#"{"version":1.0}"#,
            r#"{"version":"1"}"#,
            r#"{"version":null}"#,
            r#"{}"#,
            "[1]",
        ] {
            assert_eq!(v(bad), None, "{bad}");
        }
    }

    #[test]
    fn shares_are_checked_in_contract_order() {
        assert!(matches!(decode_share("!!"), Err(ApiError::InvalidBase64)));
        assert!(matches!(decode_share(""), Err(ApiError::ShareEmpty)));
        let big = STANDARD.encode(vec![0u8; MAX_SHARE_SIZE + 1]);
        assert!(matches!(decode_share(&big), Err(ApiError::ShareTooLarge)));
        assert_eq!(decode_share("AQ==").unwrap(), [1]);
    }
}
