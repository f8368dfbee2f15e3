//! Redis [`PresenceStore`].

use async_trait::async_trait;
use redis::{AsyncCommands, Script};

use super::{RedisDb, err};
use crate::Result;
use crate::model::*;
use crate::store::{Located, PresenceStore};

/// Redis [`PresenceStore`]. With liveness on, entries of a node whose
/// liveness key has expired are ignored by lookups and removed.
#[derive(Clone, Debug)]
pub struct RedisPresence {
    db: RedisDb,
    liveness: bool,
}

const ONLINE: &str = r"
local prev = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
if prev and prev ~= ARGV[2] then
  -- Leave the user in the old node's set only if another device is still there.
  local still = false
  for _, n in ipairs(redis.call('HVALS', KEYS[1])) do
    if n == prev then still = true end
  end
  if not still then redis.call('SREM', ARGV[4] .. prev, ARGV[3]) end
end
return prev
";

const OFFLINE: &str = r"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
for _, n in ipairs(redis.call('HVALS', KEYS[1])) do
  if n == ARGV[2] then return 1 end
end
redis.call('SREM', KEYS[2], ARGV[3])
return 1
";

const CLEAR_NODE: &str = r"
local users = redis.call('SMEMBERS', KEYS[1])
local removed = 0
for _, u in ipairs(users) do
  local key = ARGV[2] .. u
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    if all[i + 1] == ARGV[1] then
      redis.call('HDEL', key, all[i])
      removed = removed + 1
    end
  end
end
redis.call('DEL', KEYS[1])
return removed
";

/// How long a presence lookup may take (500 ms). Lookups sit on the send
/// path after the commit; a Redis that is away or stalled must not hold
/// SENT, so a lookup past this fails and the message is not pushed live
/// (its receivers catch up by sync).
pub(super) const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

async fn bounded<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(LOOKUP_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| Err(err(format!("presence lookup took over {LOOKUP_TIMEOUT:?}"))))
}

impl RedisPresence {
    /// Presence without liveness checks.
    pub fn new(db: RedisDb) -> Self {
        RedisPresence {
            db,
            liveness: false,
        }
    }

    /// Presence that ignores (and removes) entries of nodes whose
    /// liveness key, kept by [`RedisPresence::heartbeat`], has expired.
    pub fn with_liveness(db: RedisDb) -> Self {
        RedisPresence { db, liveness: true }
    }

    /// Marks `node` alive for `ttl`. A node calls this well within the TTL.
    pub async fn heartbeat(&self, node: &NodeId, ttl: std::time::Duration) -> Result<()> {
        let mut c = self.db.connection();
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        c.pset_ex::<_, _, ()>(self.db.key(&["p", "alive", node.as_str()]), 1, ms)
            .await
            .map_err(err)
    }

    /// Whether a node's liveness key exists.
    pub async fn is_alive(&self, node: &NodeId) -> Result<bool> {
        let mut c = self.db.connection();
        c.exists(self.db.key(&["p", "alive", node.as_str()]))
            .await
            .map_err(err)
    }

    async fn locate_now(&self, user: &UserId) -> Result<Vec<DeviceLocation>> {
        let mut c = self.db.connection();
        let map: Vec<(String, String)> = c.hgetall(self.user_key(user)).await.map_err(err)?;
        let users = [user.clone()];
        Ok(self
            .filter_alive(&users, vec![parse_locations(map)])
            .await?
            .pop()
            .unwrap_or_default())
    }

    async fn locate_many_now(&self, users: &[UserId]) -> Result<Vec<Located>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for u in users {
            pipe.hgetall(self.user_key(u));
        }
        let mut c = self.db.connection();
        let maps: Vec<Vec<(String, String)>> = pipe.query_async(&mut c).await.map_err(err)?;
        let located = maps.into_iter().map(parse_locations).collect();
        let alive = self.filter_alive(users, located).await?;
        Ok(alive
            .into_iter()
            .enumerate()
            .flat_map(|(i, devices)| {
                devices.into_iter().map(move |l| Located {
                    user: i,
                    device: l.device,
                    node: l.node,
                })
            })
            .collect())
    }

    fn user_key(&self, u: &UserId) -> String {
        self.db.key(&["p", "u", u.as_str()])
    }

    fn node_key(&self, n: &NodeId) -> String {
        self.db.key(&["p", "n", n.as_str()])
    }

    /// Drops entries that point at dead nodes (when liveness is on).
    async fn filter_alive(
        &self,
        users: &[UserId],
        located: Vec<Vec<DeviceLocation>>,
    ) -> Result<Vec<Vec<DeviceLocation>>> {
        if !self.liveness {
            return Ok(located);
        }
        let mut nodes: Vec<NodeId> = located.iter().flatten().map(|l| l.node.clone()).collect();
        nodes.sort();
        nodes.dedup();
        if nodes.is_empty() {
            return Ok(located);
        }
        let mut pipe = redis::pipe();
        for n in &nodes {
            pipe.exists(self.db.key(&["p", "alive", n.as_str()]));
        }
        let mut c = self.db.connection();
        let alive: Vec<bool> = pipe.query_async(&mut c).await.map_err(err)?;
        let dead: Vec<&NodeId> = nodes
            .iter()
            .zip(&alive)
            .filter(|(_, a)| !**a)
            .map(|(n, _)| n)
            .collect();
        if dead.is_empty() {
            return Ok(located);
        }
        let mut out = Vec::with_capacity(located.len());
        for (user, devices) in users.iter().zip(located) {
            let (live, stale): (Vec<_>, Vec<_>) =
                devices.into_iter().partition(|l| !dead.contains(&&l.node));
            for l in stale {
                // Clean up behind a dead node, guarded like a normal offline.
                self.offline(user, &l.device, &l.node).await?;
            }
            out.push(live);
        }
        Ok(out)
    }
}

fn parse_locations(map: Vec<(String, String)>) -> Vec<DeviceLocation> {
    map.into_iter()
        .map(|(d, n)| DeviceLocation {
            device: DeviceId::new(d),
            node: NodeId::new(n),
        })
        .collect()
}

#[async_trait]
impl PresenceStore for RedisPresence {
    async fn online(
        &self,
        user: &UserId,
        device: &DeviceId,
        node: &NodeId,
    ) -> Result<Option<NodeId>> {
        let mut c = self.db.connection();
        let prev: Option<String> = Script::new(ONLINE)
            .key(self.user_key(user))
            .key(self.node_key(node))
            .arg(device.as_str())
            .arg(node.as_str())
            .arg(user.as_str())
            .arg(self.db.key(&["p", "n", ""]))
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        Ok(prev.map(NodeId::new))
    }

    async fn offline(&self, user: &UserId, device: &DeviceId, node: &NodeId) -> Result<bool> {
        let mut c = self.db.connection();
        let n: i64 = Script::new(OFFLINE)
            .key(self.user_key(user))
            .key(self.node_key(node))
            .arg(device.as_str())
            .arg(node.as_str())
            .arg(user.as_str())
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        Ok(n == 1)
    }

    async fn locate(&self, user: &UserId) -> Result<Vec<DeviceLocation>> {
        bounded(self.locate_now(user)).await
    }

    async fn locate_many(&self, users: &[UserId]) -> Result<Vec<Located>> {
        bounded(self.locate_many_now(users)).await
    }

    async fn users_on(&self, node: &NodeId) -> Result<Vec<UserId>> {
        let mut c = self.db.connection();
        let users: Vec<String> = c.smembers(self.node_key(node)).await.map_err(err)?;
        Ok(users.into_iter().map(UserId::new).collect())
    }

    async fn clear_node(&self, node: &NodeId) -> Result<usize> {
        let mut c = self.db.connection();
        let n: i64 = Script::new(CLEAR_NODE)
            .key(self.node_key(node))
            .arg(node.as_str())
            .arg(self.db.key(&["p", "u", ""]))
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        Ok(usize::try_from(n).unwrap_or(0))
    }
}
