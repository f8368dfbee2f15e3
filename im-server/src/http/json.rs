//! Protocol messages rendered for HTTP (messages, content, groups,
//! conversations), and message content as HTTP callers write it. Each type
//! is also a schema of the API document ([`super::openapi`]).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use imkit_proto::pb;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::ApiError;
use super::shapes::{ConversationIdText, GroupIdText, MessageIdText, UserIdText};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes from lowercase or uppercase hex; `None` if it is not hex.
pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A message's content, tagged by `type`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Content {
    /// Plain text.
    Text {
        text: String,
        /// User ids the text mentions.
        mentions: Vec<String>,
    },
    /// A file, stored here (`blob_id`) or elsewhere (`url`).
    File {
        name: String,
        /// Bytes.
        size: u64,
        mime: String,
        /// Hex SHA-256 of the bytes; empty when the sender gave none.
        sha256: String,
        /// Where the file is, when it is not stored here.
        #[serde(skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        /// The id `POST /v1/files` returned.
        #[serde(skip_serializing_if = "Option::is_none")]
        blob_id: Option<String>,
    },
    /// An application payload.
    Custom {
        kind: String,
        /// Base64.
        data: String,
    },
    /// A recall of an earlier message (the target is now `recalled`).
    Recall {
        target_message_id: String,
        target_seq: u64,
        recalled_by: String,
    },
    /// A server event in a group (members added or removed, say).
    System {
        kind: String,
        /// JSON text.
        data: String,
    },
}

impl Content {
    fn of(c: Option<&pb::Content>) -> Option<Content> {
        use pb::content::Body;
        Some(match c?.body.as_ref()? {
            Body::Text(t) => Content::Text {
                text: t.text.clone(),
                mentions: t.mentions.clone(),
            },
            Body::File(f) => {
                let (url, blob_id) = match &f.location {
                    Some(pb::file::Location::Url(u)) => (Some(u.clone()), None),
                    Some(pb::file::Location::BlobId(b)) => (None, Some(b.clone())),
                    None => (None, None),
                };
                Content::File {
                    name: f.name.clone(),
                    size: f.size,
                    mime: f.mime.clone(),
                    sha256: hex(&f.sha256),
                    url,
                    blob_id,
                }
            }
            Body::Custom(x) => Content::Custom {
                kind: x.kind.clone(),
                data: B64.encode(&x.data),
            },
            Body::Recall(r) => Content::Recall {
                target_message_id: r.target_message_id.clone(),
                target_seq: r.target_seq,
                recalled_by: r.recalled_by.clone(),
            },
            Body::System(s) => Content::System {
                kind: s.kind.clone(),
                data: s.data.clone(),
            },
        })
    }
}

/// A message's content as JSON (`null` when it has none).
pub(crate) fn content(c: Option<&pb::Content>) -> Value {
    serde_json::to_value(Content::of(c)).unwrap_or(Value::Null)
}

/// A stored message.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Message {
    #[schema(value_type = MessageIdText)]
    pub(crate) message_id: String,
    #[schema(value_type = ConversationIdText)]
    pub(crate) conversation_id: String,
    /// Its place in the conversation: 1, 2, 3, ... with no gaps.
    pub(crate) seq: u64,
    #[schema(value_type = UserIdText)]
    pub(crate) sender_id: String,
    pub(crate) sender_device: String,
    /// The sender's id for the send (resends with it are stored once).
    pub(crate) client_msg_id: String,
    pub(crate) timestamp_ms: u64,
    /// Recalled by its sender; the content is then gone.
    pub(crate) recalled: bool,
    #[schema(required)]
    pub(crate) content: Option<Content>,
}

impl From<&pb::Message> for Message {
    fn from(m: &pb::Message) -> Self {
        Message {
            message_id: m.message_id.clone(),
            conversation_id: m.conversation_id.clone(),
            seq: m.seq,
            sender_id: m.sender_id.clone(),
            sender_device: m.sender_device.clone(),
            client_msg_id: m.client_msg_id.clone(),
            timestamp_ms: m.timestamp_ms,
            recalled: m.recalled,
            content: Content::of(m.content.as_ref()),
        }
    }
}

/// A stored message as JSON.
pub(crate) fn message(m: &pb::Message) -> Value {
    serde_json::to_value(Message::from(m)).unwrap_or(Value::Null)
}

/// The answer to a send.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Sent {
    #[schema(value_type = MessageIdText)]
    pub(crate) message_id: String,
    #[schema(value_type = ConversationIdText)]
    pub(crate) conversation_id: String,
    pub(crate) seq: u64,
    pub(crate) timestamp_ms: u64,
    pub(crate) client_msg_id: String,
    /// This `client_msg_id` was sent before: the first send's answer,
    /// nothing stored again.
    pub(crate) duplicate: bool,
}

impl From<&pb::SendResponse> for Sent {
    fn from(r: &pb::SendResponse) -> Self {
        Sent {
            message_id: r.message_id.clone(),
            conversation_id: r.conversation_id.clone(),
            seq: r.seq,
            timestamp_ms: r.timestamp_ms,
            client_msg_id: r.client_msg_id.clone(),
            duplicate: r.duplicate,
        }
    }
}

/// A group's profile.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Group {
    #[schema(value_type = GroupIdText)]
    pub(crate) group_id: String,
    pub(crate) name: String,
    pub(crate) avatar: String,
    pub(crate) owner_id: String,
    pub(crate) member_count: u32,
    pub(crate) created_ms: u64,
}

impl From<&pb::GroupInfo> for Group {
    fn from(g: &pb::GroupInfo) -> Self {
        Group {
            group_id: g.group_id.clone(),
            name: g.name.clone(),
            avatar: g.avatar.clone(),
            owner_id: g.owner_id.clone(),
            member_count: g.member_count,
            created_ms: g.created_ms,
        }
    }
}

/// The group a create answered with.
pub(crate) fn created_group(out: &pb::GroupCreateResponse) -> Result<Group, ApiError> {
    out.group.as_ref().map(Group::from).ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            imkit_proto::ErrorCode::Internal,
            "the engine answered a group create without the group",
        )
    })
}

/// A member's role in a group.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Role {
    Owner,
    Admin,
    Member,
}

/// A group member.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Member {
    pub(crate) user_id: String,
    pub(crate) role: Role,
    pub(crate) joined_ms: u64,
}

impl From<&pb::GroupMember> for Member {
    fn from(m: &pb::GroupMember) -> Self {
        let role = match pb::GroupRole::try_from(m.role) {
            Ok(pb::GroupRole::Owner) => Role::Owner,
            Ok(pb::GroupRole::Admin) => Role::Admin,
            _ => Role::Member,
        };
        Member {
            user_id: m.user_id.clone(),
            role,
            joined_ms: m.joined_ms,
        }
    }
}

/// One entry of the conversation list.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Conversation {
    pub(crate) conversation_id: String,
    /// The other user of a 1:1 conversation, or the group's id.
    pub(crate) peer_id: String,
    pub(crate) is_group: bool,
    #[schema(required)]
    pub(crate) last_message: Option<Message>,
    /// The newest message's seq.
    pub(crate) max_seq: u64,
    /// The caller's read cursor.
    pub(crate) read_seq: u64,
    /// Messages from others after the read cursor.
    pub(crate) unread: u32,
}

impl From<&pb::ConversationSummary> for Conversation {
    fn from(c: &pb::ConversationSummary) -> Self {
        Conversation {
            conversation_id: c.conversation_id.clone(),
            peer_id: c.peer_id.clone(),
            is_group: c.is_group,
            last_message: c.last_message.as_ref().map(Message::from),
            max_seq: c.max_seq,
            read_seq: c.read_seq,
            unread: c.unread,
        }
    }
}

/// Message content as an HTTP caller writes it, tagged by `type`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum ContentIn {
    /// Plain text (at most 16 KiB of UTF-8 by default).
    Text {
        #[schema(min_length = 1)]
        text: String,
        /// User ids the text mentions.
        #[serde(default)]
        #[schema(value_type = Vec<super::shapes::UserIdText>)]
        mentions: Vec<String>,
    },
    /// A file: a `blob_id` from `POST /v1/files` (name, size, type and hash
    /// are filled in from the upload when left out), or a `url`; exactly one
    /// of the two.
    File {
        #[serde(default)]
        #[schema(value_type = Option<super::shapes::FileIdText>)]
        blob_id: Option<String>,
        #[serde(default)]
        #[schema(min_length = 1)]
        url: Option<String>,
        /// At most 255 bytes of UTF-8; with a `url`, required.
        #[serde(default)]
        #[schema(min_length = 1)]
        name: Option<String>,
        /// Bytes.
        #[serde(default, deserialize_with = "super::shapes::int64")]
        size: Option<u64>,
        #[serde(default)]
        mime: Option<String>,
        /// Hex SHA-256 of the bytes.
        #[serde(default)]
        #[schema(pattern = "^[0-9a-fA-F]{64}$")]
        sha256: Option<String>,
    },
    /// An application payload.
    Custom {
        /// What the application calls it.
        #[schema(min_length = 1)]
        kind: String,
        /// Base64 with padding (at most 64 KiB decoded, by default).
        #[serde(default)]
        #[schema(
            pattern = "^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$"
        )]
        data: String,
    },
}

impl ContentIn {
    /// The protocol content; file metadata is completed from the blob store.
    pub(crate) async fn into_pb(
        self,
        blobs: &dyn imkit_core::blob::BlobStore,
    ) -> Result<pb::Content, ApiError> {
        use pb::content::Body;
        let body = match self {
            ContentIn::Text { text, mentions } => {
                for m in &mentions {
                    imkit_core::model::UserId::parse(m)?;
                }
                Body::Text(pb::Text { text, mentions })
            }
            ContentIn::Custom { kind, data } => Body::Custom(pb::Custom {
                kind,
                data: B64
                    .decode(data.as_bytes())
                    .map_err(|e| ApiError::bad_request(format!("custom data is not base64: {e}")))?
                    .into(),
            }),
            ContentIn::File {
                blob_id,
                url,
                name,
                size,
                mime,
                sha256,
            } => {
                if name.as_deref() == Some("") {
                    return Err(ApiError::bad_request(
                        "name is empty (leave it out to take the upload's)",
                    ));
                }
                let sha256 = match sha256 {
                    Some(h) => unhex(&h)
                        .filter(|b| b.len() == 32)
                        .ok_or_else(|| ApiError::bad_request("sha256 must be 64 hex digits"))?,
                    None => Vec::new(),
                };
                let mut file = pb::File {
                    name: name.unwrap_or_default(),
                    size: size.unwrap_or(0),
                    mime: mime.unwrap_or_default(),
                    location: None,
                    sha256: sha256.into(),
                };
                match (blob_id, url) {
                    (Some(id), None) => {
                        let (meta, _) = blobs
                            .get(&id)
                            .await?
                            .ok_or_else(|| ApiError::not_found(format!("file {id}")))?;
                        if file.name.is_empty() {
                            file.name = meta.name.clone();
                        }
                        if file.size == 0 {
                            file.size = meta.size;
                        }
                        if file.mime.is_empty() {
                            file.mime = meta.content_type.clone();
                        }
                        if file.sha256.is_empty() {
                            file.sha256 = unhex(&meta.sha256).unwrap_or_default().into();
                        }
                        file.location = Some(pb::file::Location::BlobId(id));
                    }
                    (None, Some(u)) if !u.is_empty() => {
                        file.location = Some(pb::file::Location::Url(u))
                    }
                    _ => {
                        return Err(ApiError::bad_request(
                            "a file needs exactly one of blob_id or url",
                        ));
                    }
                }
                Body::File(file)
            }
        };
        Ok(pb::Content { body: Some(body) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_roundtrip() {
        assert_eq!(unhex(&hex(&[0, 1, 254, 255])), Some(vec![0, 1, 254, 255]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn content_renders_each_kind() {
        let text = pb::Content {
            body: Some(pb::content::Body::Text(pb::Text {
                text: "hi".into(),
                mentions: vec!["bob".into()],
            })),
        };
        assert_eq!(content(Some(&text))["type"], "text");
        assert_eq!(content(Some(&text))["mentions"][0], "bob");
        let custom = pb::Content {
            body: Some(pb::content::Body::Custom(pb::Custom {
                kind: "loc".into(),
                data: bytes::Bytes::from_static(b"\x00\x01"),
            })),
        };
        assert_eq!(content(Some(&custom))["data"], "AAE=");
        assert_eq!(content(None), Value::Null);
    }
}
