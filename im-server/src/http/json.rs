//! The API's JSON shapes: protocol messages rendered for HTTP, and message
//! content as HTTP callers write it. docs/openapi.json names the same
//! fields.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use imkit_proto::pb;
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiError;

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

/// A message's content as JSON, tagged by `type`.
pub(crate) fn content(c: Option<&pb::Content>) -> Value {
    use pb::content::Body;
    match c.and_then(|c| c.body.as_ref()) {
        Some(Body::Text(t)) => json!({ "type": "text", "text": t.text, "mentions": t.mentions }),
        Some(Body::File(f)) => {
            let mut v = json!({
                "type": "file",
                "name": f.name,
                "size": f.size,
                "mime": f.mime,
                "sha256": hex(&f.sha256),
            });
            match &f.location {
                Some(pb::file::Location::Url(u)) => v["url"] = json!(u),
                Some(pb::file::Location::BlobId(b)) => v["blob_id"] = json!(b),
                None => {}
            }
            v
        }
        Some(Body::Custom(x)) => {
            json!({ "type": "custom", "kind": x.kind, "data": B64.encode(&x.data) })
        }
        Some(Body::Recall(r)) => json!({
            "type": "recall",
            "target_message_id": r.target_message_id,
            "target_seq": r.target_seq,
            "recalled_by": r.recalled_by,
        }),
        Some(Body::System(s)) => json!({ "type": "system", "kind": s.kind, "data": s.data }),
        None => Value::Null,
    }
}

/// A stored message.
pub(crate) fn message(m: &pb::Message) -> Value {
    json!({
        "message_id": m.message_id,
        "conversation_id": m.conversation_id,
        "seq": m.seq,
        "sender_id": m.sender_id,
        "sender_device": m.sender_device,
        "client_msg_id": m.client_msg_id,
        "timestamp_ms": m.timestamp_ms,
        "recalled": m.recalled,
        "content": content(m.content.as_ref()),
    })
}

/// The answer to a send.
pub(crate) fn sent(r: &pb::SendResponse) -> Value {
    json!({
        "message_id": r.message_id,
        "conversation_id": r.conversation_id,
        "seq": r.seq,
        "timestamp_ms": r.timestamp_ms,
        "client_msg_id": r.client_msg_id,
        "duplicate": r.duplicate,
    })
}

/// A group's profile.
pub(crate) fn group(g: &pb::GroupInfo) -> Value {
    json!({
        "group_id": g.group_id,
        "name": g.name,
        "avatar": g.avatar,
        "owner_id": g.owner_id,
        "member_count": g.member_count,
        "created_ms": g.created_ms,
    })
}

/// A group member; the role as a word.
pub(crate) fn member(m: &pb::GroupMember) -> Value {
    let role = match pb::GroupRole::try_from(m.role) {
        Ok(pb::GroupRole::Owner) => "owner",
        Ok(pb::GroupRole::Admin) => "admin",
        _ => "member",
    };
    json!({ "user_id": m.user_id, "role": role, "joined_ms": m.joined_ms })
}

/// One entry of the conversation list.
pub(crate) fn conversation(c: &pb::ConversationSummary) -> Value {
    json!({
        "conversation_id": c.conversation_id,
        "peer_id": c.peer_id,
        "is_group": c.is_group,
        "last_message": c.last_message.as_ref().map(message),
        "max_seq": c.max_seq,
        "read_seq": c.read_seq,
        "unread": c.unread,
    })
}

/// Message content as an HTTP caller writes it.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ContentIn {
    /// Plain text.
    Text {
        text: String,
        #[serde(default)]
        mentions: Vec<String>,
    },
    /// A file: a `blob_id` from `POST /v1/files` (name, size, type and hash
    /// are filled in from the upload when left out), or a `url`.
    File {
        #[serde(default)]
        blob_id: Option<String>,
        #[serde(default)]
        url: Option<String>,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        size: Option<u64>,
        #[serde(default)]
        mime: Option<String>,
        /// Hex.
        #[serde(default)]
        sha256: Option<String>,
    },
    /// An application payload; `data` is base64.
    Custom {
        kind: String,
        #[serde(default)]
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
            ContentIn::Text { text, mentions } => Body::Text(pb::Text { text, mentions }),
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
                    (None, Some(u)) => file.location = Some(pb::file::Location::Url(u)),
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
