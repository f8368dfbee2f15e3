//! JSON errors with the protocol's codes, and extractors whose rejections
//! become such errors (never a bare text body, never a 500 for bad input).

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use imkit_proto::ErrorCode;
use serde::de::DeserializeOwned;

/// An HTTP error answer: a status and `{"error": {"code", "name", "message"}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The protocol error code.
    pub code: ErrorCode,
    /// What went wrong, for a developer.
    pub message: String,
}

impl ApiError {
    /// An error with an explicit status.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidArgument, message)
    }

    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::InvalidToken, message)
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    pub(crate) fn unavailable(e: imkit_core::Error) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            e.to_string(),
        )
    }

    /// The HTTP status for a protocol code.
    pub fn status_of(code: ErrorCode) -> StatusCode {
        use ErrorCode as C;
        match code {
            C::InvalidArgument
            | C::MalformedFrame
            | C::BadPayload
            | C::BadFlags
            | C::UnknownType
            | C::UnsupportedVersion
            | C::UnexpectedPacket
            | C::AlreadyLoggedIn => StatusCode::BAD_REQUEST,
            C::NotLoggedIn
            | C::InvalidToken
            | C::TokenExpired
            | C::TokenRevoked
            | C::LoginTimeout => StatusCode::UNAUTHORIZED,
            C::UserDisabled | C::Forbidden | C::Blocked | C::NotMember | C::TooManyDevices => {
                StatusCode::FORBIDDEN
            }
            C::NotFound => StatusCode::NOT_FOUND,
            C::Conflict | C::RecallWindowExpired => StatusCode::CONFLICT,
            C::Rejected => StatusCode::FORBIDDEN,
            C::FrameTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            C::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            C::Unavailable | C::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            C::Internal | C::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<imkit_core::Error> for ApiError {
    fn from(e: imkit_core::Error) -> Self {
        if matches!(e, imkit_core::Error::Store { .. }) {
            tracing::error!(error = %e, "store failure in an HTTP request");
        }
        let code = e.code();
        ApiError::new(ApiError::status_of(code), code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = super::shapes::ErrorBody {
            error: super::shapes::ErrorDetail {
                code: self.code.as_u32(),
                name: format!("{:?}", self.code),
                message: self.message,
            },
        };
        (self.status, axum::Json(body)).into_response()
    }
}

/// `axum::Json`, whose rejections (malformed JSON, wrong types, missing
/// fields, a wrong content type, an oversized body) are [`ApiError`]s.
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<serde_json::Value>::from_request(req, state).await {
            Ok(axum::Json(v)) => object_of(v).map(JsonBody),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// A request body as `T`, which every route documents as a JSON object:
/// serde would also take an array of the fields in order, so that is
/// refused first.
fn object_of<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, ApiError> {
    if !v.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    serde_json::from_value(v).map_err(|e| ApiError::bad_request(format!("bad JSON body: {e}")))
}

fn json_rejection(r: JsonRejection) -> ApiError {
    let status = r.status();
    let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
        ErrorCode::FrameTooLarge
    } else {
        ErrorCode::InvalidArgument
    };
    // 422 (well-formed JSON of the wrong shape) is reported as 400 like
    // every other bad argument.
    let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
        StatusCode::BAD_REQUEST
    } else {
        status
    };
    ApiError::new(status, code, r.body_text())
}

/// `axum::extract::Query` with [`ApiError`] rejections.
pub(crate) struct QueryArgs<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryArgs<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(QueryArgs(v)),
            Err(r @ QueryRejection::FailedToDeserializeQueryString(_)) => {
                Err(ApiError::bad_request(r.body_text()))
            }
            Err(r) => Err(ApiError::bad_request(r.body_text())),
        }
    }
}

/// Any path no route matches.
pub(crate) async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

/// A known path with a method it does not serve.
pub(crate) async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::InvalidArgument,
        format!("{} does not accept {method}", uri.path()),
    )
}

/// `axum::extract::Path` with [`ApiError`] rejections.
pub(crate) struct PathArgs<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathArgs<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| PathArgs(v))
            .map_err(|r| ApiError::bad_request(r.body_text()))
    }
}

/// Parses an optional JSON body: empty or `null` means `T::default()`.
pub(crate) fn optional_json<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) || body.trim_ascii() == b"null" {
        return Ok(T::default());
    }
    let v = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("bad JSON body: {e}")))?;
    object_of(v)
}

impl From<crate::ServerError> for ApiError {
    fn from(e: crate::ServerError) -> Self {
        match e {
            crate::ServerError::Core(e) => e.into(),
            e => {
                tracing::error!(error = %e, "server failure in an HTTP request");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::Internal,
                    e.to_string(),
                )
            }
        }
    }
}
