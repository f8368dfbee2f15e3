//! The offline push hook: what to do for a recipient with no device online
//! (an APNs or FCM gateway, in a real deployment).

use async_trait::async_trait;

use crate::model::{Message, UserId};

/// Called for each recipient of a message who has no device online.
/// Implementations should hand off quickly (queue the work); the engine
/// does not wait for a push provider.
#[async_trait]
pub trait PushNotifier: Send + Sync + 'static {
    /// `user` has a new message and no connected device.
    async fn notify_offline(&self, user: &UserId, message: &Message);
}

/// The default notifier: logs at debug level and does nothing else.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogPushNotifier;

#[async_trait]
impl PushNotifier for LogPushNotifier {
    async fn notify_offline(&self, user: &UserId, message: &Message) {
        tracing::debug!(%user, conversation = %message.conversation, seq = message.seq, "offline push");
    }
}
