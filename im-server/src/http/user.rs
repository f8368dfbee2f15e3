//! User routes: the caller's contacts, groups, conversations and history.
//! Each acts as the token's user and nobody else; the engine checks
//! membership exactly as it does for the live protocol.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use imkit_proto::pb;
use serde::Deserialize;
use serde_json::{Value, json};

use super::json as j;
use super::{ApiError, AppState, JsonBody, PathArgs, QueryArgs, User};

type Answer = Result<Json<Value>, ApiError>;

fn ok() -> Json<Value> {
    Json(json!({ "ok": true }))
}

/// `GET /v1/me`
pub(crate) async fn me(User(caller): User, State(state): State<AppState>) -> Answer {
    let account = state
        .server
        .engine()
        .stores()
        .accounts
        .get(&caller.user)
        .await?;
    Ok(Json(json!({
        "user_id": caller.user.as_str(),
        "name": account.map(|a| a.name),
    })))
}

/// `GET /v1/contacts`: friends, pending requests both ways, blocked users.
pub(crate) async fn contacts(User(caller): User, State(state): State<AppState>) -> Answer {
    let l = state.server.engine().friend_list(&caller).await?;
    Ok(Json(json!({
        "friends": l.friends,
        "incoming": l.incoming,
        "outgoing": l.outgoing,
        "blocked": l.blocked,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FriendRequest {
    user_id: String,
    #[serde(default)]
    message: String,
}

/// `POST /v1/contacts/requests`: asks; if they already asked, you are friends.
pub(crate) async fn friend_request(
    User(caller): User,
    State(state): State<AppState>,
    JsonBody(req): JsonBody<FriendRequest>,
) -> Answer {
    let server = &state.server;
    let out = server
        .exec(server.engine().friend_add(
            &caller,
            pb::FriendAddRequest {
                user_id: req.user_id,
                message: req.message,
            },
        ))
        .await?;
    Ok(Json(json!({ "accepted": out.accepted })))
}

/// `POST /v1/contacts/requests/{user_id}/accept`
pub(crate) async fn friend_accept(
    User(caller): User,
    State(state): State<AppState>,
    PathArgs(user_id): PathArgs<String>,
) -> Answer {
    let server = &state.server;
    server
        .exec(
            server
                .engine()
                .friend_accept(&caller, pb::FriendAcceptRequest { user_id }),
        )
        .await?;
    Ok(ok())
}

/// `DELETE /v1/contacts/friends/{user_id}`: ends a friendship or a request.
pub(crate) async fn friend_remove(
    User(caller): User,
    State(state): State<AppState>,
    PathArgs(user_id): PathArgs<String>,
) -> Answer {
    let server = &state.server;
    server
        .exec(
            server
                .engine()
                .friend_remove(&caller, pb::FriendRemoveRequest { user_id }),
        )
        .await?;
    Ok(ok())
}

/// The privacy settings as JSON: `{"group_adds": "anyone" | "friends"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Privacy {
    group_adds: GroupAddsJson,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum GroupAddsJson {
    Anyone,
    Friends,
}

fn privacy_json(policy: i32) -> Json<Value> {
    let group_adds = if policy == pb::GroupAddPolicy::Friends as i32 {
        "friends"
    } else {
        "anyone"
    };
    Json(json!({ "group_adds": group_adds }))
}

/// `GET /v1/me/privacy`: who may add the caller to groups.
pub(crate) async fn privacy(User(caller): User, State(state): State<AppState>) -> Answer {
    let l = state.server.engine().friend_list(&caller).await?;
    Ok(privacy_json(l.group_adds))
}

/// `PUT /v1/me/privacy`: sets who may add the caller to groups.
pub(crate) async fn set_privacy(
    User(caller): User,
    State(state): State<AppState>,
    JsonBody(req): JsonBody<Privacy>,
) -> Answer {
    let policy = match req.group_adds {
        GroupAddsJson::Anyone => pb::GroupAddPolicy::Anyone,
        GroupAddsJson::Friends => pb::GroupAddPolicy::Friends,
    } as i32;
    state
        .server
        .engine()
        .privacy_set(&caller, pb::PrivacySetRequest { group_adds: policy })
        .await?;
    Ok(privacy_json(policy))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Block {
    user_id: String,
}

/// `POST /v1/contacts/blocks`
pub(crate) async fn block(
    User(caller): User,
    State(state): State<AppState>,
    JsonBody(req): JsonBody<Block>,
) -> Answer {
    let server = &state.server;
    server
        .exec(server.engine().block(
            &caller,
            pb::BlockRequest {
                user_id: req.user_id,
            },
        ))
        .await?;
    Ok(ok())
}

/// `DELETE /v1/contacts/blocks/{user_id}`
pub(crate) async fn unblock(
    User(caller): User,
    State(state): State<AppState>,
    PathArgs(user_id): PathArgs<String>,
) -> Answer {
    let server = &state.server;
    server
        .exec(
            server
                .engine()
                .unblock(&caller, pb::UnblockRequest { user_id }),
        )
        .await?;
    Ok(ok())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageArgs {
    /// The previous page's `next`.
    #[serde(default)]
    after: Option<String>,
}

/// `GET /v1/groups?after=`: the caller's groups, a page at a time.
pub(crate) async fn groups(
    User(caller): User,
    State(state): State<AppState>,
    QueryArgs(args): QueryArgs<PageArgs>,
) -> Answer {
    let l = state
        .server
        .engine()
        .group_list(
            &caller,
            pb::GroupListRequest {
                after: args.after.unwrap_or_default(),
            },
        )
        .await?;
    let groups: Vec<Value> = l.groups.iter().map(j::group).collect();
    Ok(Json(json!({ "groups": groups, "next": l.next })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateGroup {
    name: String,
    #[serde(default)]
    avatar: String,
    #[serde(default)]
    member_ids: Vec<String>,
}

/// `POST /v1/groups`: a group the caller owns.
pub(crate) async fn create_group(
    User(caller): User,
    State(state): State<AppState>,
    JsonBody(req): JsonBody<CreateGroup>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let server = &state.server;
    let out = server
        .exec(server.engine().group_create(
            &caller,
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

/// `GET /v1/groups/{group_id}/members?after=`: members only, a page at a
/// time.
pub(crate) async fn group_members(
    User(caller): User,
    State(state): State<AppState>,
    PathArgs(group_id): PathArgs<String>,
    QueryArgs(args): QueryArgs<PageArgs>,
) -> Answer {
    let r = state
        .server
        .engine()
        .group_members(
            &caller,
            pb::GroupMembersRequest {
                group_id,
                after: args.after.unwrap_or_default(),
            },
        )
        .await?;
    let members: Vec<Value> = r.members.iter().map(j::member).collect();
    Ok(Json(json!({
        "group": r.group.as_ref().map(j::group),
        "members": members,
        "next": r.next,
    })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListArgs {
    #[serde(default)]
    limit: Option<u32>,
    /// The previous page's `next`.
    #[serde(default)]
    after: Option<String>,
}

/// `GET /v1/conversations?limit=&after=`: newest first, with unread
/// counts, a page at a time.
pub(crate) async fn conversations(
    User(caller): User,
    State(state): State<AppState>,
    QueryArgs(args): QueryArgs<ListArgs>,
) -> Answer {
    let r = state
        .server
        .engine()
        .conversations(
            &caller,
            pb::ConversationListRequest {
                limit: args.limit.unwrap_or(0),
                after: args.after.unwrap_or_default(),
            },
        )
        .await?;
    let list: Vec<Value> = r.conversations.iter().map(j::conversation).collect();
    Ok(Json(json!({
        "conversations": list,
        "total_unread": r.total_unread,
        "next": r.next,
    })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryArgs {
    /// Start here, exclusive; 0 (the default) with `backward` = the newest.
    #[serde(default)]
    from_seq: Option<u64>,
    /// Older messages first (the default) or newer.
    #[serde(default)]
    backward: Option<bool>,
    #[serde(default)]
    limit: Option<u32>,
}

/// `GET /v1/conversations/{conversation_id}/messages`: a page of history.
pub(crate) async fn history(
    User(caller): User,
    State(state): State<AppState>,
    PathArgs(conversation_id): PathArgs<String>,
    QueryArgs(args): QueryArgs<HistoryArgs>,
) -> Answer {
    let r = state
        .server
        .engine()
        .history(
            &caller,
            pb::HistoryRequest {
                conversation_id,
                from_seq: args.from_seq.unwrap_or(0),
                backward: args.backward.unwrap_or(true),
                limit: args.limit.unwrap_or(0),
            },
        )
        .await?;
    let messages: Vec<Value> = r.messages.iter().map(j::message).collect();
    Ok(Json(json!({
        "conversation_id": r.conversation_id,
        "messages": messages,
        "has_more": r.has_more,
    })))
}
