//! The offline push hook: what to do for recipients with no device online
//! (an APNs or FCM gateway, in a real deployment).

use async_trait::async_trait;

use crate::model::{Message, UserId};

/// Called once per stored message with the recipients who have no device
/// online. Implementations should hand off quickly (queue the work); the
/// engine waits for this call before it answers the sender.
#[async_trait]
pub trait PushNotifier: Send + Sync + 'static {
    /// `users` have a new message and no connected device.
    async fn notify_offline(&self, users: &[UserId], message: &Message);
}

/// The default notifier: logs at debug level and does nothing else.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogPushNotifier;

#[async_trait]
impl PushNotifier for LogPushNotifier {
    async fn notify_offline(&self, users: &[UserId], message: &Message) {
        tracing::debug!(users = users.len(), conversation = %message.conversation, seq = message.seq, "offline push");
    }
}
