//! Redis [`DeviceStore`]: a set per user.

use async_trait::async_trait;
use redis::AsyncCommands;

use super::{RedisDb, err};
use crate::Result;
use crate::model::*;
use crate::store::DeviceStore;

/// Redis [`DeviceStore`].
#[derive(Clone, Debug)]
pub struct RedisDevices(pub(super) RedisDb);

#[async_trait]
impl DeviceStore for RedisDevices {
    async fn register(&self, user: &UserId, device: &DeviceId) -> Result<bool> {
        let mut c = self.0.connection();
        let added: i64 = c
            .sadd(self.0.key(&["dv", user.as_str()]), device.as_str())
            .await
            .map_err(err)?;
        Ok(added == 1)
    }

    async fn devices(&self, user: &UserId) -> Result<Vec<DeviceId>> {
        let mut c = self.0.connection();
        let d: Vec<String> = c
            .smembers(self.0.key(&["dv", user.as_str()]))
            .await
            .map_err(err)?;
        Ok(d.into_iter().map(DeviceId::new).collect())
    }
}
