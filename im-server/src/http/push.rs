//! Push routes: a device's push token, and the user's notification
//! settings. The same as the protocol's `PushTokenSet` and `PushSettings`,
//! for apps that register devices from their backend or over HTTP.

use axum::Json;
use axum::extract::State;
use imkit_core::Caller;
use imkit_core::model::DeviceId;
use imkit_proto::pb;
use serde::Deserialize;
use utoipa::ToSchema;

use super::shapes::{self as s, DeviceIdText};
use super::{ApiError, AppState, JsonBody, PathArgs, User};

type Answer<T> = Result<Json<T>, ApiError>;

/// A device's push registration.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"provider": "fcm", "platform": "android", "token": "dQw4w9WgXcQ:APA91bH"}))]
pub(crate) struct TokenIn {
    /// Who delivers: `fcm` or `apns` for the ready notifier, or a name of
    /// the application's own notifier.
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,32}$")]
    provider: String,
    /// `ios`, `android`, `web`, ...
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_.-]{0,32}$")]
    platform: String,
    /// The provider's token for this device: printable ASCII, no spaces,
    /// at most 4,096 characters (the server's limit).
    #[schema(pattern = "^[!-~]{1,4096}$")]
    token: String,
}

fn device_caller(caller: &Caller, device: &str) -> Result<Caller, ApiError> {
    Ok(Caller {
        user: caller.user.clone(),
        device: DeviceId::parse(device)?,
    })
}

/// Register (or replace) a device's push token.
#[utoipa::path(put, path = "/v1/me/devices/{device_id}/push-token", tag = "user",
    security(("userToken" = [])),
    params(("device_id" = DeviceIdText, Path)),
    request_body = TokenIn,
    responses(
        (status = 200, description = "Registered", body = s::PushRegistered),
        (status = 400, description = "Bad request", body = s::ErrorBody),
    ))]
pub(crate) async fn set_token(
    User(caller): User,
    State(state): State<AppState>,
    PathArgs(device): PathArgs<String>,
    JsonBody(req): JsonBody<TokenIn>,
) -> Answer<s::PushRegistered> {
    if req.token.is_empty() {
        return Err(ApiError::bad_request(
            "token must not be empty (DELETE the push token to remove it)",
        ));
    }
    let device = device_caller(&caller, &device)?;
    state
        .server
        .engine()
        .push_token_set(
            &device,
            pb::PushTokenSetRequest {
                provider: req.provider.clone(),
                platform: req.platform.clone(),
                token: req.token,
            },
        )
        .await?;
    Ok(Json(s::PushRegistered {
        device_id: device.device.to_string(),
        provider: req.provider,
        platform: req.platform,
    }))
}

/// Remove a device's push token: it gets no more pushes.
#[utoipa::path(delete, path = "/v1/me/devices/{device_id}/push-token", tag = "user",
    security(("userToken" = [])),
    params(("device_id" = DeviceIdText, Path)),
    responses(
        (status = 200, description = "Removed (or there was none)", body = s::PushRemoved),
        (status = 400, description = "Bad request", body = s::ErrorBody),
    ))]
pub(crate) async fn remove_token(
    User(caller): User,
    State(state): State<AppState>,
    PathArgs(device): PathArgs<String>,
) -> Answer<s::PushRemoved> {
    let device = device_caller(&caller, &device)?;
    state
        .server
        .engine()
        .push_token_set(&device, pb::PushTokenSetRequest::default())
        .await?;
    Ok(Json(s::PushRemoved {
        device_id: device.device.to_string(),
    }))
}

/// Notification settings as HTTP callers write them.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"hide_content": true}))]
pub(crate) struct SettingsIn {
    /// Pushes say that a message came, not what it says.
    hide_content: bool,
}

/// Set the caller's notification settings.
#[utoipa::path(put, path = "/v1/me/push-settings", tag = "user",
    security(("userToken" = [])),
    request_body = SettingsIn,
    responses(
        (status = 200, description = "Set", body = s::PushSettings),
        (status = 400, description = "Bad request", body = s::ErrorBody),
    ))]
pub(crate) async fn set_settings(
    User(caller): User,
    State(state): State<AppState>,
    JsonBody(req): JsonBody<SettingsIn>,
) -> Answer<s::PushSettings> {
    let preview = if req.hide_content {
        pb::PushPreview::Hide
    } else {
        pb::PushPreview::Show
    };
    state
        .server
        .engine()
        .push_settings(
            &caller,
            pb::PushSettingsRequest {
                preview: preview as i32,
            },
        )
        .await?;
    Ok(Json(s::PushSettings {
        hide_content: req.hide_content,
    }))
}
