//! In-memory [`DeviceStore`].

use async_trait::async_trait;

use super::Sharded;
use crate::Result;
use crate::model::*;
use crate::store::{DeviceInfo, DeviceStore, Registered};

/// In-memory [`DeviceStore`].
#[derive(Default)]
pub struct MemoryDevices {
    /// Each user's devices, oldest first.
    devices: Sharded<UserId, Vec<DeviceInfo>>,
}

#[async_trait]
impl DeviceStore for MemoryDevices {
    async fn register(
        &self,
        user: &UserId,
        device: &DeviceId,
        now_ms: u64,
        max: usize,
    ) -> Result<Registered> {
        let mut shard = self.devices.shard(user).lock();
        let devices = shard.entry(user.clone()).or_default();
        if devices.iter().any(|d| d.device == *device) {
            return Ok(Registered::Known);
        }
        if devices.len() >= max {
            return Ok(Registered::Full);
        }
        // Oldest first, ties by id (as the other backends order them).
        let at = devices.partition_point(|d| (d.first_seen_ms, &d.device) < (now_ms, device));
        devices.insert(
            at,
            DeviceInfo {
                device: device.clone(),
                first_seen_ms: now_ms,
            },
        );
        Ok(Registered::New)
    }

    async fn devices(&self, user: &UserId) -> Result<Vec<DeviceInfo>> {
        Ok(self
            .devices
            .shard(user)
            .lock()
            .get(user)
            .cloned()
            .unwrap_or_default())
    }

    async fn remove(&self, user: &UserId, device: &DeviceId) -> Result<bool> {
        let mut shard = self.devices.shard(user).lock();
        let Some(devices) = shard.get_mut(user) else {
            return Ok(false);
        };
        let before = devices.len();
        devices.retain(|d| d.device != *device);
        Ok(devices.len() < before)
    }
}
