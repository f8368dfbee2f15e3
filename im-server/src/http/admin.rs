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
use utoipa::ToSchema;

use super::json::{self as j, ContentIn};
use super::shapes::{self as s, DeviceIdText, GroupIdText, UserIdText};
use super::{Admin, ApiError, AppState, HTTP_DEVICE, JsonBody, PathArgs, optional_json};

type Answer<T> = Result<Json<T>, ApiError>;
type Created<T> = Result<(StatusCode, Json<T>), ApiError>;

/// Longest display name, in characters.
const MAX_NAME_CHARS: usize = 128;

fn account_json(a: &Account) -> s::Account {
    s::Account {
        user_id: a.user.to_string(),
        name: a.name.clone(),
        disabled: a.disabled,
        created_ms: a.created_ms,
    }
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

/// A new account.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"user_id": "alice", "name": "Alice"}))]
pub(crate) struct CreateUser {
    #[schema(value_type = UserIdText)]
    user_id: String,
    /// Display name.
    #[serde(default)]
    #[schema(max_length = 128)]
    name: String,
}

/// Create a user account.
#[utoipa::path(post, path = "/v1/admin/users", tag = "admin",
    security(("adminKey" = [])),
    request_body = CreateUser,
    responses(
        (status = 201, description = "Created", body = s::Account),
        (status = 400, description = "Bad request", body = s::ErrorBody),
        (status = 409, description = "The user already has an account", body = s::ErrorBody),
    ))]
pub(crate) async fn create_user(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(req): JsonBody<CreateUser>,
) -> Created<s::Account> {
    let user = user_id(&req.user_id)?;
    if req.name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::bad_request(format!(
            "name is longer than {MAX_NAME_CHARS} characters"
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

/// A user's account.
#[utoipa::path(get, path = "/v1/admin/users/{user_id}", tag = "admin",
    security(("adminKey" = [])),
    params(("user_id" = UserIdText, Path)),
    responses(
        (status = 200, description = "The account", body = s::Account),
        (status = 404, description = "No such account", body = s::ErrorBody),
    ))]
pub(crate) async fn get_user(
    _: Admin,
    State(state): State<AppState>,
    PathArgs(user): PathArgs<String>,
) -> Answer<s::Account> {
    let user = user_id(&user)?;
    let a = account(&state, &user).await?;
    Ok(Json(account_json(&a)))
}

async fn set_disabled(state: &AppState, user: &str, disabled: bool) -> Answer<s::AccountChanged> {
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
    Ok(Json(s::AccountChanged {
        account: account_json(&a),
        sessions_closed: closed as u64,
    }))
}

/// Disable a user: they cannot log in, and their sessions are closed.
#[utoipa::path(post, path = "/v1/admin/users/{user_id}/disable", tag = "admin",
    security(("adminKey" = [])),
    params(("user_id" = UserIdText, Path)),
    responses(
        (status = 200, description = "Disabled", body = s::AccountChanged),
        (status = 404, description = "No such account", body = s::ErrorBody),
    ))]
pub(crate) async fn disable_user(
    _: Admin,
    State(state): State<AppState>,
    PathArgs(user): PathArgs<String>,
) -> Answer<s::AccountChanged> {
    set_disabled(&state, &user, true).await
}

/// Enable a disabled user again.
#[utoipa::path(post, path = "/v1/admin/users/{user_id}/enable", tag = "admin",
    security(("adminKey" = [])),
    params(("user_id" = UserIdText, Path)),
    responses(
        (status = 200, description = "Enabled", body = s::AccountChanged),
        (status = 404, description = "No such account", body = s::ErrorBody),
    ))]
pub(crate) async fn enable_user(
    _: Admin,
    State(state): State<AppState>,
    PathArgs(user): PathArgs<String>,
) -> Answer<s::AccountChanged> {
    set_disabled(&state, &user, false).await
}

/// How long a new token is valid.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"ttl_secs": 3600}))]
pub(crate) struct IssueToken {
    /// Seconds, 1 up to the server's longest (30 days by default);
    /// absent or `null`: the server's default (24 h).
    #[serde(default, deserialize_with = "s::int64")]
    #[schema(minimum = 1, maximum = 2592000)]
    ttl_secs: Option<u64>,
}

/// Issue a login token for an account. The body is optional.
#[utoipa::path(post, path = "/v1/admin/users/{user_id}/tokens", tag = "admin",
    security(("adminKey" = [])),
    params(("user_id" = UserIdText, Path)),
    request_body(content = Option<IssueToken>),
    responses(
        (status = 201, description = "Issued", body = s::IssuedToken),
        (status = 400, description = "Bad request (a lifetime over the longest)", body = s::ErrorBody),
        (status = 404, description = "No such account", body = s::ErrorBody),
        (status = 501, description = "This server does not hold the signing key", body = s::ErrorBody),
    ))]
pub(crate) async fn issue_token(
    _: Admin,
    State(state): State<AppState>,
    PathArgs(user): PathArgs<String>,
    body: Bytes,
) -> Created<s::IssuedToken> {
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
        Json(s::IssuedToken {
            user_id: user.to_string(),
            token_id: identity.token_id(&token),
            token,
            jti: identity.jti,
            expires_at,
        }),
    ))
}

/// The token to revoke: the token itself, or its `jti` and user.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"jti": "0190f1c2a3b47c8d", "user_id": "alice"}))]
pub(crate) struct RevokeToken {
    /// The token itself; or
    #[serde(default)]
    token: Option<String>,
    /// its `jti`, with the user it names (and, optionally, its expiry: the
    /// revocation is kept until then; by default for the longest lifetime
    /// a token may have).
    #[serde(default)]
    #[schema(min_length = 1)]
    jti: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<UserIdText>)]
    user_id: Option<String>,
    /// Unix seconds.
    #[serde(default, deserialize_with = "s::int64")]
    #[schema(maximum = 9223372036854775807_i64)]
    expires_at: Option<u64>,
}

/// Revoke a login token.
///
/// It cannot log in again, and its live sessions (on every node) are
/// closed. The body names the token itself, or its `jti` and user, so a
/// backend that minted it can revoke it without having kept it.
#[utoipa::path(post, path = "/v1/admin/tokens/revoke", tag = "admin",
    security(("adminKey" = [])),
    request_body = RevokeToken,
    responses(
        (status = 200, description = "Revoked", body = s::Revoked),
        (status = 400, description = "Neither or both ways of naming the token", body = s::ErrorBody),
        (status = 404, description = "Not a token of this server", body = s::ErrorBody),
        (status = 409, description = "The token has already expired", body = s::ErrorBody),
        (status = 501, description = "A custom authenticator: revoke by jti and user_id", body = s::ErrorBody),
    ))]
pub(crate) async fn revoke_token(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(req): JsonBody<RevokeToken>,
) -> Answer<s::Revoked> {
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
                imkit_core::Error::TokenExpired { .. } => ApiError::new(
                    StatusCode::CONFLICT,
                    ErrorCode::Conflict,
                    "the token has already expired; it cannot log in",
                ),
                e => ApiError::not_found(format!("not a token of this server: {e}")),
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
    Ok(Json(s::Revoked {
        user_id: user.to_string(),
        token_id: id,
        revoked: true,
        sessions_closed: closed as u64,
    }))
}

/// Which sessions to close.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"device_id": "phone-1"}))]
pub(crate) struct ForceLogout {
    /// One device; absent or `null`: all of them.
    #[serde(default)]
    #[schema(value_type = Option<DeviceIdText>)]
    device_id: Option<String>,
}

/// Close a user's sessions, or one device's.
///
/// They close with reason "admin", and the SDK does not reconnect. The body
/// is optional.
#[utoipa::path(post, path = "/v1/admin/users/{user_id}/logout", tag = "admin",
    security(("adminKey" = [])),
    params(("user_id" = UserIdText, Path)),
    request_body(content = Option<ForceLogout>),
    responses(
        (status = 200, description = "Sessions closed", body = s::LoggedOut),
        (status = 400, description = "Bad request", body = s::ErrorBody),
    ))]
pub(crate) async fn force_logout(
    _: Admin,
    State(state): State<AppState>,
    PathArgs(user): PathArgs<String>,
    body: Bytes,
) -> Answer<s::LoggedOut> {
    let req: ForceLogout = optional_json(&body)?;
    let user = user_id(&user)?;
    let device = req.device_id.as_deref().map(DeviceId::parse).transpose()?;
    let closed = state
        .server
        .kick_user(&user, device.as_ref(), KickReason::Admin)
        .await?;
    Ok(Json(s::LoggedOut {
        user_id: user.to_string(),
        sessions_closed: closed as u64,
    }))
}

/// Where a user is connected.
#[utoipa::path(get, path = "/v1/admin/users/{user_id}/presence", tag = "admin",
    security(("adminKey" = [])),
    params(("user_id" = UserIdText, Path)),
    responses((status = 200, description = "Their connected devices", body = s::Presence)))]
pub(crate) async fn presence(
    _: Admin,
    State(state): State<AppState>,
    PathArgs(user): PathArgs<String>,
) -> Answer<s::Presence> {
    let user = user_id(&user)?;
    let devices = state
        .server
        .engine()
        .stores()
        .presence
        .locate(&user)
        .await?;
    let devices: Vec<s::PresenceDevice> = devices
        .iter()
        .map(|d| s::PresenceDevice {
            device_id: d.device.to_string(),
            node: d.node.to_string(),
        })
        .collect();
    Ok(Json(s::Presence {
        user_id: user.to_string(),
        online: !devices.is_empty(),
        devices,
    }))
}

/// A new group, owned by `owner_id`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AdminCreateGroup, example = json!({"owner_id": "alice", "name": "Climbing", "member_ids": ["bob", "carol"]}))]
pub(crate) struct CreateGroup {
    #[schema(value_type = UserIdText)]
    owner_id: String,
    #[schema(max_length = 128)]
    name: String,
    /// An image's URL or file id.
    #[serde(default)]
    avatar: String,
    /// Members besides the owner.
    #[serde(default)]
    #[schema(value_type = Vec<UserIdText>)]
    member_ids: Vec<String>,
}

/// Create a group on behalf of its owner.
#[utoipa::path(post, path = "/v1/admin/groups", tag = "admin", operation_id = "admin_create_group",
    security(("adminKey" = [])),
    request_body = CreateGroup,
    responses(
        (status = 201, description = "Created", body = j::Group),
        (status = 400, description = "Bad request", body = s::ErrorBody),
    ))]
pub(crate) async fn create_group(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(req): JsonBody<CreateGroup>,
) -> Created<j::Group> {
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
    Ok((StatusCode::CREATED, Json(j::created_group(&out)?)))
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

/// Users to add.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"user_ids": ["dave"]}))]
pub(crate) struct AddMembers {
    #[schema(value_type = Vec<UserIdText>)]
    user_ids: Vec<String>,
}

/// Add members to a group (as its owner).
#[utoipa::path(post, path = "/v1/admin/groups/{group_id}/members", tag = "admin",
    security(("adminKey" = [])),
    params(("group_id" = GroupIdText, Path)),
    request_body = AddMembers,
    responses(
        (status = 200, description = "Added", body = s::Added),
        (status = 400, description = "Bad request", body = s::ErrorBody),
        (status = 404, description = "No such group", body = s::ErrorBody),
    ))]
pub(crate) async fn add_members(
    _: Admin,
    State(state): State<AppState>,
    PathArgs(group): PathArgs<String>,
    JsonBody(req): JsonBody<AddMembers>,
) -> Answer<s::Added> {
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
    Ok(Json(s::Added { added: out.added }))
}

/// Remove a member from a group (as its owner).
#[utoipa::path(delete, path = "/v1/admin/groups/{group_id}/members/{user_id}", tag = "admin",
    security(("adminKey" = [])),
    params(("group_id" = GroupIdText, Path), ("user_id" = UserIdText, Path)),
    responses(
        (status = 200, description = "Removed (empty if they were not a member)", body = s::Removed),
        (status = 404, description = "No such group", body = s::ErrorBody),
    ))]
pub(crate) async fn remove_member(
    _: Admin,
    State(state): State<AppState>,
    PathArgs((group, user)): PathArgs<(String, String)>,
) -> Answer<s::Removed> {
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
    Ok(Json(s::Removed {
        removed: out.removed,
    }))
}

/// A message to send: to one user or one group.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"from": "alice", "to_user": "bob", "client_msg_id": "order-1842-shipped", "content": {"type": "text", "text": "Your order has shipped"}}))]
pub(crate) struct SendMessage {
    /// The sender; absent or `null`: the system user.
    #[serde(default)]
    #[schema(value_type = Option<UserIdText>)]
    from: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<UserIdText>)]
    to_user: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<GroupIdText>)]
    to_group: Option<String>,
    /// Absent: a fresh id (so a retried request is stored twice; pass one
    /// to make retries safe).
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^[A-Za-z0-9_.@-]{1,64}$")]
    client_msg_id: Option<String>,
    content: ContentIn,
}

/// Send a message as the system or on behalf of a user.
///
/// To a user or a group; it is stored, numbered and delivered like any
/// message.
#[utoipa::path(post, path = "/v1/admin/messages", tag = "admin",
    security(("adminKey" = [])),
    request_body = SendMessage,
    responses(
        (status = 200, description = "Stored (or a resend of a stored one)", body = j::Sent),
        (status = 400, description = "Bad request (neither or both of to_user and to_group)", body = s::ErrorBody),
        (status = 403, description = "Blocked, not a member, or to themselves", body = s::ErrorBody),
        (status = 404, description = "No such group or file", body = s::ErrorBody),
        (status = 409, description = "The client_msg_id was used for another conversation", body = s::ErrorBody),
    ))]
pub(crate) async fn send_message(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(req): JsonBody<SendMessage>,
) -> Answer<j::Sent> {
    use pb::send_request::To;
    if req.from.is_some() && req.from == req.to_user {
        return Err(ApiError::forbidden(
            "a user cannot message themselves (their other devices sync instead)",
        ));
    }
    let to = match (req.to_user, req.to_group) {
        (Some(u), None) => To::UserId(u),
        (None, Some(g)) => To::GroupId(g),
        _ => {
            return Err(ApiError::bad_request(
                "set exactly one of to_user or to_group",
            ));
        }
    };
    let client_msg_id = match req.client_msg_id {
        // The id rule of the other ids, so the document can state it.
        Some(id) => DeviceId::parse(&id)
            .map_err(|_| {
                ApiError::bad_request("client_msg_id must be 1 to 64 of A-Z a-z 0-9 _ - . @")
            })?
            .to_string(),
        None => format!("http-{}", uuid::Uuid::new_v4().simple()),
    };
    let content = req.content.into_pb(state.blobs.as_ref()).await?;
    let send = pb::SendRequest {
        client_msg_id,
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
    Ok(Json(j::Sent::from(&sent)))
}

/// A notification: pushed to the users' connected devices, not stored.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"user_ids": ["alice", "bob"], "kind": "order.shipped", "data": "{\"order\": 1842}"}))]
pub(crate) struct Notify {
    #[schema(value_type = Vec<UserIdText>, min_items = 1, max_items = 10000)]
    user_ids: Vec<String>,
    /// What the application calls it.
    #[schema(min_length = 1)]
    kind: String,
    /// UTF-8 text (JSON, say), carried as the notification's bytes.
    #[serde(default)]
    data: String,
    /// Who it is from, as the application names them.
    #[serde(default)]
    from: String,
}

/// Most users one notification request may name.
const MAX_NOTIFY_USERS: usize = 10_000;

/// Push a notification to users' connected devices (not stored).
#[utoipa::path(post, path = "/v1/admin/notifications", tag = "admin",
    security(("adminKey" = [])),
    request_body = Notify,
    responses(
        (status = 200, description = "Pushed", body = s::Notified),
        (status = 400, description = "Bad request", body = s::ErrorBody),
    ))]
pub(crate) async fn notify(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(req): JsonBody<Notify>,
) -> Answer<s::Notified> {
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
    Ok(Json(s::Notified {
        devices: devices as u64,
    }))
}
