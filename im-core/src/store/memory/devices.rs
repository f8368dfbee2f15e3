//! In-memory [`DeviceStore`].

use async_trait::async_trait;

use super::Sharded;
use crate::Result;
use crate::model::*;
use crate::store::DeviceStore;

/// In-memory [`DeviceStore`].
#[derive(Default)]
pub struct MemoryDevices {
    devices: Sharded<UserId, Vec<DeviceId>>,
}

#[async_trait]
impl DeviceStore for MemoryDevices {
    async fn register(&self, user: &UserId, device: &DeviceId) -> Result<bool> {
        let mut shard = self.devices.shard(user).lock();
        let devices = shard.entry(user.clone()).or_default();
        if devices.contains(device) {
            return Ok(false);
        }
        devices.push(device.clone());
        Ok(true)
    }

    async fn devices(&self, user: &UserId) -> Result<Vec<DeviceId>> {
        Ok(self
            .devices
            .shard(user)
            .lock()
            .get(user)
            .cloned()
            .unwrap_or_default())
    }
}
