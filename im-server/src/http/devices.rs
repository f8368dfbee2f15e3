//! Device routes: a user's devices, oldest first, and removing one to make
//! room under the device cap (`EngineConfig::max_devices_per_user`). The
//! user acts on their own devices, an admin on anyone's. Removing a device
//! closes its connection with `Kicked { DEVICE_REMOVED }`.

use axum::Json;
use axum::extract::State;
use imkit_core::model::{DeviceId, UserId};
use serde_json::{Value, json};

use super::{Admin, ApiError, AppState, PathArgs, User};

type Answer = Result<Json<Value>, ApiError>;

async fn list(state: &AppState, user: &UserId) -> Answer {
    let engine = state.server.engine();
    let devices: Vec<Value> = engine
        .devices(user)
        .await?
        .iter()
        .map(|d| json!({ "device_id": d.device.as_str(), "first_seen_ms": d.first_seen_ms }))
        .collect();
    Ok(Json(json!({
        "user_id": user.as_str(),
        "max_devices": engine.config().max_devices_per_user,
        "devices": devices,
    })))
}

async fn remove(state: &AppState, user: &UserId, device: &str) -> Answer {
    let device = DeviceId::parse(device)?;
    let (removed, closed) = state.server.remove_device(user, &device).await?;
    if !removed {
        return Err(ApiError::not_found(format!("device {device} of {user}")));
    }
    Ok(Json(json!({
        "user_id": user.as_str(),
        "device_id": device.as_str(),
        "sessions_closed": closed,
    })))
}

/// `GET /v1/me/devices`
pub(crate) async fn my_devices(User(caller): User, State(state): State<AppState>) -> Answer {
    list(&state, &caller.user).await
}

/// `DELETE /v1/me/devices/{device_id}`
pub(crate) async fn remove_my_device(
    User(caller): User,
    State(state): State<AppState>,
    PathArgs(device): PathArgs<String>,
) -> Answer {
    remove(&state, &caller.user, &device).await
}

/// `GET /v1/admin/users/{user_id}/devices`
pub(crate) async fn user_devices(
    _: Admin,
    State(state): State<AppState>,
    PathArgs(user): PathArgs<String>,
) -> Answer {
    list(&state, &UserId::parse(&user)?).await
}

/// `DELETE /v1/admin/users/{user_id}/devices/{device_id}`
pub(crate) async fn remove_user_device(
    _: Admin,
    State(state): State<AppState>,
    PathArgs((user, device)): PathArgs<(String, String)>,
) -> Answer {
    remove(&state, &UserId::parse(&user)?, &device).await
}
