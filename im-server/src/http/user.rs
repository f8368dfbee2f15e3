//! User routes: the caller's contacts, groups, conversations and history.
//! Each acts as the token's user and nobody else; the engine checks
//! membership exactly as it does for the live protocol.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use imkit_core::model::UserId;
use imkit_proto::pb;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::json as j;
use super::shapes::{self as s, ConversationIdText, GroupAdds, GroupIdText, UserIdText};
use super::{ApiError, AppState, JsonBody, PathArgs, QueryArgs, User};

type Answer<T> = Result<Json<T>, ApiError>;

fn ok() -> Json<s::Done> {
    Json(s::Done::new())
}

/// Contact routes act on someone else: naming yourself is refused (403).
fn not_self(caller: &imkit_core::Caller, user: &str) -> Result<(), ApiError> {
    if caller.user.as_str() == user {
        return Err(ApiError::forbidden("that is yourself"));
    }
    Ok(())
}

/// A group or member page's `after`: the previous page's `next`, up to 19
/// digits (the document's pattern).
fn index_cursor(after: Option<String>) -> Result<String, ApiError> {
    let after = after.unwrap_or_default();
    if after.len() > 19 || !after.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad_request(
            "after must be a previous page's next (up to 19 digits)",
        ));
    }
    Ok(after)
}

/// A conversation page's `after`: `<time>:<conversation>`, as `next` gave.
fn list_cursor(after: Option<String>) -> Result<String, ApiError> {
    let after = after.unwrap_or_default();
    let shaped = after.is_empty()
        || after.split_once(':').is_some_and(|(time, _)| {
            (1..=19).contains(&time.len()) && time.bytes().all(|b| b.is_ascii_digit())
        });
    if !shaped {
        return Err(ApiError::bad_request(
            "after must be a previous page's next (<time>:<conversation>)",
        ));
    }
    Ok(after)
}

/// The caller.
#[utoipa::path(get, path = "/v1/me", tag = "user",
    security(("userToken" = [])),
    responses((status = 200, description = "The caller", body = s::Me)))]
pub(crate) async fn me(User(caller): User, State(state): State<AppState>) -> Answer<s::Me> {
    let account = state
        .server
        .engine()
        .stores()
        .accounts
        .get(&caller.user)
        .await?;
    Ok(Json(s::Me {
        user_id: caller.user.to_string(),
        name: account.map(|a| a.name),
    }))
}

/// The caller's friends, pending requests both ways, and blocked users.
#[utoipa::path(get, path = "/v1/contacts", tag = "user",
    security(("userToken" = [])),
    responses((status = 200, description = "The caller's contacts", body = s::Contacts)))]
pub(crate) async fn contacts(
    User(caller): User,
    State(state): State<AppState>,
) -> Answer<s::Contacts> {
    let l = state.server.engine().friend_list(&caller).await?;
    Ok(Json(s::Contacts {
        friends: l.friends,
        incoming: l.incoming,
        outgoing: l.outgoing,
        blocked: l.blocked,
    }))
}

/// A friend request.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"user_id": "bob", "message": "We met at the wall"}))]
pub(crate) struct FriendRequest {
    #[schema(value_type = UserIdText)]
    user_id: String,
    /// A note for them.
    #[serde(default)]
    message: String,
}

/// Ask to be friends; if they already asked, you are friends.
#[utoipa::path(post, path = "/v1/contacts/requests", tag = "user",
    security(("userToken" = [])),
    request_body = FriendRequest,
    responses(
        (status = 200, description = "Asked (or accepted: they had asked)", body = s::FriendRequested),
        (status = 400, description = "Bad request", body = s::ErrorBody),
        (status = 403, description = "They block you, or it is yourself", body = s::ErrorBody),
    ))]
pub(crate) async fn friend_request(
    User(caller): User,
    State(state): State<AppState>,
    JsonBody(req): JsonBody<FriendRequest>,
) -> Answer<s::FriendRequested> {
    not_self(&caller, &req.user_id)?;
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
    Ok(Json(s::FriendRequested {
        accepted: out.accepted,
    }))
}

/// Accept a user's friend request.
#[utoipa::path(post, path = "/v1/contacts/requests/{user_id}/accept", tag = "user",
    security(("userToken" = [])),
    params(("user_id" = UserIdText, Path, description = "Who asked")),
    responses(
        (status = 200, description = "Friends", body = s::Done),
        (status = 400, description = "Bad request", body = s::ErrorBody),
        (status = 404, description = "They did not ask", body = s::ErrorBody),
    ))]
pub(crate) async fn friend_accept(
    User(caller): User,
    State(state): State<AppState>,
    PathArgs(user_id): PathArgs<String>,
) -> Answer<s::Done> {
    not_self(&caller, &user_id)?;
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

/// End a friendship or a request, either way.
#[utoipa::path(delete, path = "/v1/contacts/friends/{user_id}", tag = "user",
    security(("userToken" = [])),
    params(("user_id" = UserIdText, Path)),
    responses(
        (status = 200, description = "Ended (or there was nothing)", body = s::Done),
        (status = 400, description = "Bad request", body = s::ErrorBody),
    ))]
pub(crate) async fn friend_remove(
    User(caller): User,
    State(state): State<AppState>,
    PathArgs(user_id): PathArgs<String>,
) -> Answer<s::Done> {
    not_self(&caller, &user_id)?;
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

fn privacy_json(policy: i32) -> Json<s::Privacy> {
    let group_adds = if policy == pb::GroupAddPolicy::Friends as i32 {
        GroupAdds::Friends
    } else {
        GroupAdds::Anyone
    };
    Json(s::Privacy { group_adds })
}

/// Who may add the caller to groups.
#[utoipa::path(get, path = "/v1/me/privacy", tag = "user",
    security(("userToken" = [])),
    responses((status = 200, description = "The caller's settings", body = s::Privacy)))]
pub(crate) async fn privacy(
    User(caller): User,
    State(state): State<AppState>,
) -> Answer<s::Privacy> {
    let l = state.server.engine().friend_list(&caller).await?;
    Ok(privacy_json(l.group_adds))
}

/// Set who may add the caller to groups.
#[utoipa::path(put, path = "/v1/me/privacy", tag = "user",
    security(("userToken" = [])),
    request_body = s::Privacy,
    responses(
        (status = 200, description = "Set", body = s::Privacy),
        (status = 400, description = "Bad request", body = s::ErrorBody),
    ))]
pub(crate) async fn set_privacy(
    User(caller): User,
    State(state): State<AppState>,
    JsonBody(req): JsonBody<s::Privacy>,
) -> Answer<s::Privacy> {
    let policy = match req.group_adds {
        GroupAdds::Anyone => pb::GroupAddPolicy::Anyone,
        GroupAdds::Friends => pb::GroupAddPolicy::Friends,
    } as i32;
    state
        .server
        .engine()
        .privacy_set(&caller, pb::PrivacySetRequest { group_adds: policy })
        .await?;
    Ok(privacy_json(policy))
}

/// A user to block.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"user_id": "mallory"}))]
pub(crate) struct Block {
    #[schema(value_type = UserIdText)]
    user_id: String,
}

/// Block a user: they cannot message the caller or ask to be friends.
#[utoipa::path(post, path = "/v1/contacts/blocks", tag = "user",
    security(("userToken" = [])),
    request_body = Block,
    responses(
        (status = 200, description = "Blocked", body = s::Done),
        (status = 400, description = "Bad request", body = s::ErrorBody),
    ))]
pub(crate) async fn block(
    User(caller): User,
    State(state): State<AppState>,
    JsonBody(req): JsonBody<Block>,
) -> Answer<s::Done> {
    not_self(&caller, &req.user_id)?;
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

/// Unblock a user.
#[utoipa::path(delete, path = "/v1/contacts/blocks/{user_id}", tag = "user",
    security(("userToken" = [])),
    params(("user_id" = UserIdText, Path)),
    responses(
        (status = 200, description = "Unblocked (or was not blocked)", body = s::Done),
        (status = 400, description = "Bad request", body = s::ErrorBody),
    ))]
pub(crate) async fn unblock(
    User(caller): User,
    State(state): State<AppState>,
    PathArgs(user_id): PathArgs<String>,
) -> Answer<s::Done> {
    not_self(&caller, &user_id)?;
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

/// Where a page starts.
#[derive(Deserialize, Default, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageArgs {
    /// The previous page's `next`; absent for the first page.
    #[serde(default)]
    #[param(pattern = "^[0-9]{0,19}$", example = "100")]
    after: Option<String>,
}

/// The caller's groups, a page at a time.
#[utoipa::path(get, path = "/v1/groups", tag = "user",
    security(("userToken" = [])),
    params(PageArgs),
    responses(
        (status = 200, description = "A page", body = s::GroupPage),
        (status = 400, description = "Bad request", body = s::ErrorBody),
    ))]
pub(crate) async fn groups(
    User(caller): User,
    State(state): State<AppState>,
    QueryArgs(args): QueryArgs<PageArgs>,
) -> Answer<s::GroupPage> {
    let l = state
        .server
        .engine()
        .group_list(
            &caller,
            pb::GroupListRequest {
                after: index_cursor(args.after)?,
            },
        )
        .await?;
    Ok(Json(s::GroupPage {
        groups: l.groups.iter().map(j::Group::from).collect(),
        next: l.next,
    }))
}

/// A new group, owned by the caller.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Climbing", "member_ids": ["bob", "carol"]}))]
pub(crate) struct CreateGroup {
    #[schema(max_length = 128)]
    name: String,
    /// An image's URL or file id.
    #[serde(default)]
    avatar: String,
    /// Members besides the caller.
    #[serde(default)]
    #[schema(value_type = Vec<UserIdText>)]
    member_ids: Vec<String>,
}

/// Create a group the caller owns.
#[utoipa::path(post, path = "/v1/groups", tag = "user",
    security(("userToken" = [])),
    request_body = CreateGroup,
    responses(
        (status = 201, description = "Created", body = j::Group),
        (status = 400, description = "Bad request", body = s::ErrorBody),
    ))]
pub(crate) async fn create_group(
    User(caller): User,
    State(state): State<AppState>,
    JsonBody(req): JsonBody<CreateGroup>,
) -> Result<(StatusCode, Json<j::Group>), ApiError> {
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
    Ok((StatusCode::CREATED, Json(j::created_group(&out)?)))
}

/// A group's members, a page at a time (for members only).
#[utoipa::path(get, path = "/v1/groups/{group_id}/members", tag = "user",
    security(("userToken" = [])),
    params(("group_id" = GroupIdText, Path), PageArgs),
    responses(
        (status = 200, description = "A page", body = s::MemberPage),
        (status = 400, description = "Bad request", body = s::ErrorBody),
        (status = 404, description = "No such group", body = s::ErrorBody),
    ))]
pub(crate) async fn group_members(
    User(caller): User,
    State(state): State<AppState>,
    PathArgs(group_id): PathArgs<String>,
    QueryArgs(args): QueryArgs<PageArgs>,
) -> Answer<s::MemberPage> {
    let r = state
        .server
        .engine()
        .group_members(
            &caller,
            pb::GroupMembersRequest {
                group_id,
                after: index_cursor(args.after)?,
            },
        )
        .await?;
    Ok(Json(s::MemberPage {
        group: r.group.as_ref().map(j::Group::from),
        members: r.members.iter().map(j::Member::from).collect(),
        next: r.next,
    }))
}

/// A page of the conversation list.
#[derive(Deserialize, Default, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListArgs {
    /// Most conversations on the page; absent or 0: the server's default.
    #[serde(default, deserialize_with = "s::int32")]
    #[param(example = 20)]
    limit: Option<u32>,
    /// The previous page's `next`; absent for the first page.
    #[serde(default)]
    #[param(
        pattern = "^([0-9]{1,19}:[\\s\\S]*)?$",
        example = "1796203167370:d:alice:bob"
    )]
    after: Option<String>,
}

/// The caller's conversations, newest first, with unread counts.
///
/// A page at a time.
#[utoipa::path(get, path = "/v1/conversations", tag = "user",
    security(("userToken" = [])),
    params(ListArgs),
    responses(
        (status = 200, description = "A page", body = s::ConversationPage),
        (status = 400, description = "Bad request", body = s::ErrorBody),
    ))]
pub(crate) async fn conversations(
    User(caller): User,
    State(state): State<AppState>,
    QueryArgs(args): QueryArgs<ListArgs>,
) -> Answer<s::ConversationPage> {
    let r = state
        .server
        .engine()
        .conversations(
            &caller,
            pb::ConversationListRequest {
                limit: args.limit.unwrap_or(0),
                after: list_cursor(args.after)?,
            },
        )
        .await?;
    Ok(Json(s::ConversationPage {
        conversations: r.conversations.iter().map(j::Conversation::from).collect(),
        total_unread: r.total_unread,
        next: r.next,
    }))
}

/// Which page of history.
#[derive(Deserialize, Default, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryArgs {
    /// Start here, exclusive; 0 (the default) with `backward` = the newest.
    #[serde(default, deserialize_with = "s::int64")]
    #[param(example = 1200)]
    from_seq: Option<u64>,
    /// Older messages first (the default) or newer.
    #[serde(default)]
    #[param(example = true)]
    backward: Option<bool>,
    /// Most messages on the page; absent or 0: the server's default.
    #[serde(default, deserialize_with = "s::int32")]
    #[param(example = 50)]
    limit: Option<u32>,
}

/// A page of a conversation's history (for its members).
#[utoipa::path(get, path = "/v1/conversations/{conversation_id}/messages", tag = "user",
    security(("userToken" = [])),
    params(("conversation_id" = ConversationIdText, Path), HistoryArgs),
    responses(
        (status = 200, description = "A page", body = s::History),
        (status = 400, description = "Bad request", body = s::ErrorBody),
        (status = 404, description = "No such conversation", body = s::ErrorBody),
    ))]
pub(crate) async fn history(
    User(caller): User,
    State(state): State<AppState>,
    PathArgs(conversation_id): PathArgs<String>,
    QueryArgs(args): QueryArgs<HistoryArgs>,
) -> Answer<s::History> {
    if let Some(rest) = conversation_id.strip_prefix("d:")
        && let Some((a, b)) = rest.split_once(':')
        && let (Ok(a), Ok(b)) = (UserId::parse(a), UserId::parse(b))
        && a >= b
    {
        // Shaped like an id, but no conversation can have it.
        return Err(ApiError::not_found(format!(
            "no conversation {conversation_id}: a 1:1 id names two users in byte order"
        )));
    }
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
    Ok(Json(s::History {
        conversation_id: r.conversation_id,
        messages: r.messages.iter().map(j::Message::from).collect(),
        has_more: r.has_more,
    }))
}
