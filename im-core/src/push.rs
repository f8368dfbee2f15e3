//! Offline push notifications: what the engine asks a [`PushNotifier`] to
//! send when a message reaches a user none of whose devices is connected.
//!
//! Devices register a token ([`PushToken`], over the wire with
//! `PushTokenSet` or over HTTP). After a message of user content is stored,
//! the engine hands its offline recipients to a bounded queue
//! ([`PushOptions`]) and answers the sender without waiting. A worker then
//! reads the recipients' tokens and settings, works out each one's badge
//! (their total unread, from cursors) and a preview (the sender and the
//! start of the content, or nothing for a user who hides content), and
//! calls [`PushNotifier::notify`] with one [`PushNotice`] per device.
//! Tokens the provider reports invalid ([`PushReport::invalid`]) are
//! removed, unless the device registered a new one meanwhile.
//!
//! Pushes are best effort: the message itself is stored and reaches the
//! devices when they connect. When the queue is full, a message's pushes
//! are dropped and counted (`imkit_push_dropped_total`).

use async_trait::async_trait;
use imkit_proto::pb;

use crate::model::{ConversationId, DeviceId, MessageId, UserId};
pub use crate::store::PushToken;

/// One notification for one device.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PushNotice {
    /// Whom it is for.
    pub user: UserId,
    /// Which of their devices.
    pub device: DeviceId,
    /// The device's registration.
    pub token: PushToken,
    /// The user's total unread messages, for the app's badge.
    pub badge: u64,
    /// Where the message is.
    pub conversation: ConversationId,
    /// The message.
    pub message_id: MessageId,
    /// Its seq in the conversation.
    pub seq: u64,
    /// Who sent it and what it says; `None` when the user hides content.
    pub preview: Option<Preview>,
}

/// What a notification may show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    /// The sender.
    pub sender: UserId,
    /// The start of the content: the text, `[file] name`, or `[kind]`
    /// for a custom payload.
    pub text: String,
}

/// What a notifier found out while sending.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushReport {
    /// Indexes (into the notices it was given) of tokens the provider
    /// refused as invalid or unregistered: the engine removes them.
    pub invalid: Vec<usize>,
}

/// Sends notifications to devices (an APNs or FCM gateway, say). Calls
/// come from the engine's push worker, never from a sender's request; a
/// slow notifier only fills the queue.
#[async_trait]
pub trait PushNotifier: Send + Sync + 'static {
    /// Sends `notices` (one per device) and reports invalid tokens.
    async fn notify(&self, notices: &[PushNotice]) -> PushReport;

    /// Whether this notifier sends anything. When it does not, the engine
    /// skips the push work altogether (token lookups, badges).
    fn sends(&self) -> bool {
        true
    }
}

/// The default notifier: sends nothing, so the engine does no push work
/// (its `notify`, if called, logs at debug level).
#[derive(Debug, Default, Clone, Copy)]
pub struct LogPushNotifier;

#[async_trait]
impl PushNotifier for LogPushNotifier {
    fn sends(&self) -> bool {
        false
    }

    async fn notify(&self, notices: &[PushNotice]) -> PushReport {
        for n in notices {
            tracing::debug!(user = %n.user, device = %n.device, conversation = %n.conversation,
                seq = n.seq, badge = n.badge, "offline push");
        }
        PushReport::default()
    }
}

/// Bounds on push work. Every field has a default.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PushOptions {
    /// Messages waiting for their pushes (default 4,096).
    pub max_queued: usize,
    /// Bytes of messages waiting for their pushes (default 16 MiB).
    pub max_queued_bytes: usize,
    /// Messages whose pushes are worked out at once (default 4).
    pub concurrency: usize,
    /// Characters of content a preview shows (default 100).
    pub preview_chars: usize,
    /// Longest token accepted, in bytes (default 4,096).
    pub max_token_bytes: usize,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            max_queued: 4_096,
            max_queued_bytes: 16 << 20,
            concurrency: 4,
            preview_chars: 100,
            max_token_bytes: 4_096,
        }
    }
}

/// The preview of `content`, at most `chars` characters of it; `None`
/// for content that is not a user's (recalls, system events).
pub fn preview_text(content: &pb::Content, chars: usize) -> Option<String> {
    use pb::content::Body;
    let full = match content.body.as_ref()? {
        Body::Text(t) => t.text.clone(),
        Body::File(f) => format!("[file] {}", f.name),
        Body::Custom(c) => format!("[{}]", c.kind),
        Body::Recall(_) | Body::System(_) => return None,
    };
    Some(match full.char_indices().nth(chars) {
        Some((cut, _)) => format!("{}…", &full[..cut]),
        None => full,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_are_cut_at_a_character() {
        let text = pb::Content::text("héllo wörld");
        assert_eq!(preview_text(&text, 5).as_deref(), Some("héllo…"));
        assert_eq!(preview_text(&text, 50).as_deref(), Some("héllo wörld"));
        let custom = pb::Content {
            body: Some(pb::content::Body::Custom(pb::Custom {
                kind: "location".into(),
                data: Default::default(),
            })),
        };
        assert_eq!(preview_text(&custom, 50).as_deref(), Some("[location]"));
        let system = pb::Content {
            body: Some(pb::content::Body::System(pb::SystemEvent::default())),
        };
        assert_eq!(preview_text(&system, 50), None);
    }
}
