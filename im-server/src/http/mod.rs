//! The HTTP API (feature `http`): accounts and tokens, contacts, groups,
//! server-side sends and notifications, files, health.
//!
//! Everything goes through the same [`imkit_core::Engine`] and [`crate::Router`]
//! as the live protocol, so a message sent over HTTP is stored, numbered
//! and delivered like any other. Every route is listed once in the route
//! table ([`routes`] lists it); the API document is generated from the
//! handlers ([`openapi_json`], served at `/openapi.json`), and tests keep
//! the two, and docs/openapi.json, equal.
//!
//! Authentication: admin routes (`/v1/admin/...`) take
//! `Authorization: Bearer <admin key>`; user routes take
//! `Authorization: Bearer <login token>` and act as that user (device
//! `http`). Errors are JSON: `{"error": {"code", "name", "message"}}` with
//! the protocol's error codes.

mod admin;
mod devices;
mod error;
mod files;
pub(crate) mod json;
mod listener;
mod openapi;
mod push;
mod shapes;
mod user;

use std::sync::Arc;
use std::time::Duration;

use axum::Router as Axum;
use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use axum::routing::{MethodRouter, delete, get, post, put};
use imkit_core::auth::{Authenticator, JwtAuthenticator};
use imkit_core::blob::BlobStore;
use imkit_core::model::{DeviceId, UserId};
use imkit_core::{Caller, Clock};

use crate::handle::ServerHandle;

pub use error::ApiError;
pub(crate) use error::{JsonBody, PathArgs, QueryArgs, optional_json};
pub(crate) use listener::serve;
pub(crate) use openapi::document_for;
pub use openapi::openapi_json;

/// Settings of the HTTP API. Every limit has a default.
#[derive(Clone)]
pub struct HttpOptions {
    /// The key admin routes require; `None` turns admin routes off (they
    /// answer 403).
    pub admin_key: Option<String>,
    /// Largest JSON request body (default 64 KiB).
    pub max_json_bytes: usize,
    /// Largest JSON body of the routes that take lists of users: group
    /// creation, adding members, notifications (default 1 MiB, room for
    /// 10,000 of the longest ids).
    pub max_list_json_bytes: usize,
    /// Largest file upload (default 16 MiB).
    pub max_file_bytes: usize,
    /// Content types uploads may have: exact (`application/pdf`) or a
    /// family (`image/*`). Empty (the default) allows any; others are
    /// answered 415.
    pub allowed_file_types: Vec<String>,
    /// Validity of tokens the admin API issues when the request names none
    /// (default 24 h).
    pub default_token_ttl_secs: u64,
    /// Longest validity the admin API issues (default 30 days).
    pub max_token_ttl_secs: u64,
    /// Most HTTP connections at once; more are answered 503 and closed.
    /// `None` (the default) takes a share of the file-descriptor budget
    /// that leaves the chat listeners theirs (see
    /// [`Limits::max_connections`](crate::Limits::max_connections)).
    pub max_connections: Option<usize>,
    /// Time a client has to send a request's headers, and how long a
    /// kept-alive connection may sit idle between requests (default 10 s).
    pub header_timeout: Duration,
    /// Time a client has to send a request's body (default 60 s).
    pub body_timeout: Duration,
    /// Time a whole request may take, body and handling included; past it
    /// the answer is 408 (default 120 s).
    pub request_timeout: Duration,
    /// Requests handled at once over all connections; more wait their turn
    /// (default 256).
    pub max_concurrent_requests: usize,
    /// Largest request head (request line and headers) (default 16 KiB).
    pub max_header_bytes: usize,
}

impl std::fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpOptions")
            .field("admin_key", &self.admin_key.as_ref().map(|_| "<redacted>"))
            .field("max_json_bytes", &self.max_json_bytes)
            .field("max_list_json_bytes", &self.max_list_json_bytes)
            .field("max_file_bytes", &self.max_file_bytes)
            .field("allowed_file_types", &self.allowed_file_types)
            .field("default_token_ttl_secs", &self.default_token_ttl_secs)
            .field("max_token_ttl_secs", &self.max_token_ttl_secs)
            .field("max_connections", &self.max_connections)
            .field("header_timeout", &self.header_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_concurrent_requests", &self.max_concurrent_requests)
            .field("max_header_bytes", &self.max_header_bytes)
            .finish()
    }
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            admin_key: None,
            max_json_bytes: 64 * 1024,
            max_list_json_bytes: 1024 * 1024,
            max_file_bytes: 16 * 1024 * 1024,
            allowed_file_types: Vec::new(),
            default_token_ttl_secs: 86_400,
            max_token_ttl_secs: 30 * 86_400,
            max_connections: None,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(120),
            max_concurrent_requests: 256,
            max_header_bytes: 16 * 1024,
        }
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) server: ServerHandle,
    /// Logins (with the account rules applied).
    pub(crate) auth: Arc<dyn Authenticator>,
    /// Issues and inspects tokens; `None` when the server uses a custom
    /// authenticator instead of the built-in tokens.
    pub(crate) minter: Option<JwtAuthenticator>,
    pub(crate) blobs: Arc<dyn BlobStore>,
    pub(crate) options: Arc<HttpOptions>,
    pub(crate) clock: Clock,
    /// This server's API document (its own limits in it), built once.
    pub(crate) document: axum::body::Bytes,
}

/// The device id HTTP requests act as.
pub const HTTP_DEVICE: &str = "http";

/// Every route: (method, path, handler). The router and the OpenAPI test
/// both read this table.
pub(crate) fn route_table(
    options: &HttpOptions,
) -> Vec<(Method, &'static str, MethodRouter<AppState>)> {
    use admin as a;
    use user as u;
    let upload = post(files::upload).layer(DefaultBodyLimit::max(options.max_file_bytes));
    let lists = DefaultBodyLimit::max(options.max_list_json_bytes.max(options.max_json_bytes));
    vec![
        (Method::GET, "/health", get(health)),
        (Method::GET, "/healthz", get(healthz)),
        (Method::GET, "/ready", get(ready)),
        (Method::GET, "/readyz", get(readyz)),
        (Method::GET, "/openapi.json", get(openapi)),
        // Admin: accounts and tokens.
        (Method::POST, "/v1/admin/users", post(a::create_user)),
        (Method::GET, "/v1/admin/users/{user_id}", get(a::get_user)),
        (
            Method::POST,
            "/v1/admin/users/{user_id}/disable",
            post(a::disable_user),
        ),
        (
            Method::POST,
            "/v1/admin/users/{user_id}/enable",
            post(a::enable_user),
        ),
        (
            Method::POST,
            "/v1/admin/users/{user_id}/tokens",
            post(a::issue_token),
        ),
        (
            Method::POST,
            "/v1/admin/users/{user_id}/logout",
            post(a::force_logout),
        ),
        (
            Method::GET,
            "/v1/admin/users/{user_id}/presence",
            get(a::presence),
        ),
        (
            Method::GET,
            "/v1/admin/users/{user_id}/devices",
            get(devices::user_devices),
        ),
        (
            Method::DELETE,
            "/v1/admin/users/{user_id}/devices/{device_id}",
            delete(devices::remove_user_device),
        ),
        (
            Method::POST,
            "/v1/admin/tokens/revoke",
            post(a::revoke_token),
        ),
        // Admin: groups, messages, notifications.
        (
            Method::POST,
            "/v1/admin/groups",
            post(a::create_group).layer(lists),
        ),
        (
            Method::POST,
            "/v1/admin/groups/{group_id}/members",
            post(a::add_members).layer(lists),
        ),
        (
            Method::DELETE,
            "/v1/admin/groups/{group_id}/members/{user_id}",
            delete(a::remove_member),
        ),
        (Method::POST, "/v1/admin/messages", post(a::send_message)),
        (
            Method::POST,
            "/v1/admin/notifications",
            post(a::notify).layer(lists),
        ),
        // User.
        (Method::GET, "/v1/me", get(u::me)),
        (Method::GET, "/v1/me/devices", get(devices::my_devices)),
        (Method::GET, "/v1/me/privacy", get(u::privacy)),
        (Method::PUT, "/v1/me/privacy", put(u::set_privacy)),
        (
            Method::DELETE,
            "/v1/me/devices/{device_id}",
            delete(devices::remove_my_device),
        ),
        (
            Method::PUT,
            "/v1/me/devices/{device_id}/push-token",
            put(push::set_token),
        ),
        (
            Method::DELETE,
            "/v1/me/devices/{device_id}/push-token",
            delete(push::remove_token),
        ),
        (Method::PUT, "/v1/me/push-settings", put(push::set_settings)),
        (Method::GET, "/v1/contacts", get(u::contacts)),
        (
            Method::POST,
            "/v1/contacts/requests",
            post(u::friend_request),
        ),
        (
            Method::POST,
            "/v1/contacts/requests/{user_id}/accept",
            post(u::friend_accept),
        ),
        (
            Method::DELETE,
            "/v1/contacts/friends/{user_id}",
            delete(u::friend_remove),
        ),
        (Method::POST, "/v1/contacts/blocks", post(u::block)),
        (
            Method::DELETE,
            "/v1/contacts/blocks/{user_id}",
            delete(u::unblock),
        ),
        (Method::GET, "/v1/groups", get(u::groups)),
        (
            Method::POST,
            "/v1/groups",
            post(u::create_group).layer(lists),
        ),
        (
            Method::GET,
            "/v1/groups/{group_id}/members",
            get(u::group_members),
        ),
        (Method::GET, "/v1/conversations", get(u::conversations)),
        (
            Method::GET,
            "/v1/conversations/{conversation_id}/messages",
            get(u::history),
        ),
        // Files (a user token or the admin key).
        (Method::POST, "/v1/files", upload),
        (Method::GET, "/v1/files/{file_id}", get(files::download)),
    ]
}

/// The (method, path) pairs the API serves, for documentation checks.
pub fn routes() -> Vec<(String, String)> {
    route_table(&HttpOptions::default())
        .into_iter()
        .map(|(m, p, _)| (m.to_string(), p.to_owned()))
        .collect()
}

/// The axum router over `state`.
pub(crate) fn router(state: AppState) -> Axum {
    let mut router = Axum::new();
    for (_, path, route) in route_table(&state.options) {
        router = router.route(path, route);
    }
    router
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::wrong_method)
        .layer(DefaultBodyLimit::max(state.options.max_json_bytes))
        .with_state(state)
}

/// Alive.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "Alive", body = shapes::Health)))]
async fn health() -> axum::Json<shapes::Health> {
    axum::Json(shapes::Health {
        status: "ok".into(),
    })
}

/// Alive (the same as `/health`).
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Alive", body = shapes::Health)))]
async fn healthz() -> axum::Json<shapes::Health> {
    health().await
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object)))]
async fn openapi(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        state.document.clone(),
    )
}

/// Ready: the stores answer and the server is not shutting down.
///
/// A load balancer that checks it stops sending new clients during a
/// graceful stop.
#[utoipa::path(get, path = "/ready", tag = "health",
    responses(
        (status = 200, description = "Ready", body = shapes::Health),
        (status = 503, description = "Shutting down, or a store does not answer", body = shapes::ErrorBody),
    ))]
async fn ready(
    state: axum::extract::State<AppState>,
) -> Result<axum::Json<shapes::Health>, ApiError> {
    ready_check(state).await
}

/// Ready (the same as `/ready`).
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready", body = shapes::Health),
        (status = 503, description = "Shutting down, or a store does not answer", body = shapes::ErrorBody),
    ))]
async fn readyz(
    state: axum::extract::State<AppState>,
) -> Result<axum::Json<shapes::Health>, ApiError> {
    ready_check(state).await
}

async fn ready_check(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<axum::Json<shapes::Health>, ApiError> {
    if state.server.is_shutting_down() {
        return Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            imkit_proto::ErrorCode::Unavailable,
            "the server is shutting down",
        ));
    }
    let stores = state.server.engine().stores();
    stores
        .accounts
        .get(&UserId::from("_readiness_probe"))
        .await
        .map_err(ApiError::unavailable)?;
    stores
        .presence
        .locate(&UserId::from("_readiness_probe"))
        .await
        .map_err(ApiError::unavailable)?;
    Ok(axum::Json(shapes::Health {
        status: "ready".into(),
    }))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Compares without an early exit, so timing does not reveal the key.
fn same_secret(a: &str, b: &str) -> bool {
    use sha2::{Digest, Sha256};
    let (x, y) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

/// An admin request: the bearer is the admin key.
pub(crate) struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(key) = &state.options.admin_key else {
            return Err(ApiError::forbidden(
                "the admin API is off: start the server with an admin key",
            ));
        };
        match bearer(&parts.headers) {
            Some(given) if same_secret(given, key) => Ok(Admin),
            Some(_) => Err(ApiError::unauthorized("wrong admin key")),
            None => Err(ApiError::unauthorized(
                "missing Authorization: Bearer <admin key>",
            )),
        }
    }
}

/// A user request: the bearer is a login token; acts as device `http`.
pub(crate) struct User(pub(crate) Caller);

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers)
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <login token>"))?;
        let user = state.auth.authenticate(token).await?;
        Ok(User(Caller::new(user, DeviceId::from(HTTP_DEVICE))))
    }
}

/// Either an admin or a user (file routes).
pub(crate) enum Principal {
    Admin,
    User(UserId),
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let (Some(key), Some(given)) = (&state.options.admin_key, bearer(&parts.headers))
            && same_secret(given, key)
        {
            return Ok(Principal::Admin);
        }
        let User(caller) = User::from_request_parts(parts, state).await?;
        Ok(Principal::User(caller.user))
    }
}
