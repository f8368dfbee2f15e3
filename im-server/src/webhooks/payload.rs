//! The JSON a webhook posts: an envelope naming the event, and its data.
//! docs/webhooks/ holds a JSON schema for each; a test checks every body
//! the server posts against them.

use imkit_core::hooks::{Event, PendingSend};
use imkit_core::journal::{EventKind, Resolved};
use imkit_core::model::ConversationId;
use imkit_proto::pb;
use serde_json::{Value, json};

use crate::http::json;

/// The envelope of an event:
/// `{"id", "type", "key", "at_ms", "data"}`. `id` is the same on every
/// attempt (receivers de-duplicate on it); `key` is what orders events
/// (their conversation, or a user).
pub(crate) fn event(id: u64, key: &str, resolved: &Resolved) -> Value {
    json!({
        "id": id.to_string(),
        "type": EventKind::of(&resolved.event).name(),
        "key": key,
        "at_ms": resolved.at_ms,
        "data": data(&resolved.event),
    })
}

fn receipt_kind(kind: pb::ReceiptKind) -> &'static str {
    match kind {
        pb::ReceiptKind::Read => "read",
        _ => "delivered",
    }
}

fn contact_kind(kind: pb::ContactEventKind) -> &'static str {
    match kind {
        pb::ContactEventKind::Request => "request",
        pb::ContactEventKind::Accepted => "accepted",
        _ => "removed",
    }
}

fn group_of(conversation: &ConversationId) -> Value {
    match conversation.kind() {
        Ok(imkit_core::model::ConversationKind::Group(g)) => json!(g.as_str()),
        _ => Value::Null,
    }
}

fn data(event: &Event) -> Value {
    match event {
        Event::Message(m) => json::message(&m.to_pb()),
        Event::Recall {
            conversation,
            message,
            by,
        } => json!({
            "conversation_id": conversation.as_str(),
            "message_id": message.to_string(),
            "recalled_by": by.as_str(),
        }),
        Event::Receipt {
            user,
            conversation,
            kind,
            seq,
        } => json!({
            "conversation_id": conversation.as_str(),
            "user_id": user.as_str(),
            "kind": receipt_kind(*kind),
            "seq": seq,
        }),
        Event::Group {
            conversation,
            kind,
            data,
            by,
        } => json!({
            "conversation_id": conversation.as_str(),
            "group_id": group_of(conversation),
            "kind": kind,
            // Group events carry JSON; keep it structured.
            "data": serde_json::from_str::<Value>(data).unwrap_or_else(|_| json!(data)),
            "by": by.as_str(),
        }),
        Event::Contact { user, from, kind } => json!({
            "user_id": user.as_str(),
            "from_user_id": from.as_str(),
            "kind": contact_kind(*kind),
        }),
        Event::Login { user, device } | Event::Logout { user, device } => json!({
            "user_id": user.as_str(),
            "device_id": device.as_str(),
        }),
        _ => Value::Null,
    }
}

/// The body of a before-send request.
pub(crate) fn before_send(send: &PendingSend) -> Value {
    json!({
        "type": "before_send",
        "data": {
            "sender_id": send.sender.as_str(),
            "sender_device": send.device.as_str(),
            "conversation_id": send.conversation.as_str(),
            "client_msg_id": send.client_msg_id,
            "content": json::content(Some(&send.content)),
        },
    })
}
