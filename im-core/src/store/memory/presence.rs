//! In-memory [`PresenceStore`].

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use super::Sharded;
use crate::Result;
use crate::model::*;
use crate::store::{Located, PresenceStore};

/// A user's connected devices. A user has a handful, so a list beats a
/// nested map: [`PresenceStore::locate_many`] runs once per member of every
/// group message, and a list is one allocation to touch instead of a table.
type Devices = Vec<(DeviceId, NodeId)>;

/// In-memory [`PresenceStore`].
#[derive(Default)]
pub struct MemoryPresence {
    users: Sharded<UserId, Devices>,
    /// Bumped by every change (see [`PresenceStore::generation`]).
    generation: AtomicU64,
}

impl MemoryPresence {
    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

#[async_trait]
impl PresenceStore for MemoryPresence {
    async fn online(
        &self,
        user: &UserId,
        device: &DeviceId,
        node: &NodeId,
    ) -> Result<Option<NodeId>> {
        let mut shard = self.users.shard(user).lock();
        self.bump();
        let devices = shard.entry(user.clone()).or_default();
        match devices.iter_mut().find(|(d, _)| d == device) {
            Some((_, n)) => Ok(Some(std::mem::replace(n, node.clone()))),
            None => {
                devices.push((device.clone(), node.clone()));
                Ok(None)
            }
        }
    }

    async fn offline(&self, user: &UserId, device: &DeviceId, node: &NodeId) -> Result<bool> {
        let mut shard = self.users.shard(user).lock();
        let Some(devices) = shard.get_mut(user) else {
            return Ok(false);
        };
        let Some(i) = devices.iter().position(|(d, n)| d == device && n == node) else {
            return Ok(false);
        };
        devices.swap_remove(i);
        self.bump();
        if devices.is_empty() {
            shard.remove(user);
        }
        Ok(true)
    }

    fn generation(&self) -> Option<u64> {
        // A read-modify-write, so it is ordered with the bumps.
        Some(self.generation.fetch_add(0, Ordering::AcqRel))
    }

    async fn locate(&self, user: &UserId) -> Result<Vec<DeviceLocation>> {
        let shard = self.users.shard(user).lock();
        Ok(shard
            .get(user)
            .map(|d| {
                d.iter()
                    .map(|(device, node)| DeviceLocation {
                        device: device.clone(),
                        node: node.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn locate_many(&self, users: &[UserId]) -> Result<Vec<Located>> {
        // One pass, one list, no future per user.
        let mut out = Vec::with_capacity(users.len());
        for (i, user) in users.iter().enumerate() {
            let shard = self.users.shard(user).lock();
            if let Some(devices) = shard.get(user) {
                out.extend(devices.iter().map(|(device, node)| Located {
                    user: i,
                    device: device.clone(),
                    node: node.clone(),
                }));
            }
        }
        Ok(out)
    }

    async fn users_on(&self, node: &NodeId) -> Result<Vec<UserId>> {
        let mut out = Vec::new();
        for shard in self.users.shards.iter() {
            let shard = shard.lock();
            out.extend(
                shard
                    .iter()
                    .filter(|(_, d)| d.iter().any(|(_, n)| n == node))
                    .map(|(u, _)| u.clone()),
            );
        }
        Ok(out)
    }

    async fn clear_node(&self, node: &NodeId) -> Result<usize> {
        let mut removed = 0;
        for shard in self.users.shards.iter() {
            let mut shard = shard.lock();
            shard.retain(|_, devices| {
                let before = devices.len();
                devices.retain(|(_, n)| n != node);
                removed += before - devices.len();
                !devices.is_empty()
            });
        }
        if removed > 0 {
            self.bump();
        }
        Ok(removed)
    }
}
