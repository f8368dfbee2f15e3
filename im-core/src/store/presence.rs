use async_trait::async_trait;

use crate::Result;
use crate::model::{DeviceId, DeviceLocation, NodeId, UserId};

/// One connected device found by [`PresenceStore::locate_many`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The user, as an index into the users asked about.
    pub user: usize,
    /// The device.
    pub device: DeviceId,
    /// The node holding its connection.
    pub node: NodeId,
}

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

    /// Where many users' devices are connected, in one list: each entry
    /// names its user by index into `users`, and entries come in the order
    /// of `users` (a user with no device online has none). One list rather
    /// than one per user: a group's fan-out asks about thousands of users.
    async fn locate_many(&self, users: &[UserId]) -> Result<Vec<Located>> {
        let mut out = Vec::with_capacity(users.len());
        for (i, u) in users.iter().enumerate() {
            out.extend(self.locate(u).await?.into_iter().map(|l| Located {
                user: i,
                device: l.device,
                node: l.node,
            }));
        }
        Ok(out)
    }

    /// Users with at least one device on `node`.
    async fn users_on(&self, node: &NodeId) -> Result<Vec<UserId>>;

    /// Removes every entry that points at `node`; returns how many.
    async fn clear_node(&self, node: &NodeId) -> Result<usize>;

    /// A number that changes whenever an entry is added or removed, read so
    /// that it is ordered with those changes (whatever the caller wrote
    /// before reading it is visible to a device that comes online after the
    /// number it got). `None`, the default, when the store cannot tell
    /// cheaply (a store shared by many nodes). While it holds, the engine
    /// reuses what [`PresenceStore::locate_many`] said for a large group.
    fn generation(&self) -> Option<u64> {
        None
    }
}
