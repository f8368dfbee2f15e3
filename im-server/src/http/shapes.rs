//! The answers of the API routes, and the id formats their requests take.
//! Every type here is a schema of the API document ([`super::openapi`]);
//! messages, groups and conversations are in [`super::json`].

use std::borrow::Cow;

use serde::Serialize;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{RefOr, SchemaFormat};
use utoipa::{PartialSchema, ToSchema};

use super::json::{Conversation, Group, Member, Message};

/// The characters of a user, device or group id, 1 to 64 of them (the
/// rule of `imkit_core::model::UserId::parse`).
pub(crate) const ID_PATTERN: &str = "^[A-Za-z0-9_.@-]{1,64}$";
/// A conversation id: `d:<user>:<user>` (the two in byte order) or
/// `g:<group>`.
pub(crate) const CONVERSATION_PATTERN: &str =
    "^(d:[A-Za-z0-9_.@-]{1,64}:[A-Za-z0-9_.@-]{1,64}|g:[A-Za-z0-9_.@-]{1,64})$";
/// A file id as `POST /v1/files` returns it.
pub(crate) const FILE_ID_PATTERN: &str = "^f[0-9a-f]{32}$";

fn string(pattern: &str, min: usize, max: usize, example: &str, about: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .min_length(Some(min))
        .max_length(Some(max))
        .examples([example])
        .description(Some(about))
        .into()
}

macro_rules! id_schema {
    ($(#[$doc:meta])* $ty:ident, $name:literal, $schema:expr) => {
        $(#[$doc])*
        pub(crate) struct $ty;

        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                $schema
            }
        }

        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

id_schema!(
    /// A user id.
    UserIdText,
    "UserId",
    string(
        ID_PATTERN,
        1,
        64,
        "alice",
        "A user id: 1 to 64 of A-Z a-z 0-9 _ - . @ (`_system` is reserved)"
    )
);
id_schema!(
    /// A device id.
    DeviceIdText,
    "DeviceId",
    string(
        ID_PATTERN,
        1,
        64,
        "phone-1",
        "A device id: 1 to 64 of A-Z a-z 0-9 _ - . @"
    )
);
id_schema!(
    /// A group id.
    GroupIdText,
    "GroupId",
    string(
        ID_PATTERN,
        1,
        64,
        "0190f1c2a3b47c8d9e0f1a2b3c4d5e6f",
        "A group id: 1 to 64 of A-Z a-z 0-9 _ - . @"
    )
);
id_schema!(
    /// A conversation id.
    ConversationIdText,
    "ConversationId",
    string(
        CONVERSATION_PATTERN,
        3,
        132,
        "d:alice:bob",
        "`d:<user>:<user>` for two users (in byte order) or `g:<group id>`"
    )
);
id_schema!(
    /// A file id.
    FileIdText,
    "FileId",
    string(
        FILE_ID_PATTERN,
        33,
        33,
        "f0190f1c2a3b47c8d9e0f1a2b3c4d5e6f",
        "A file id, as `POST /v1/files` returned it"
    )
);
id_schema!(
    /// A message id.
    MessageIdText,
    "MessageId",
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::Custom("uuid".into())))
        .examples(["0190f1c2-a3b4-7c8d-9e0f-1a2b3c4d5e6f"])
        .description(Some("A message id (a UUID, issued by the server)"))
        .into()
);

/// An error answer.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    pub(crate) error: ErrorDetail,
}

/// What went wrong.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// The protocol's error code (docs/protocol.md lists them).
    #[schema(example = 1001)]
    pub(crate) code: u32,
    /// The code's name.
    #[schema(example = "InvalidArgument")]
    pub(crate) name: String,
    /// What went wrong, for a developer.
    pub(crate) message: String,
}

/// Done.
#[derive(Serialize, ToSchema)]
pub(crate) struct Done {
    /// Always `true`.
    pub(crate) ok: bool,
}

impl Done {
    pub(crate) fn new() -> Self {
        Done { ok: true }
    }
}

/// The server answers.
#[derive(Serialize, ToSchema)]
pub(crate) struct Health {
    /// `ok` (alive) or `ready` (its stores answer).
    #[schema(example = "ok")]
    pub(crate) status: String,
}

/// A user account.
#[derive(Serialize, ToSchema)]
pub(crate) struct Account {
    #[schema(value_type = UserIdText)]
    pub(crate) user_id: String,
    /// Display name.
    pub(crate) name: String,
    /// A disabled user cannot log in.
    pub(crate) disabled: bool,
    pub(crate) created_ms: u64,
}

/// An account after it was disabled or enabled.
#[derive(Serialize, ToSchema)]
pub(crate) struct AccountChanged {
    #[serde(flatten)]
    pub(crate) account: Account,
    /// Sessions closed because the user was disabled.
    pub(crate) sessions_closed: u64,
}

/// A login token the server issued.
#[derive(Serialize, ToSchema)]
pub(crate) struct IssuedToken {
    #[schema(value_type = UserIdText)]
    pub(crate) user_id: String,
    /// The token, for `Login.token` or `Authorization: Bearer`.
    pub(crate) token: String,
    /// Names the token in revocations.
    pub(crate) token_id: String,
    /// The token's `jti` claim (`null` if it has none).
    #[schema(required)]
    pub(crate) jti: Option<String>,
    /// Unix seconds.
    pub(crate) expires_at: u64,
}

/// A revoked token.
#[derive(Serialize, ToSchema)]
pub(crate) struct Revoked {
    #[schema(value_type = UserIdText)]
    pub(crate) user_id: String,
    pub(crate) token_id: String,
    pub(crate) revoked: bool,
    /// Live sessions of the token that were closed.
    pub(crate) sessions_closed: u64,
}

/// Sessions closed by a forced logout.
#[derive(Serialize, ToSchema)]
pub(crate) struct LoggedOut {
    #[schema(value_type = UserIdText)]
    pub(crate) user_id: String,
    pub(crate) sessions_closed: u64,
}

/// Where a user is connected.
#[derive(Serialize, ToSchema)]
pub(crate) struct Presence {
    #[schema(value_type = UserIdText)]
    pub(crate) user_id: String,
    pub(crate) online: bool,
    pub(crate) devices: Vec<PresenceDevice>,
}

/// A connected device and the node it is on.
#[derive(Serialize, ToSchema)]
pub(crate) struct PresenceDevice {
    #[schema(value_type = DeviceIdText)]
    pub(crate) device_id: String,
    pub(crate) node: String,
}

/// Members added to a group.
#[derive(Serialize, ToSchema)]
pub(crate) struct Added {
    /// Those who were not members before.
    #[schema(value_type = Vec<UserIdText>)]
    pub(crate) added: Vec<String>,
}

/// Members removed from a group.
#[derive(Serialize, ToSchema)]
pub(crate) struct Removed {
    #[schema(value_type = Vec<UserIdText>)]
    pub(crate) removed: Vec<String>,
}

/// A notification's reach.
#[derive(Serialize, ToSchema)]
pub(crate) struct Notified {
    /// Connected devices it was pushed to.
    pub(crate) devices: u64,
}

/// The caller.
#[derive(Serialize, ToSchema)]
pub(crate) struct Me {
    #[schema(value_type = UserIdText)]
    pub(crate) user_id: String,
    /// Display name; `null` without an account.
    #[schema(required)]
    pub(crate) name: Option<String>,
}

/// The caller's contacts.
#[derive(Serialize, ToSchema)]
pub(crate) struct Contacts {
    #[schema(value_type = Vec<UserIdText>)]
    pub(crate) friends: Vec<String>,
    /// Users asking to be the caller's friends.
    #[schema(value_type = Vec<UserIdText>)]
    pub(crate) incoming: Vec<String>,
    /// Users the caller asked.
    #[schema(value_type = Vec<UserIdText>)]
    pub(crate) outgoing: Vec<String>,
    #[schema(value_type = Vec<UserIdText>)]
    pub(crate) blocked: Vec<String>,
}

/// The answer to a friend request.
#[derive(Serialize, ToSchema)]
pub(crate) struct FriendRequested {
    /// They had asked too: you are friends now.
    pub(crate) accepted: bool,
}

/// Who may add the caller to groups.
#[derive(Serialize, serde::Deserialize, ToSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum GroupAdds {
    Anyone,
    Friends,
}

/// The caller's privacy settings.
#[derive(Serialize, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"group_adds": "friends"}))]
pub(crate) struct Privacy {
    pub(crate) group_adds: GroupAdds,
}

/// A page of the caller's groups.
#[derive(Serialize, ToSchema)]
pub(crate) struct GroupPage {
    pub(crate) groups: Vec<Group>,
    /// Pass as `after` for the next page; empty on the last.
    pub(crate) next: String,
}

/// A page of a group's members.
#[derive(Serialize, ToSchema)]
pub(crate) struct MemberPage {
    #[schema(required)]
    pub(crate) group: Option<Group>,
    pub(crate) members: Vec<Member>,
    /// Pass as `after` for the next page; empty on the last.
    pub(crate) next: String,
}

/// A page of the conversation list, newest first.
#[derive(Serialize, ToSchema)]
pub(crate) struct ConversationPage {
    pub(crate) conversations: Vec<Conversation>,
    /// Unread messages over all the caller's conversations.
    pub(crate) total_unread: u32,
    /// Pass as `after` for the next page; empty on the last.
    pub(crate) next: String,
}

/// A page of history.
#[derive(Serialize, ToSchema)]
pub(crate) struct History {
    pub(crate) conversation_id: String,
    pub(crate) messages: Vec<Message>,
    /// More messages lie further in the direction read.
    pub(crate) has_more: bool,
}

/// A user's devices, oldest first.
#[derive(Serialize, ToSchema)]
pub(crate) struct Devices {
    #[schema(value_type = UserIdText)]
    pub(crate) user_id: String,
    /// The cap; a login from one more device is refused.
    pub(crate) max_devices: u64,
    pub(crate) devices: Vec<Device>,
}

/// A device that has logged in.
#[derive(Serialize, ToSchema)]
pub(crate) struct Device {
    #[schema(value_type = DeviceIdText)]
    pub(crate) device_id: String,
    pub(crate) first_seen_ms: u64,
}

/// A removed device.
#[derive(Serialize, ToSchema)]
pub(crate) struct DeviceRemoved {
    #[schema(value_type = UserIdText)]
    pub(crate) user_id: String,
    #[schema(value_type = DeviceIdText)]
    pub(crate) device_id: String,
    pub(crate) sessions_closed: u64,
}

/// A device's push registration.
#[derive(Serialize, ToSchema)]
pub(crate) struct PushRegistered {
    #[schema(value_type = DeviceIdText)]
    pub(crate) device_id: String,
    pub(crate) provider: String,
    pub(crate) platform: String,
}

/// A device whose push token was removed.
#[derive(Serialize, ToSchema)]
pub(crate) struct PushRemoved {
    #[schema(value_type = DeviceIdText)]
    pub(crate) device_id: String,
}

/// The caller's notification settings.
#[derive(Serialize, ToSchema)]
pub(crate) struct PushSettings {
    /// Pushes say that a message came, not what it says.
    pub(crate) hide_content: bool,
}

/// A stored file.
#[derive(Serialize, ToSchema)]
pub(crate) struct FileInfo {
    /// What a file message's `blob_id` names.
    #[schema(value_type = FileIdText)]
    pub(crate) file_id: String,
    /// Bytes.
    pub(crate) size: u64,
    /// Hex SHA-256 of the bytes.
    pub(crate) sha256: String,
    pub(crate) content_type: String,
    pub(crate) name: String,
}

/// An optional whole number up to `max`, written as JSON sees integers
/// (`3`, or `3.0`) or as query text. Larger ones are refused, so a number
/// the document's `int64` or `int32` admits is one the server takes.
fn whole<'de, D: serde::Deserializer<'de>>(d: D, max: u64) -> Result<Option<u64>, D::Error> {
    use serde::de::{Error, Visitor};
    struct Whole(u64);
    impl<'de> Visitor<'de> for Whole {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "a whole number from 0 to {}", self.0)
        }
        fn visit_none<E: Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
        fn visit_u64<E: Error>(self, n: u64) -> Result<Self::Value, E> {
            if n > self.0 {
                return Err(E::custom(format!("{n} is over {}", self.0)));
            }
            Ok(Some(n))
        }
        fn visit_i64<E: Error>(self, n: i64) -> Result<Self::Value, E> {
            let n = u64::try_from(n).map_err(|_| E::custom(format!("{n} is negative")))?;
            self.visit_u64(n)
        }
        fn visit_f64<E: Error>(self, x: f64) -> Result<Self::Value, E> {
            if x.fract() != 0.0 || !(0.0..=self.0 as f64).contains(&x) {
                return Err(E::custom(format!(
                    "{x} is not a whole number from 0 to {}",
                    self.0
                )));
            }
            self.visit_u64(x as u64)
        }
        fn visit_str<E: Error>(self, s: &str) -> Result<Self::Value, E> {
            match s.parse::<u64>() {
                Ok(n) => self.visit_u64(n),
                Err(_) => s
                    .parse::<f64>()
                    .map_err(|_| E::custom(format!("{s:?} is not a number")))
                    .and_then(|x| self.visit_f64(x)),
            }
        }
    }
    d.deserialize_option(Whole(max))
}

/// An optional whole number in the document's `int64` range (0 to
/// 2^63 - 1).
pub(crate) fn int64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    whole(d, i64::MAX as u64)
}

/// An optional whole number in the document's `int32` range (0 to
/// 2^31 - 1).
pub(crate) fn int32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    // Within u32 by the bound.
    whole(d, i32::MAX as u64).map(|n| n.map(|n| n as u32))
}
