//! Device routes: a user's devices, oldest first, and removing one to make
//! room under the device cap (`EngineConfig::max_devices_per_user`). The
//! user acts on their own devices, an admin on anyone's. Removing a device
//! closes its connection with `Kicked { DEVICE_REMOVED }`.

use super::shapes::{self as s, DeviceIdText, UserIdText};
use super::{Admin, ApiError, AppState, PathArgs, User};
use axum::Json;
use axum::extract::State;
use imkit_core::model::{DeviceId, UserId};

type Answer<T> = Result<Json<T>, ApiError>;

async fn list(state: &AppState, user: &UserId) -> Answer<s::Devices> {
    let engine = state.server.engine();
    let devices = engine
        .devices(user)
        .await?
        .iter()
        .map(|d| s::Device {
            device_id: d.device.to_string(),
            first_seen_ms: d.first_seen_ms,
        })
        .collect();
    Ok(Json(s::Devices {
        user_id: user.to_string(),
        max_devices: engine.config().max_devices_per_user as u64,
        devices,
    }))
}

async fn remove(state: &AppState, user: &UserId, device: &str) -> Answer<s::DeviceRemoved> {
    let device = DeviceId::parse(device)?;
    let (removed, closed) = state.server.remove_device(user, &device).await?;
    if !removed {
        return Err(ApiError::not_found(format!("device {device} of {user}")));
    }
    Ok(Json(s::DeviceRemoved {
        user_id: user.to_string(),
        device_id: device.to_string(),
        sessions_closed: closed as u64,
    }))
}

/// The caller's devices, oldest first.
#[utoipa::path(get, path = "/v1/me/devices", tag = "user",
    security(("userToken" = [])),
    responses((status = 200, description = "The caller's devices", body = s::Devices)))]
pub(crate) async fn my_devices(
    User(caller): User,
    State(state): State<AppState>,
) -> Answer<s::Devices> {
    list(&state, &caller.user).await
}

/// Remove one of the caller's devices (its connection is closed).
#[utoipa::path(delete, path = "/v1/me/devices/{device_id}", tag = "user",
    security(("userToken" = [])),
    params(("device_id" = DeviceIdText, Path)),
    responses(
        (status = 200, description = "Removed", body = s::DeviceRemoved),
        (status = 404, description = "No such device", body = s::ErrorBody),
    ))]
pub(crate) async fn remove_my_device(
    User(caller): User,
    State(state): State<AppState>,
    PathArgs(device): PathArgs<String>,
) -> Answer<s::DeviceRemoved> {
    remove(&state, &caller.user, &device).await
}

/// A user's devices, oldest first.
#[utoipa::path(get, path = "/v1/admin/users/{user_id}/devices", tag = "admin",
    security(("adminKey" = [])),
    params(("user_id" = UserIdText, Path)),
    responses((status = 200, description = "Their devices", body = s::Devices)))]
pub(crate) async fn user_devices(
    _: Admin,
    State(state): State<AppState>,
    PathArgs(user): PathArgs<String>,
) -> Answer<s::Devices> {
    list(&state, &UserId::parse(&user)?).await
}

/// Remove one of a user's devices (its connection is closed).
#[utoipa::path(delete, path = "/v1/admin/users/{user_id}/devices/{device_id}", tag = "admin",
    security(("adminKey" = [])),
    params(("user_id" = UserIdText, Path), ("device_id" = DeviceIdText, Path)),
    responses(
        (status = 200, description = "Removed", body = s::DeviceRemoved),
        (status = 404, description = "No such device", body = s::ErrorBody),
    ))]
pub(crate) async fn remove_user_device(
    _: Admin,
    State(state): State<AppState>,
    PathArgs((user, device)): PathArgs<(String, String)>,
) -> Answer<s::DeviceRemoved> {
    remove(&state, &UserId::parse(&user)?, &device).await
}
