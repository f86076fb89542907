//! Reading request bodies within a size limit and a deadline, and pulling the
//! documented fields out of the JSON.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use serde_json::{Map, Value};

use super::error::ApiError;
use super::io::LingerOnClose;
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

/// Middleware: when a request is answered without its body having been read
/// to the end (refused before reading: bad token, declared length over the
/// limit…), the connection cannot carry another request. Say so with
/// `Connection: close`, or a keep-alive client would reuse a connection the
/// server is about to drop, and have the connection end with a lingering
/// close so the client can finish sending and read the answer.
pub async fn close_if_unread(req: Request, next: Next) -> Response {
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let linger = req.extensions().get::<LingerOnClose>().cloned();
    let done = Arc::new(AtomicBool::new(false));
    let tracked = Arc::clone(&done);
    let req = req.map(|inner| {
        Body::new(TrackedBody {
            inner,
            done: tracked,
        })
    });
    let mut resp = next.run(req).await;
    if !done.load(Ordering::Acquire) {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        if let Some(l) = linger {
            l.request();
        }
    }
    resp
}

/// A body that records when it has been read to the end.
struct TrackedBody {
    inner: Body,
    done: Arc<AtomicBool>,
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.done.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
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

    /// `created_ns` of a challenge: absent → `missing created_ns field`;
    /// present but not an integer cannot be a challenge we issued.
    pub fn created_ns(&self) -> Result<i128, ApiError> {
        let v = self
            .0
            .get("created_ns")
            .ok_or(ApiError::MissingField("created_ns"))?;
        v.as_i64()
            .map(i128::from)
            .or_else(|| v.as_u64().map(i128::from))
            .ok_or(ApiError::InvalidChallenge)
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
