//! File upload and download. The id an upload returns is what a file
//! message carries (`File.blob_id`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use imkit_core::blob::BlobMeta;
use imkit_core::model::UserId;
use imkit_proto::ErrorCode;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, AppState, PathArgs, Principal, QueryArgs};

/// Longest file name kept, in bytes.
const MAX_FILE_NAME_BYTES: usize = 255;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct UploadArgs {
    #[serde(default)]
    name: Option<String>,
}

/// `POST /v1/files?name=`: the body is the file; `Content-Type` is kept.
pub(crate) async fn upload(
    who: Principal,
    State(state): State<AppState>,
    QueryArgs(args): QueryArgs<UploadArgs>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let data = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::FrameTooLarge,
                format!(
                    "the file is larger than the {} byte limit",
                    state.options.max_file_bytes
                ),
            )
        } else {
            ApiError::bad_request(r.body_text())
        }
    })?;
    if data.is_empty() {
        return Err(ApiError::bad_request("the file is empty"));
    }
    let name = args.name.unwrap_or_default();
    if name.len() > MAX_FILE_NAME_BYTES || name.contains(['/', '\\', '\n', '\r']) {
        return Err(ApiError::bad_request(format!(
            "name must be at most {MAX_FILE_NAME_BYTES} bytes, without slashes or newlines"
        )));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 255)
        .unwrap_or("application/octet-stream");
    let owner = match who {
        Principal::Admin => UserId::system(),
        Principal::User(u) => u,
    };
    let meta = BlobMeta::describe(&data, content_type, &name, owner, state.clock.now_ms());
    state.blobs.put(meta.clone(), data).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "file_id": meta.id,
            "size": meta.size,
            "sha256": meta.sha256,
            "content_type": meta.content_type,
            "name": meta.name,
        })),
    ))
}

/// `GET /v1/files/{file_id}`: the bytes, with their type, size and hash.
pub(crate) async fn download(
    _: Principal,
    State(state): State<AppState>,
    PathArgs(id): PathArgs<String>,
) -> Result<Response, ApiError> {
    let (meta, data) = state
        .blobs
        .get(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("file {id}")))?;
    let mut headers = HeaderMap::new();
    let content_type = HeaderValue::from_str(&meta.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, content_type);
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", meta.sha256)) {
        headers.insert(header::ETAG, etag);
    }
    if !meta.name.is_empty() {
        let safe: String = meta
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() && c != '"' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
            headers.insert(header::CONTENT_DISPOSITION, v);
        }
    }
    Ok((headers, data).into_response())
}
