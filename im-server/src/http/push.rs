//! Push routes: a device's push token, and the user's notification
//! settings. The same as the protocol's `PushTokenSet` and `PushSettings`,
//! for apps that register devices from their backend or over HTTP.

use axum::Json;
use axum::extract::State;
use imkit_core::Caller;
use imkit_core::model::DeviceId;
use imkit_proto::pb;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState, JsonBody, PathArgs, User};

type Answer = Result<Json<Value>, ApiError>;

/// A push registration as HTTP callers write it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenIn {
    provider: String,
    #[serde(default)]
    platform: String,
    token: String,
}

fn device_caller(caller: &Caller, device: &str) -> Result<Caller, ApiError> {
    Ok(Caller {
        user: caller.user.clone(),
        device: DeviceId::parse(device)?,
    })
}

/// `PUT /v1/me/devices/{device_id}/push-token`
pub(crate) async fn set_token(
    User(caller): User,
    State(state): State<AppState>,
    PathArgs(device): PathArgs<String>,
    JsonBody(req): JsonBody<TokenIn>,
) -> Answer {
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
    Ok(Json(json!({
        "device_id": device.device.as_str(),
        "provider": req.provider,
        "platform": req.platform,
    })))
}

/// `DELETE /v1/me/devices/{device_id}/push-token`
pub(crate) async fn remove_token(
    User(caller): User,
    State(state): State<AppState>,
    PathArgs(device): PathArgs<String>,
) -> Answer {
    let device = device_caller(&caller, &device)?;
    state
        .server
        .engine()
        .push_token_set(&device, pb::PushTokenSetRequest::default())
        .await?;
    Ok(Json(json!({ "device_id": device.device.as_str() })))
}

/// Notification settings as HTTP callers write them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettingsIn {
    hide_content: bool,
}

/// `PUT /v1/me/push-settings`
pub(crate) async fn set_settings(
    User(caller): User,
    State(state): State<AppState>,
    JsonBody(req): JsonBody<SettingsIn>,
) -> Answer {
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
    Ok(Json(json!({ "hide_content": req.hide_content })))
}
