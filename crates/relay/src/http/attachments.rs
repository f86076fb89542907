//! `POST /v1/attachments` (raw body, streamed to blob storage) and
//! `GET /v1/attachments/{id}` (streamed back).

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use serde::Serialize;
use tokio_util::io::ReaderStream;

use super::AppState;
use super::extract::{AuthUser, content_length, path_uuid};
use crate::error::Result;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentResponse {
    id: String,
    expires_at: i64,
}

pub async fn upload(
    AuthUser(owner): AuthUser,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<AttachmentResponse>)> {
    let stream = Box::pin(body.into_data_stream().map_err(std::io::Error::other));
    let attachment = state
        .relay
        .upload_attachment(owner, content_length(&headers), stream)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(AttachmentResponse {
            id: attachment.id.to_string(),
            expires_at: attachment.expires_at,
        }),
    ))
}

pub async fn download(
    AuthUser(_): AuthUser,
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response> {
    let (size, reader) = state.relay.download_attachment(path_uuid(id)?).await?;
    let body = Body::from_stream(ReaderStream::with_capacity(reader, 64 * 1024));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (header::CONTENT_LENGTH, HeaderValue::from(size)),
        ],
        body,
    )
        .into_response())
}
