//! File upload and download. The id an upload returns is what a file
//! message carries (`File.blob_id`).

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use imkit_core::blob::{BlobDraft, ChunkSource};
use imkit_core::model::UserId;
use imkit_proto::ErrorCode;
use serde::Deserialize;
use utoipa::IntoParams;

use super::shapes::{self as s, FileIdText};
use super::{ApiError, AppState, PathArgs, Principal, QueryArgs};

/// Longest file name kept, in characters.
const MAX_FILE_NAME_CHARS: usize = 255;

/// What the upload is called.
#[derive(Deserialize, Default, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct UploadArgs {
    /// The file's name: at most 255 characters, no slashes or line breaks.
    #[serde(default)]
    #[param(pattern = "^[^/\\\r\n]{0,255}$", example = "photo.jpg")]
    name: Option<String>,
}

/// An upload's body as a [`ChunkSource`]: counts what arrives and stops at
/// the size limit, so nothing past it is read or stored.
struct Upload {
    body: axum::body::BodyDataStream,
    max: usize,
    seen: usize,
    too_large: bool,
}

#[async_trait::async_trait]
impl ChunkSource for Upload {
    async fn next_chunk(&mut self) -> std::io::Result<Option<Bytes>> {
        match self.body.next().await {
            None if self.seen == 0 => Err(std::io::Error::other("the file is empty")),
            None => Ok(None),
            Some(Err(e)) => Err(std::io::Error::other(e)),
            Some(Ok(chunk)) => {
                self.seen += chunk.len();
                if self.seen > self.max {
                    self.too_large = true;
                    return Err(std::io::Error::other("the file is too large"));
                }
                Ok(Some(chunk))
            }
        }
    }
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::FrameTooLarge,
        format!("the file is larger than the {max} byte limit"),
    )
}

/// Upload a file.
///
/// The body is the file, and its `Content-Type` is kept as the file's type
/// (any type, unless the server limits them: then others get 415). The body
/// streams to the blob store as it arrives (never buffered whole), within
/// the size limit (16 MiB by default) and the body timeout.
#[utoipa::path(post, path = "/v1/files", tag = "files",
    security(("adminKey" = []), ("userToken" = [])),
    params(UploadArgs),
    request_body(content = Vec<u8>, content_type = "*/*", description = "The file's bytes (not empty)"),
    responses(
        (status = 201, description = "Stored", body = s::FileInfo),
        (status = 400, description = "Bad request (an empty file, a bad name)", body = s::ErrorBody),
        (status = 413, description = "Larger than the size limit", body = s::ErrorBody),
        (status = 415, description = "A content type the server does not accept", body = s::ErrorBody),
    ))]
pub(crate) async fn upload(
    who: Principal,
    State(state): State<AppState>,
    QueryArgs(args): QueryArgs<UploadArgs>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<s::FileInfo>), ApiError> {
    let max = state.options.max_file_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large(max));
    }
    let name = args.name.unwrap_or_default();
    if name.chars().count() > MAX_FILE_NAME_CHARS || name.contains(['/', '\\', '\n', '\r']) {
        return Err(ApiError::bad_request(format!(
            "name must be at most {MAX_FILE_NAME_CHARS} characters, without slashes or newlines"
        )));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 255)
        .unwrap_or("application/octet-stream");
    if !type_allowed(&state.options.allowed_file_types, content_type) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            imkit_proto::ErrorCode::InvalidArgument,
            format!(
                "files of type {content_type:?} are not accepted; allowed: {}",
                state.options.allowed_file_types.join(", ")
            ),
        ));
    }
    let owner = match who {
        Principal::Admin => UserId::system(),
        Principal::User(u) => u,
    };
    let draft = BlobDraft {
        content_type: content_type.to_owned(),
        name,
        owner,
        created_ms: state.clock.now_ms(),
    };
    let mut source = Upload {
        body: body.into_data_stream(),
        max,
        seen: 0,
        too_large: false,
    };
    let stored = state.blobs.put_stream(draft, &mut source).await;
    if source.too_large {
        return Err(too_large(max));
    }
    let meta = stored?;
    Ok((
        StatusCode::CREATED,
        Json(s::FileInfo {
            file_id: meta.id,
            size: meta.size,
            sha256: meta.sha256,
            content_type: meta.content_type,
            name: meta.name,
        }),
    ))
}

/// Media types a browser may show inline from the API's origin: they run
/// no script (SVG does, so it is not here).
const INLINE_TYPES: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/avif",
    "image/bmp",
    "application/pdf",
];

/// Whether a file of this media type is served inline: the safe images,
/// PDF, audio and video. Anything else is an attachment, so a user's HTML
/// never renders as a page of the API's origin.
/// Whether `content_type` matches one of `allowed` (`type/subtype` or
/// `type/*`; empty allows all), by its essence, case-insensitively.
fn type_allowed(allowed: &[String], content_type: &str) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let family = essence.split('/').next().unwrap_or("");
    allowed.iter().any(|a| {
        let a = a.trim().to_ascii_lowercase();
        match a.strip_suffix("/*") {
            Some(f) => f == family,
            None => a == essence,
        }
    })
}

fn served_inline(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    INLINE_TYPES.contains(&essence.as_str())
        || essence.starts_with("audio/")
        || essence.starts_with("video/")
}

/// Sandboxes whatever a browser makes of a user's file: no script, no
/// plugin, no request anywhere, and an origin of its own.
const FILE_CSP: &str = "default-src 'none'; img-src 'self'; media-src 'self'; sandbox";

/// Download a file.
///
/// A `Range: bytes=...` header with one range gets that range (206, read from the store without the rest of the file); one that
/// cannot be met gets 416; several ranges, a malformed header, or an
/// `If-Range` that no longer matches get the whole file (200), as RFC 9110
/// allows.
#[utoipa::path(get, path = "/v1/files/{file_id}", tag = "files",
    security(("adminKey" = []), ("userToken" = [])),
    params(
        ("file_id" = FileIdText, Path),
        ("Range" = Option<String>, Header, description = "One byte range", example = "bytes=0-99"),
        ("If-Range" = Option<String>, Header, description = "The ETag the range is of",
            example = "\"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\""),
    ),
    responses(
        (status = 200, description = "The file", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "The range asked for", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, description = "No such file", body = s::ErrorBody),
        (status = 416, description = "The range is outside the file", body = s::ErrorBody),
    ))]
pub(crate) async fn download(
    _: Principal,
    State(state): State<AppState>,
    PathArgs(id): PathArgs<String>,
    request: HeaderMap,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::not_found(format!("file {id}"));
    if request.contains_key(header::RANGE) {
        let meta = state.blobs.meta(&id).await?.ok_or_else(not_found)?;
        let etag = format!("\"{}\"", meta.sha256);
        let current = request
            .get(header::IF_RANGE)
            .is_none_or(|v| v.to_str().is_ok_and(|v| v == etag));
        match byte_range(&request, meta.size).filter(|_| current) {
            Some(Ok((start, len))) => {
                let data = state
                    .blobs
                    .read_range(&id, start, len)
                    .await?
                    .ok_or_else(not_found)?;
                let mut headers = file_headers(&meta);
                let end = start + (data.len() as u64).max(1) - 1;
                if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{}", meta.size))
                {
                    headers.insert(header::CONTENT_RANGE, v);
                }
                return Ok((StatusCode::PARTIAL_CONTENT, headers, data).into_response());
            }
            Some(Err(())) => {
                let mut response = ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    ErrorCode::InvalidArgument,
                    format!("the file is {} bytes; that range is outside it", meta.size),
                )
                .into_response();
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", meta.size)) {
                    response.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return Ok(response);
            }
            None => {}
        }
    }
    let (meta, data) = state.blobs.get(&id).await?.ok_or_else(not_found)?;
    Ok((file_headers(&meta), data).into_response())
}

/// The headers every answer with a file's bytes carries.
fn file_headers(meta: &imkit_core::blob::BlobMeta) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let content_type = HeaderValue::from_str(&meta.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(FILE_CSP),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", meta.sha256)) {
        headers.insert(header::ETAG, etag);
    }
    let disposition = if served_inline(&meta.content_type) {
        "inline"
    } else {
        "attachment"
    };
    let safe: String = meta
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let value = if safe.is_empty() {
        HeaderValue::from_static(disposition)
    } else {
        HeaderValue::from_str(&format!("{disposition}; filename=\"{safe}\""))
            .unwrap_or(HeaderValue::from_static(disposition))
    };
    headers.insert(header::CONTENT_DISPOSITION, value);
    headers
}

/// The one byte range a `Range` header asks for, against a file of `size`
/// bytes: `(start, len)`, `Err(())` when it cannot be met, `None` when
/// there is no usable single range (the whole file is served then).
fn byte_range(headers: &HeaderMap, size: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = headers.get(header::RANGE)?.to_str().ok()?;
    let spec = spec.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.trim().split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    let range = if first.is_empty() {
        // The last `n` bytes.
        let n: u64 = last.parse().ok()?;
        if n == 0 || size == 0 {
            return Some(Err(()));
        }
        let len = n.min(size);
        (size - len, len)
    } else {
        let start: u64 = first.parse().ok()?;
        let end = if last.is_empty() {
            size.saturating_sub(1)
        } else {
            let end: u64 = last.parse().ok()?;
            if end < start {
                return None;
            }
            end.min(size.saturating_sub(1))
        };
        if start >= size {
            return Some(Err(()));
        }
        (start, end - start + 1)
    };
    Some(Ok(range))
}

#[cfg(test)]
mod tests {
    use super::{byte_range, served_inline, type_allowed};

    #[test]
    fn file_types_match_exactly_or_by_family() {
        let allowed = vec!["image/*".to_owned(), "application/pdf".to_owned()];
        assert!(type_allowed(&allowed, "image/png"));
        assert!(type_allowed(&allowed, "IMAGE/JPEG; q=1"));
        assert!(type_allowed(&allowed, "application/pdf"));
        assert!(!type_allowed(&allowed, "application/pdfx"));
        assert!(!type_allowed(&allowed, "text/html"));
        assert!(type_allowed(&[], "text/html"), "no list allows all");
    }
    use axum::http::{HeaderMap, HeaderValue, header};

    fn range(spec: &str, size: u64) -> Option<Result<(u64, u64), ()>> {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(spec).expect("header"));
        byte_range(&h, size)
    }

    #[test]
    fn range_headers_resolve_against_the_size() {
        assert_eq!(range("bytes=0-99", 1000), Some(Ok((0, 100))));
        assert_eq!(range("bytes=900-", 1000), Some(Ok((900, 100))));
        assert_eq!(range("bytes=-100", 1000), Some(Ok((900, 100))));
        assert_eq!(range("bytes=-5000", 1000), Some(Ok((0, 1000))));
        assert_eq!(range("bytes=990-2000", 1000), Some(Ok((990, 10))));
        assert_eq!(range("bytes=1000-", 1000), Some(Err(())));
        assert_eq!(range("bytes=-0", 1000), Some(Err(())));
        assert_eq!(range("bytes=0-0", 0), Some(Err(())));
        // Served whole: several ranges, another unit, nonsense, backwards.
        assert_eq!(range("bytes=0-1,5-6", 1000), None);
        assert_eq!(range("items=0-1", 1000), None);
        assert_eq!(range("bytes=a-b", 1000), None);
        assert_eq!(range("bytes=9-3", 1000), None);
    }

    #[test]
    fn only_script_free_types_are_served_inline() {
        for t in [
            "image/png",
            "IMAGE/JPEG",
            "image/webp; q=1",
            "audio/ogg",
            "video/mp4",
            "application/pdf",
        ] {
            assert!(served_inline(t), "{t}");
        }
        for t in [
            "text/html",
            "image/svg+xml",
            "application/xhtml+xml",
            "text/plain",
            "application/javascript",
            "",
            "application/octet-stream",
        ] {
            assert!(!served_inline(t), "{t}");
        }
    }
}
