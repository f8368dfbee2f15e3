//! Redis [`DeviceStore`]: a sorted set per user, scored by when each
//! device first logged in. Registration is a script, so the cap holds
//! under concurrent logins from any node.

use async_trait::async_trait;
use redis::{AsyncCommands, Script};

use super::{RedisDb, err};
use crate::Result;
use crate::model::*;
use crate::store::{DeviceInfo, DeviceStore, Registered};

/// Redis [`DeviceStore`].
#[derive(Clone, Debug)]
pub struct RedisDevices(pub(super) RedisDb);

/// KEYS: devices:{user}; ARGV: device, now_ms, max.
/// 0 known, 1 new, -1 full.
const REGISTER: &str = r"
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return -1 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
";

static REGISTER_SCRIPT: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(REGISTER));

impl RedisDevices {
    fn key(&self, user: &UserId) -> String {
        self.0.key(&["devices", user.as_str()])
    }
}

#[async_trait]
impl DeviceStore for RedisDevices {
    async fn register(
        &self,
        user: &UserId,
        device: &DeviceId,
        now_ms: u64,
        max: usize,
    ) -> Result<Registered> {
        let mut c = self.0.connection();
        let n: i64 = REGISTER_SCRIPT
            .key(self.key(user))
            .arg(device.as_str())
            .arg(now_ms)
            .arg(max)
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        Ok(match n {
            0 => Registered::Known,
            1 => Registered::New,
            _ => Registered::Full,
        })
    }

    async fn devices(&self, user: &UserId) -> Result<Vec<DeviceInfo>> {
        let mut c = self.0.connection();
        let d: Vec<(String, f64)> = c
            .zrange_withscores(self.key(user), 0, -1)
            .await
            .map_err(err)?;
        Ok(d.into_iter()
            .map(|(device, score)| DeviceInfo {
                device: DeviceId::new(device),
                // Scores are whole milliseconds, exact in a double.
                first_seen_ms: score as u64,
            })
            .collect())
    }

    async fn remove(&self, user: &UserId, device: &DeviceId) -> Result<bool> {
        let mut c = self.0.connection();
        let n: i64 = c.zrem(self.key(user), device.as_str()).await.map_err(err)?;
        Ok(n == 1)
    }
}
