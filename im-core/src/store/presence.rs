use async_trait::async_trait;

use crate::Result;
use crate::model::{DeviceId, DeviceLocation, NodeId, UserId};

/// Who is connected, with which device, to which node.
///
/// Presence is soft state: a node that restarts calls [`PresenceStore::clear_node`].
#[async_trait]
pub trait PresenceStore: Send + Sync + 'static {
    /// Records that `device` of `user` is connected to `node`. Returns the
    /// node the device was connected to before, if any, so the caller can
    /// kick that older connection.
    async fn online(
        &self,
        user: &UserId,
        device: &DeviceId,
        node: &NodeId,
    ) -> Result<Option<NodeId>>;

    /// Removes the entry, but only if it still points at `node` (a newer
    /// login elsewhere must not be undone). Returns whether it removed it.
    async fn offline(&self, user: &UserId, device: &DeviceId, node: &NodeId) -> Result<bool>;

    /// Where the user's devices are connected.
    async fn locate(&self, user: &UserId) -> Result<Vec<DeviceLocation>>;

    /// [`PresenceStore::locate`] for many users at once, in the same order.
    async fn locate_many(&self, users: &[UserId]) -> Result<Vec<Vec<DeviceLocation>>> {
        let mut out = Vec::with_capacity(users.len());
        for u in users {
            out.push(self.locate(u).await?);
        }
        Ok(out)
    }

    /// Users with at least one device on `node`.
    async fn users_on(&self, node: &NodeId) -> Result<Vec<UserId>>;

    /// Removes every entry that points at `node`; returns how many.
    async fn clear_node(&self, node: &NodeId) -> Result<usize>;
}
