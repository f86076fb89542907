//! Request extractors. Each one either yields a value or an error built by
//! the one error mapping (`http::error`), so there are no plain-text
//! framework rejections.

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::AppState;
use super::client_ip::client_ip;
use crate::error::Error;
use crate::ratelimit::{Bucket, RetryAfter};

fn limited(r: RetryAfter) -> Error {
    Error::RateLimited {
        retry_after_secs: r.0,
    }
}

/// An authenticated user (`Authorization: Bearer <jwt>`), already charged
/// against their rate-limit bucket.
pub struct AuthUser(pub Uuid);

/// The bearer token of a request, if it carries one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let token = bearer(&parts.headers).ok_or(Error::Unauthorized)?;
        let user = state.relay.tokens.verify(token)?;
        state
            .relay
            .limiter
            .check(Bucket::User(user))
            .await
            .map_err(limited)?;
        Ok(AuthUser(user))
    }
}

/// The client IP (see [`client_ip`]).
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .ok_or_else(|| Error::Internal("no peer address".into()))?;
        Ok(ClientIp(client_ip(
            peer,
            &parts.headers,
            &state.relay.config.trusted_proxies,
        )))
    }
}

/// Charged against the per-IP bucket of unauthenticated routes.
pub struct IpLimited;

impl FromRequestParts<AppState> for IpLimited {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let ClientIp(ip) = ClientIp::from_request_parts(parts, state).await?;
        state
            .relay
            .limiter
            .check(Bucket::Ip(ip))
            .await
            .map_err(limited)?;
        Ok(IpLimited)
    }
}

/// Charged against the stricter per-IP bucket of register and login (each
/// costs an Argon2id hash).
pub struct AuthLimited;

impl FromRequestParts<AppState> for AuthLimited {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let ClientIp(ip) = ClientIp::from_request_parts(parts, state).await?;
        state
            .relay
            .limiter
            .check(Bucket::Auth(ip))
            .await
            .map_err(limited)?;
        Ok(AuthLimited)
    }
}

/// A JSON body, read within the router's body limit. The content type is
/// not checked (clients differ); syntax, missing fields and wrong types are 400.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        // Refuse a declared oversize body before waiting for any of it.
        if content_length(req.headers()).is_some_and(|len| len > super::MAX_JSON_BYTES as u64) {
            return Err(Error::invalid("request body too large").into_response());
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            let error = if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                Error::invalid("request body too large")
            } else {
                Error::invalid("could not read request body")
            };
            error.into_response()
        })?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| Error::invalid(format!("invalid JSON body: {e}")).into_response())
    }
}

/// A path segment that must be a UUID; anything else (not a UUID, not even
/// UTF-8) names nothing: 404, with the JSON error body.
pub fn path_uuid(segment: Result<Path<String>, PathRejection>) -> Result<Uuid, Error> {
    segment
        .ok()
        .and_then(|Path(s)| Uuid::parse_str(&s).ok())
        .ok_or(Error::NotFound)
}

/// The declared `Content-Length`, if present and well-formed.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}
