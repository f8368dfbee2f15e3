use async_trait::async_trait;

use crate::Result;
use crate::model::{ConversationId, DeviceId, UserId};

/// Per-user and per-device state around conversations: the devices a user
/// has, the conversations a user is in (1:1; groups come from the group
/// store), and the delivered (per device) and read (per user) cursors.
///
/// Cursors only move forward: an `advance` to a lower seq changes nothing
/// and returns the current value.
#[async_trait]
pub trait ReadStateStore: Send + Sync + 'static {
    /// Remembers a device of a user (idempotent).
    async fn register_device(&self, user: &UserId, device: &DeviceId) -> Result<()>;

    /// The devices a user has logged in with.
    async fn devices(&self, user: &UserId) -> Result<Vec<DeviceId>>;

    /// [`ReadStateStore::devices`] for many users, in order (backends
    /// override this to batch round trips; group fan-out uses it).
    async fn devices_many(&self, users: &[UserId]) -> Result<Vec<Vec<DeviceId>>> {
        let mut out = Vec::with_capacity(users.len());
        for u in users {
            out.push(self.devices(u).await?);
        }
        Ok(out)
    }

    /// Adds a conversation to a user's list (idempotent).
    async fn add_conversation(&self, user: &UserId, conversation: &ConversationId) -> Result<()>;

    /// The user's 1:1 conversations.
    async fn conversations(&self, user: &UserId) -> Result<Vec<ConversationId>>;

    /// Moves a device's delivered cursor forward; returns the cursor after.
    async fn advance_delivered(
        &self,
        user: &UserId,
        device: &DeviceId,
        conversation: &ConversationId,
        seq: u64,
    ) -> Result<u64>;

    /// A device's delivered cursor (0 if none).
    async fn delivered(
        &self,
        user: &UserId,
        device: &DeviceId,
        conversation: &ConversationId,
    ) -> Result<u64>;

    /// Moves a user's read cursor forward; returns the cursor after.
    async fn advance_read(
        &self,
        user: &UserId,
        conversation: &ConversationId,
        seq: u64,
    ) -> Result<u64>;

    /// A user's read cursor (0 if none).
    async fn read(&self, user: &UserId, conversation: &ConversationId) -> Result<u64>;

    /// The read cursors of several users in one conversation, in order.
    async fn read_many(&self, conversation: &ConversationId, users: &[UserId]) -> Result<Vec<u64>> {
        let mut out = Vec::with_capacity(users.len());
        for u in users {
            out.push(self.read(u, conversation).await?);
        }
        Ok(out)
    }
}
