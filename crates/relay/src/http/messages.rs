//! `POST /v1/messages/{recipientId}`: one serialized `EncryptedMessage`.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::AppState;
use super::error::UnreadBody;
use super::extract::{AuthUser, content_length, path_uuid};
use crate::error::Error;

pub async fn send(
    AuthUser(sender): AuthUser,
    State(state): State<AppState>,
    Path(recipient): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, Response> {
    // Until the body is read, an error leaves it unread (see `UnreadBody`).
    let recipient = path_uuid(&recipient).map_err(|e| UnreadBody(e).into_response())?;
    let max = state.relay.config.max_message_bytes;
    let too_large = || Error::invalid(format!("message exceeds the maximum size of {max} bytes"));
    if content_length(&headers).is_some_and(|len| len > max) {
        return Err(UnreadBody(too_large()).into_response());
    }
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    let bytes = Limited::new(body, limit).collect().await.map_err(|e| {
        let error = if e.downcast_ref::<LengthLimitError>().is_some() {
            too_large()
        } else {
            Error::invalid("could not read request body")
        };
        UnreadBody(error).into_response()
    })?;
    state
        .relay
        .send_message(sender, recipient, &bytes.to_bytes())
        .await
        .map_err(IntoResponse::into_response)?;
    Ok(StatusCode::CREATED)
}
