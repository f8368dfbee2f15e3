//! Admin routes: accounts, tokens, forced logout, presence, groups,
//! server-side messages and notifications. All take the admin key.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use imkit_core::Caller;
use imkit_core::auth::{DEFAULT_MAX_TOKEN_LIFETIME_SECS, jti_token_id};
use imkit_core::model::{DeviceId, GroupId, Role, UserId};
use imkit_core::store::Account;
use imkit_proto::ErrorCode;
use imkit_proto::pb::{self, KickReason};
use serde::Deserialize;
use serde_json::{Value, json};

use super::json::{self as j, ContentIn};
use super::{Admin, ApiError, AppState, HTTP_DEVICE, JsonBody, PathArgs, optional_json};

type Answer = Result<Json<Value>, ApiError>;
type Created = Result<(StatusCode, Json<Value>), ApiError>;

/// Longest display name, in bytes.
const MAX_NAME_BYTES: usize = 128;

fn account_json(a: &Account) -> Value {
    json!({
        "user_id": a.user.as_str(),
        "name": a.name,
        "disabled": a.disabled,
        "created_ms": a.created_ms,
    })
}

fn user_id(s: &str) -> Result<UserId, ApiError> {
    let user = UserId::parse(s)?;
    if user.is_system() {
        return Err(ApiError::forbidden(format!("{user} is reserved")));
    }
    Ok(user)
}

async fn account(state: &AppState, user: &UserId) -> Result<Account, ApiError> {
    state
        .server
        .engine()
        .stores()
        .accounts
        .get(user)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {user} has no account")))
}

/// A user who may act: not reserved, and not disabled if they have an
/// account (users without one are allowed, as at login).
async fn acting_user(state: &AppState, s: &str) -> Result<UserId, ApiError> {
    let user = user_id(s)?;
    if let Some(a) = state.server.engine().stores().accounts.get(&user).await?
        && a.disabled
    {
        return Err(imkit_core::Error::UserDisabled(user.to_string()).into());
    }
    Ok(user)
}

fn as_http(user: UserId) -> Caller {
    Caller::new(user, DeviceId::from(HTTP_DEVICE))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateUser {
    user_id: String,
    #[serde(default)]
    name: String,
}

/// `POST /v1/admin/users`
pub(crate) async fn create_user(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(req): JsonBody<CreateUser>,
) -> Created {
    let user = user_id(&req.user_id)?;
    if req.name.len() > MAX_NAME_BYTES {
        return Err(ApiError::bad_request(format!(
            "name is longer than {MAX_NAME_BYTES} bytes"
        )));
    }
    let account = Account {
        user,
        name: req.name,
        disabled: false,
        created_ms: state.clock.now_ms(),
    };
    let stores = state.server.engine().stores();
    if !stores.accounts.create(account.clone()).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::Conflict,
            format!("user {} already has an account", account.user),
        ));
    }
    Ok((StatusCode::CREATED, Json(account_json(&account))))
}

/// `GET /v1/admin/users/{user_id}`
pub(crate) async fn get_user(
    _: Admin,
    State(state): State<AppState>,
    PathArgs(user): PathArgs<String>,
) -> Answer {
    let user = user_id(&user)?;
    let a = account(&state, &user).await?;
    Ok(Json(account_json(&a)))
}

async fn set_disabled(state: &AppState, user: &str, disabled: bool) -> Answer {
    let user = user_id(user)?;
    let a = state
        .server
        .engine()
        .stores()
        .accounts
        .set_disabled(&user, disabled)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {user} has no account")))?;
    let closed = if disabled {
        state
            .server
            .kick_user(&user, None, KickReason::Admin)
            .await?
    } else {
        0
    };
    let mut v = account_json(&a);
    v["sessions_closed"] = json!(closed);
    Ok(Json(v))
}

/// `POST /v1/admin/users/{user_id}/disable`: also closes the user's sessions.
pub(crate) async fn disable_user(
    _: Admin,
    State(state): State<AppState>,
    PathArgs(user): PathArgs<String>,
) -> Answer {
    set_disabled(&state, &user, true).await
}

/// `POST /v1/admin/users/{user_id}/enable`
pub(crate) async fn enable_user(
    _: Admin,
    State(state): State<AppState>,
    PathArgs(user): PathArgs<String>,
) -> Answer {
    set_disabled(&state, &user, false).await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct IssueToken {
    #[serde(default)]
    ttl_secs: Option<u64>,
}

/// `POST /v1/admin/users/{user_id}/tokens`: a login token for an account.
pub(crate) async fn issue_token(
    _: Admin,
    State(state): State<AppState>,
    PathArgs(user): PathArgs<String>,
    body: Bytes,
) -> Created {
    let req: IssueToken = optional_json(&body)?;
    let user = user_id(&user)?;
    let minter = state
        .minter
        .as_ref()
        .filter(|m| m.can_mint())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                ErrorCode::Forbidden,
                "this server does not hold the signing key (a custom authenticator or a \
                 public key); it cannot issue tokens",
            )
        })?;
    let a = account(&state, &user).await?;
    if a.disabled {
        return Err(imkit_core::Error::UserDisabled(user.to_string()).into());
    }
    let max = state.options.max_token_ttl_secs;
    let ttl = req.ttl_secs.unwrap_or(state.options.default_token_ttl_secs);
    if ttl == 0 || ttl > max {
        return Err(ApiError::bad_request(format!(
            "ttl_secs must be 1 to {max}"
        )));
    }
    let expires_at = state.clock.now_ms() / 1000 + ttl;
    let token = minter.mint_until(&user, expires_at)?;
    let identity = minter.verify(&token)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "user_id": user.as_str(),
            "token": token,
            "token_id": identity.token_id(&token),
            "jti": identity.jti,
            "expires_at": expires_at,
        })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevokeToken {
    /// The token itself; or
    #[serde(default)]
    token: Option<String>,
    /// its `jti`, with the user it names (and, optionally, its expiry: the
    /// revocation is kept until then; by default for the longest lifetime
    /// a token may have).
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    expires_at: Option<u64>,
}

/// `POST /v1/admin/tokens/revoke`: the token cannot log in again, and its
/// live sessions (on every node) are closed. Names the token itself, or
/// its `jti` and user, so a backend that minted it can revoke it without
/// having kept it.
pub(crate) async fn revoke_token(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(req): JsonBody<RevokeToken>,
) -> Answer {
    let (user, id, expires_at) = match (&req.token, &req.jti, &req.user_id) {
        (Some(token), None, None) => {
            let minter = state.minter.as_ref().ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_IMPLEMENTED,
                    ErrorCode::Forbidden,
                    "this server checks logins with a custom authenticator; revoke by jti \
                     and user_id",
                )
            })?;
            let identity = minter.verify(token).map_err(|e| match e {
                imkit_core::Error::TokenExpired { .. } => {
                    ApiError::bad_request("the token has already expired; it cannot log in")
                }
                e => ApiError::bad_request(format!("not a token of this server: {e}")),
            })?;
            let id = identity.token_id(token);
            (identity.user, id, identity.expires_at.unwrap_or_default())
        }
        (None, Some(jti), Some(user)) if !jti.is_empty() => {
            let user = user_id(user)?;
            let longest = state.clock.now_ms() / 1000 + DEFAULT_MAX_TOKEN_LIFETIME_SECS;
            (user, jti_token_id(jti), req.expires_at.unwrap_or(longest))
        }
        _ => {
            return Err(ApiError::bad_request(
                "name the token, or its jti and user_id (not both)",
            ));
        }
    };
    let stores = state.server.engine().stores();
    stores.accounts.revoke_token(&id, expires_at).await?;
    let closed = state.server.revoke_sessions(&user, &id).await?;
    Ok(Json(json!({
        "user_id": user.as_str(),
        "token_id": id,
        "revoked": true,
        "sessions_closed": closed,
    })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct ForceLogout {
    #[serde(default)]
    device_id: Option<String>,
}

/// `POST /v1/admin/users/{user_id}/logout`: closes the user's sessions (or
/// one device's) with reason "admin"; the SDK does not reconnect.
pub(crate) async fn force_logout(
    _: Admin,
    State(state): State<AppState>,
    PathArgs(user): PathArgs<String>,
    body: Bytes,
) -> Answer {
    let req: ForceLogout = optional_json(&body)?;
    let user = user_id(&user)?;
    let device = req.device_id.as_deref().map(DeviceId::parse).transpose()?;
    let closed = state
        .server
        .kick_user(&user, device.as_ref(), KickReason::Admin)
        .await?;
    Ok(Json(
        json!({ "user_id": user.as_str(), "sessions_closed": closed }),
    ))
}

/// `GET /v1/admin/users/{user_id}/presence`
pub(crate) async fn presence(
    _: Admin,
    State(state): State<AppState>,
    PathArgs(user): PathArgs<String>,
) -> Answer {
    let user = user_id(&user)?;
    let devices = state
        .server
        .engine()
        .stores()
        .presence
        .locate(&user)
        .await?;
    let list: Vec<Value> = devices
        .iter()
        .map(|d| json!({ "device_id": d.device.as_str(), "node": d.node.as_str() }))
        .collect();
    Ok(Json(json!({
        "user_id": user.as_str(),
        "online": !list.is_empty(),
        "devices": list,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateGroup {
    owner_id: String,
    name: String,
    #[serde(default)]
    avatar: String,
    #[serde(default)]
    member_ids: Vec<String>,
}

/// `POST /v1/admin/groups`: a group owned by `owner_id`.
pub(crate) async fn create_group(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(req): JsonBody<CreateGroup>,
) -> Created {
    let owner = acting_user(&state, &req.owner_id).await?;
    let server = &state.server;
    let out = server
        .exec(server.engine().group_create(
            &as_http(owner),
            pb::GroupCreateRequest {
                name: req.name,
                avatar: req.avatar,
                member_ids: req.member_ids,
            },
        ))
        .await?;
    let group = out.group.as_ref().map(j::group).unwrap_or(Value::Null);
    Ok((StatusCode::CREATED, Json(group)))
}

/// The owner of a group, to act as in member changes.
async fn owner_of(state: &AppState, group: &str) -> Result<Caller, ApiError> {
    let g = GroupId::parse(group)?;
    let members = state.server.engine().stores().groups.members(&g).await?;
    let owner = members
        .into_iter()
        .find(|m| m.role == Role::Owner)
        .ok_or_else(|| ApiError::not_found(format!("group {g}")))?;
    Ok(as_http(owner.user))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddMembers {
    user_ids: Vec<String>,
}

/// `POST /v1/admin/groups/{group_id}/members`
pub(crate) async fn add_members(
    _: Admin,
    State(state): State<AppState>,
    PathArgs(group): PathArgs<String>,
    JsonBody(req): JsonBody<AddMembers>,
) -> Answer {
    let owner = owner_of(&state, &group).await?;
    let server = &state.server;
    let out = server
        .exec(server.engine().group_add(
            &owner,
            pb::GroupAddMembersRequest {
                group_id: group,
                user_ids: req.user_ids,
            },
        ))
        .await?;
    Ok(Json(json!({ "added": out.added })))
}

/// `DELETE /v1/admin/groups/{group_id}/members/{user_id}`
pub(crate) async fn remove_member(
    _: Admin,
    State(state): State<AppState>,
    PathArgs((group, user)): PathArgs<(String, String)>,
) -> Answer {
    let owner = owner_of(&state, &group).await?;
    let server = &state.server;
    let out = server
        .exec(server.engine().group_remove(
            &owner,
            pb::GroupRemoveMembersRequest {
                group_id: group,
                user_ids: vec![user],
            },
        ))
        .await?;
    Ok(Json(json!({ "removed": out.removed })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SendMessage {
    /// Absent: the system user.
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to_user: Option<String>,
    #[serde(default)]
    to_group: Option<String>,
    /// Absent: a fresh id (so a retried request is stored twice; pass one
    /// to make retries safe).
    #[serde(default)]
    client_msg_id: Option<String>,
    content: ContentIn,
}

/// `POST /v1/admin/messages`: as the system or on behalf of a user, to a
/// user or a group; stored, numbered and delivered like any message.
pub(crate) async fn send_message(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(req): JsonBody<SendMessage>,
) -> Answer {
    use pb::send_request::To;
    let to = match (req.to_user, req.to_group) {
        (Some(u), None) => To::UserId(u),
        (None, Some(g)) => To::GroupId(g),
        _ => {
            return Err(ApiError::bad_request(
                "set exactly one of to_user or to_group",
            ));
        }
    };
    let content = req.content.into_pb(state.blobs.as_ref()).await?;
    let send = pb::SendRequest {
        client_msg_id: req
            .client_msg_id
            .unwrap_or_else(|| format!("http-{}", uuid::Uuid::new_v4().simple())),
        to: Some(to),
        content: Some(content),
    };
    let server = &state.server;
    let engine = server.engine();
    let sent = match req.from {
        None => server.exec(engine.send_as_system(send)).await?,
        Some(from) => {
            let from = as_http(acting_user(&state, &from).await?);
            server.exec(engine.send(&from, send)).await?
        }
    };
    Ok(Json(j::sent(&sent)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Notify {
    user_ids: Vec<String>,
    kind: String,
    /// UTF-8 text (JSON, say), carried as the notification's bytes.
    #[serde(default)]
    data: String,
    #[serde(default)]
    from: String,
}

/// Most users one notification request may name.
const MAX_NOTIFY_USERS: usize = 10_000;

/// `POST /v1/admin/notifications`: pushed to the users' connected devices,
/// not stored.
pub(crate) async fn notify(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(req): JsonBody<Notify>,
) -> Answer {
    if req.kind.is_empty() {
        return Err(ApiError::bad_request("kind is empty"));
    }
    if req.user_ids.is_empty() || req.user_ids.len() > MAX_NOTIFY_USERS {
        return Err(ApiError::bad_request(format!(
            "user_ids must name 1 to {MAX_NOTIFY_USERS} users"
        )));
    }
    let users = req
        .user_ids
        .iter()
        .map(|u| user_id(u))
        .collect::<Result<Vec<_>, _>>()?;
    let server = &state.server;
    let devices = server
        .exec(server.engine().notify(
            &users,
            pb::Notification {
                kind: req.kind,
                data: req.data.into_bytes().into(),
                timestamp_ms: state.clock.now_ms(),
                from: req.from,
            },
        ))
        .await?;
    Ok(Json(json!({ "devices": devices })))
}
