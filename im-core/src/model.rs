//! The domain model: identifiers, messages, conversations, groups.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use imkit_proto::pb;

use crate::{Error, Result};

/// Longest user, device or client message id, in bytes.
pub const MAX_ID_LEN: usize = 64;

fn valid_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@')
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Eq, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        // Hashes the text, like `str`, so lookups by `&str` (through
        // `Borrow<str>`) agree with `eq`.
        impl std::hash::Hash for $name {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.0.hash(state)
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                // Ids are shared `Arc`s, so equal ids are often the same
                // allocation: skip the byte comparison then.
                Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
            }
        }

        impl $name {
            /// Wraps a string without checking it (for ids from trusted sources
            /// such as a store).
            pub fn new(s: impl Into<Arc<str>>) -> Self {
                $name(s.into())
            }

            /// Checks an id from untrusted input: 1 to 64 bytes of
            /// `A-Z a-z 0-9 _ - . @`.
            pub fn parse(s: &str) -> Result<Self> {
                if s.is_empty() || s.len() > MAX_ID_LEN || !s.chars().all(valid_id_char) {
                    return Err(Error::InvalidArgument(format!(
                        concat!($what, " {:?} must be 1 to {} bytes of A-Z a-z 0-9 _ - . @"),
                        s, MAX_ID_LEN
                    )));
                }
                Ok($name(s.into()))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", &*self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.into())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s.into())
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// A user's id, chosen by the application.
    UserId,
    "user id"
);
/// The reserved user that server-side (system) messages come from. Nobody
/// can log in as it.
pub const SYSTEM_USER: &str = "_system";

impl UserId {
    /// The reserved sender of system messages ([`SYSTEM_USER`]).
    pub fn system() -> UserId {
        UserId::from(SYSTEM_USER)
    }

    /// Whether this is the reserved system user.
    pub fn is_system(&self) -> bool {
        self.as_str() == SYSTEM_USER
    }
}

string_id!(
    /// A device's id, stable per installation.
    DeviceId,
    "device id"
);
string_id!(
    /// A group's id, issued by the engine.
    GroupId,
    "group id"
);
string_id!(
    /// A server node's id in a cluster.
    NodeId,
    "node id"
);
string_id!(
    /// A conversation's id: `d:<a>:<b>` (a < b) or `g:<group>`.
    ConversationId,
    "conversation id"
);

/// What a conversation id refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConversationKind {
    /// The 1:1 conversation of two users, in byte order.
    Direct(UserId, UserId),
    /// A group's conversation.
    Group(GroupId),
}

impl ConversationId {
    /// The 1:1 conversation of two users (order does not matter).
    pub fn direct(a: &UserId, b: &UserId) -> ConversationId {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        ConversationId::new(format!("d:{lo}:{hi}"))
    }

    /// A group's conversation.
    pub fn group(g: &GroupId) -> ConversationId {
        ConversationId::new(format!("g:{g}"))
    }

    /// Parses a conversation id from untrusted input.
    pub fn parse_kind(s: &str) -> Result<(ConversationId, ConversationKind)> {
        let bad = || Error::InvalidArgument(format!("malformed conversation id {s:?}"));
        let kind = if let Some(rest) = s.strip_prefix("d:") {
            let (a, b) = rest.split_once(':').ok_or_else(bad)?;
            let (a, b) = (UserId::parse(a)?, UserId::parse(b)?);
            if a >= b {
                return Err(bad());
            }
            ConversationKind::Direct(a, b)
        } else if let Some(g) = s.strip_prefix("g:") {
            ConversationKind::Group(GroupId::parse(g)?)
        } else {
            return Err(bad());
        };
        Ok((ConversationId::new(s), kind))
    }

    /// What this id refers to. Ids built by this crate always parse.
    pub fn kind(&self) -> Result<ConversationKind> {
        ConversationId::parse_kind(self.as_str()).map(|(_, k)| k)
    }

    /// Whether this is a 1:1 conversation (by its `d:` prefix).
    pub fn is_direct(&self) -> bool {
        self.as_str().starts_with("d:")
    }

    /// For a 1:1 conversation that `me` is part of, the other user.
    pub fn peer_of(&self, me: &UserId) -> Option<UserId> {
        match self.kind().ok()? {
            ConversationKind::Direct(a, b) if &a == me => Some(b),
            ConversationKind::Direct(a, b) if &b == me => Some(a),
            _ => None,
        }
    }
}

/// A server-issued message id (UUID v7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub uuid::Uuid);

impl MessageId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        MessageId(uuid::Uuid::now_v7())
    }

    /// Parses the text form.
    pub fn parse(s: &str) -> Result<Self> {
        uuid::Uuid::parse_str(s)
            .map(MessageId)
            .map_err(|_| Error::InvalidArgument(format!("malformed message id {s:?}")))
    }
}

impl Default for MessageId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A message before the store numbers it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    /// Server-issued id.
    pub id: MessageId,
    /// Where it goes.
    pub conversation: ConversationId,
    /// Who sent it.
    pub sender: UserId,
    /// From which device.
    pub sender_device: DeviceId,
    /// The sender's idempotency key.
    pub client_msg_id: String,
    /// Server time, Unix milliseconds.
    pub timestamp_ms: u64,
    /// What it carries.
    pub content: pb::Content,
}

/// A stored message, numbered in its conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Server-issued id.
    pub id: MessageId,
    /// Its conversation.
    pub conversation: ConversationId,
    /// Position in the conversation, from 1, gap-free.
    pub seq: u64,
    /// Who sent it.
    pub sender: UserId,
    /// From which device.
    pub sender_device: DeviceId,
    /// The sender's idempotency key.
    pub client_msg_id: String,
    /// Server time, Unix milliseconds.
    pub timestamp_ms: u64,
    /// What it carries (empty once recalled).
    pub content: pb::Content,
    /// Whether a recall event has targeted it.
    pub recalled: bool,
}

impl Message {
    /// Numbers a new message.
    pub fn from_new(m: NewMessage, seq: u64) -> Message {
        Message {
            id: m.id,
            conversation: m.conversation,
            seq,
            sender: m.sender,
            sender_device: m.sender_device,
            client_msg_id: m.client_msg_id,
            timestamp_ms: m.timestamp_ms,
            content: m.content,
            recalled: false,
        }
    }

    /// The wire form.
    pub fn to_pb(&self) -> pb::Message {
        pb::Message {
            message_id: self.id.to_string(),
            conversation_id: self.conversation.to_string(),
            seq: self.seq,
            sender_id: self.sender.to_string(),
            sender_device: self.sender_device.to_string(),
            client_msg_id: self.client_msg_id.clone(),
            timestamp_ms: self.timestamp_ms,
            content: Some(self.content.clone()),
            recalled: self.recalled,
        }
    }

    /// Rebuilds a message from its wire form (as stored by some backends).
    pub fn from_pb(m: pb::Message) -> Result<Message> {
        Ok(Message {
            id: MessageId::parse(&m.message_id)?,
            conversation: ConversationId::new(m.conversation_id),
            seq: m.seq,
            sender: UserId::new(m.sender_id),
            sender_device: DeviceId::new(m.sender_device),
            client_msg_id: m.client_msg_id,
            timestamp_ms: m.timestamp_ms,
            content: m.content.unwrap_or_default(),
            recalled: m.recalled,
        })
    }

    /// The target seq if this message is a recall event.
    pub fn recall_target(&self) -> Option<u64> {
        recall_target(&self.content)
    }

    /// Whether this message counts towards a reader's unread count: user
    /// content (text, file, custom) that has not been recalled.
    pub fn counts_as_unread(&self) -> bool {
        !self.recalled && is_user_content(&self.content)
    }
}

/// The target seq if `content` is a recall event.
pub fn recall_target(content: &pb::Content) -> Option<u64> {
    match &content.body {
        Some(pb::content::Body::Recall(r)) => Some(r.target_seq),
        _ => None,
    }
}

/// Whether content is something a user wrote (text, file, custom) rather
/// than an event written by the server.
pub fn is_user_content(content: &pb::Content) -> bool {
    matches!(
        content.body,
        Some(
            pb::content::Body::Text(_) | pb::content::Body::File(_) | pb::content::Body::Custom(_)
        )
    )
}

/// A message appended by a unit of work ([`crate::store::UnitOfWork`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Appended {
    /// The stored message (the original one for a duplicate).
    pub message: Message,
    /// True when `(sender, client_msg_id)` was already stored and nothing new
    /// was written.
    pub duplicate: bool,
}

/// A member's role in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// A plain member.
    Member,
    /// May add and remove members, update the profile and recall any message.
    Admin,
    /// The creator; may also dismiss the group and change roles.
    Owner,
}

impl Role {
    /// Whether the role may manage members and recall others' messages.
    pub fn is_manager(self) -> bool {
        matches!(self, Role::Admin | Role::Owner)
    }

    /// The wire form.
    pub fn to_pb(self) -> pb::GroupRole {
        match self {
            Role::Member => pb::GroupRole::Member,
            Role::Admin => pb::GroupRole::Admin,
            Role::Owner => pb::GroupRole::Owner,
        }
    }

    /// A short stable name, for storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    /// Parses [`Role::as_str`].
    pub fn from_name(s: &str) -> Option<Role> {
        match s {
            "member" => Some(Role::Member),
            "admin" => Some(Role::Admin),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }
}

/// A group's profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Its id.
    pub id: GroupId,
    /// Display name.
    pub name: String,
    /// Avatar URL or blob id.
    pub avatar: String,
    /// The owner.
    pub owner: UserId,
    /// Creation time, Unix milliseconds.
    pub created_ms: u64,
}

/// A group member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The user.
    pub user: UserId,
    /// Their role.
    pub role: Role,
    /// When they joined, Unix milliseconds.
    pub joined_ms: u64,
}

/// Where one of a user's devices is connected.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceLocation {
    /// The device.
    pub device: DeviceId,
    /// The node holding its connection.
    pub node: NodeId,
}

/// Who may add a user to a group (a privacy setting of that user).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GroupAdds {
    /// Anyone the user has not blocked (the default).
    #[default]
    Anyone,
    /// Only the user's friends.
    FriendsOnly,
}

/// A user's contacts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactList {
    /// Mutual friends.
    pub friends: Vec<UserId>,
    /// Requests others sent this user.
    pub incoming: Vec<UserId>,
    /// Requests this user sent.
    pub outgoing: Vec<UserId>,
    /// Users this user blocked.
    pub blocked: Vec<UserId>,
}

/// What a friend request led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FriendRequestOutcome {
    /// The request waits for the other user.
    Pending,
    /// The other user had already asked; they are friends now.
    BecameFriends,
    /// They were already friends.
    AlreadyFriends,
}
