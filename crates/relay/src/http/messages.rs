//! `POST /v1/messages/{recipientId}`: one serialized `EncryptedMessage`.

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::AppState;
use super::extract::{AuthUser, content_length, path_uuid};
use crate::error::Error;

pub async fn send(
    AuthUser(sender): AuthUser,
    State(state): State<AppState>,
    recipient: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, Error> {
    // An error before the body is read to the end ends the connection
    // (`Connection: close`, lingering close: see `super::connection`).
    // The contract lists 400 for a malformed request here (and 404 for an
    // unknown recipient); the other routes only know 404.
    let recipient =
        path_uuid(recipient).map_err(|_| Error::invalid("recipientId must be a UUID"))?;
    let max = state.relay.config.max_message_bytes;
    let too_large = || Error::invalid(format!("message exceeds the maximum size of {max} bytes"));
    if content_length(&headers).is_some_and(|len| len > max) {
        return Err(too_large());
    }
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    let bytes = Limited::new(body, limit).collect().await.map_err(|e| {
        if e.downcast_ref::<LengthLimitError>().is_some() {
            too_large()
        } else {
            Error::invalid("could not read request body")
        }
    })?;
    state
        .relay
        .send_message(sender, recipient, &bytes.to_bytes())
        .await?;
    Ok(StatusCode::CREATED)
}
