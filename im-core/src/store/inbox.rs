use async_trait::async_trait;

use crate::Result;
use crate::model::{ConversationId, DeviceId, InboxEntry, UserId};

/// Per-device pointers to messages not yet delivered.
///
/// The messages themselves stay in history; the inbox says which
/// conversations a device must catch up on when it logs in. Entries leave
/// when the device acknowledges delivery. An inbox holds a bounded number of
/// entries (the backend's cap); beyond that the oldest go, and the device
/// still catches up through sync, because delivery cursors are the record.
#[async_trait]
pub trait InboxStore: Send + Sync + 'static {
    /// Adds a pointer for a device.
    async fn push(&self, user: &UserId, device: &DeviceId, entry: InboxEntry) -> Result<()>;

    /// The device's pointers, oldest first, at most `limit`.
    async fn pending(
        &self,
        user: &UserId,
        device: &DeviceId,
        limit: usize,
    ) -> Result<Vec<InboxEntry>>;

    /// Removes the device's pointers into `conversation` up to and including
    /// `up_to_seq`; returns how many.
    async fn ack(
        &self,
        user: &UserId,
        device: &DeviceId,
        conversation: &ConversationId,
        up_to_seq: u64,
    ) -> Result<usize>;
}
