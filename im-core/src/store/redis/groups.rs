//! Redis [`GroupStore`].

use async_trait::async_trait;
use redis::{AsyncCommands, Script};

use super::{RedisDb, err};
use crate::model::*;
use crate::store::GroupStore;
use crate::{Error, Result};

/// Redis [`GroupStore`].
#[derive(Clone, Debug)]
pub struct RedisGroups(pub(super) RedisDb);

/// KEYS: g, gm, gmo; ARGV: group id, name, avatar, owner, created, ug prefix,
/// then (user, role, joined) triples. Returns 0 if the group exists.
const GROUP_CREATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'name', ARGV[2], 'avatar', ARGV[3], 'owner', ARGV[4], 'created', ARGV[5])
local order = 0
for i = 7, #ARGV, 3 do
  if redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 1] .. ' ' .. ARGV[i + 2]) == 1 then
    order = order + 1
    redis.call('ZADD', KEYS[3], order, ARGV[i])
    redis.call('SADD', ARGV[6] .. ARGV[i], ARGV[1])
  end
end
return 1
";

/// KEYS: g, gm, gmo; ARGV: group id, ug prefix, then (user, role, joined).
const GROUP_ADD: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local added = {}
local top = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
local order = 0
if #top == 2 then order = tonumber(top[2]) end
for i = 3, #ARGV, 3 do
  if redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 1] .. ' ' .. ARGV[i + 2]) == 1 then
    order = order + 1
    redis.call('ZADD', KEYS[3], order, ARGV[i])
    redis.call('SADD', ARGV[2] .. ARGV[i], ARGV[1])
    table.insert(added, ARGV[i])
  end
end
return added
";

/// KEYS: g, gm, gmo; ARGV: group id, ug prefix, users...
const GROUP_REMOVE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local wanted = {}
for i = 3, #ARGV do wanted[ARGV[i]] = true end
local removed = {}
for _, u in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  if wanted[u] then
    redis.call('HDEL', KEYS[2], u)
    redis.call('ZREM', KEYS[3], u)
    redis.call('SREM', ARGV[2] .. u, ARGV[1])
    table.insert(removed, u)
  end
end
return removed
";

/// KEYS: g, gm, gmo; ARGV: group id, ug prefix.
const GROUP_DISMISS: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for _, u in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  redis.call('SREM', ARGV[2] .. u, ARGV[1])
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return 1
";

impl RedisGroups {
    fn keys(&self, g: &GroupId) -> [String; 3] {
        [
            self.0.key(&["g", g.as_str()]),
            self.0.key(&["gm", g.as_str()]),
            self.0.key(&["gmo", g.as_str()]),
        ]
    }

    fn ug_prefix(&self) -> String {
        self.0.key(&["ug", ""])
    }
}

fn parse_member(user: String, value: &str) -> Member {
    let (role, joined) = value.split_once(' ').unwrap_or((value, "0"));
    Member {
        user: UserId::new(user),
        role: Role::from_name(role).unwrap_or(Role::Member),
        joined_ms: joined.parse().unwrap_or(0),
    }
}

fn member_args(inv: &mut redis::ScriptInvocation<'_>, members: &[Member]) {
    for m in members {
        inv.arg(m.user.as_str())
            .arg(m.role.as_str())
            .arg(m.joined_ms);
    }
}

#[async_trait]
impl GroupStore for RedisGroups {
    async fn create(&self, group: Group, members: Vec<Member>) -> Result<()> {
        let [g, gm, gmo] = self.keys(&group.id);
        let script = Script::new(GROUP_CREATE);
        let mut inv = script.key(g);
        inv.key(gm).key(gmo);
        inv.arg(group.id.as_str())
            .arg(&group.name)
            .arg(&group.avatar)
            .arg(group.owner.as_str())
            .arg(group.created_ms)
            .arg(self.ug_prefix());
        member_args(&mut inv, &members);
        let mut c = self.0.connection();
        let created: i64 = inv.invoke_async(&mut c).await.map_err(err)?;
        if created == 0 {
            return Err(Error::Conflict(format!("group {} exists", group.id)));
        }
        Ok(())
    }

    async fn dismiss(&self, group: &GroupId) -> Result<bool> {
        let [g, gm, gmo] = self.keys(group);
        let mut c = self.0.connection();
        let n: i64 = Script::new(GROUP_DISMISS)
            .key(g)
            .key(gm)
            .key(gmo)
            .arg(group.as_str())
            .arg(self.ug_prefix())
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        Ok(n == 1)
    }

    async fn get(&self, group: &GroupId) -> Result<Option<Group>> {
        let mut c = self.0.connection();
        let map: std::collections::HashMap<String, String> = c
            .hgetall(self.0.key(&["g", group.as_str()]))
            .await
            .map_err(err)?;
        if map.is_empty() {
            return Ok(None);
        }
        let field = |k: &str| map.get(k).cloned().unwrap_or_default();
        Ok(Some(Group {
            id: group.clone(),
            name: field("name"),
            avatar: field("avatar"),
            owner: UserId::new(field("owner")),
            created_ms: field("created").parse().unwrap_or(0),
        }))
    }

    async fn update(
        &self,
        group: &GroupId,
        name: Option<String>,
        avatar: Option<String>,
    ) -> Result<Option<Group>> {
        if self.get(group).await?.is_none() {
            return Ok(None);
        }
        let mut c = self.0.connection();
        let key = self.0.key(&["g", group.as_str()]);
        if let Some(n) = name {
            c.hset::<_, _, _, ()>(&key, "name", n).await.map_err(err)?;
        }
        if let Some(a) = avatar {
            c.hset::<_, _, _, ()>(&key, "avatar", a)
                .await
                .map_err(err)?;
        }
        self.get(group).await
    }

    async fn add_members(&self, group: &GroupId, members: Vec<Member>) -> Result<Vec<UserId>> {
        let [g, gm, gmo] = self.keys(group);
        let script = Script::new(GROUP_ADD);
        let mut inv = script.key(g);
        inv.key(gm)
            .key(gmo)
            .arg(group.as_str())
            .arg(self.ug_prefix());
        member_args(&mut inv, &members);
        let mut c = self.0.connection();
        let v: redis::Value = inv.invoke_async(&mut c).await.map_err(err)?;
        match v {
            redis::Value::Int(-1) => Err(Error::NotFound(format!("group {group}"))),
            other => {
                let added: Vec<String> = redis::from_redis_value(&other).map_err(err)?;
                Ok(added.into_iter().map(UserId::new).collect())
            }
        }
    }

    async fn remove_members(&self, group: &GroupId, users: &[UserId]) -> Result<Vec<UserId>> {
        let [g, gm, gmo] = self.keys(group);
        let script = Script::new(GROUP_REMOVE);
        let mut inv = script.key(g);
        inv.key(gm)
            .key(gmo)
            .arg(group.as_str())
            .arg(self.ug_prefix());
        for u in users {
            inv.arg(u.as_str());
        }
        let mut c = self.0.connection();
        let v: redis::Value = inv.invoke_async(&mut c).await.map_err(err)?;
        match v {
            redis::Value::Int(-1) => Err(Error::NotFound(format!("group {group}"))),
            other => {
                let removed: Vec<String> = redis::from_redis_value(&other).map_err(err)?;
                Ok(removed.into_iter().map(UserId::new).collect())
            }
        }
    }

    async fn set_role(&self, group: &GroupId, user: &UserId, role: Role) -> Result<bool> {
        let Some(m) = self.member(group, user).await? else {
            return Ok(false);
        };
        let mut c = self.0.connection();
        c.hset::<_, _, _, ()>(
            self.0.key(&["gm", group.as_str()]),
            user.as_str(),
            format!("{} {}", role.as_str(), m.joined_ms),
        )
        .await
        .map_err(err)?;
        Ok(true)
    }

    async fn members(&self, group: &GroupId) -> Result<Vec<Member>> {
        let [_, gm, gmo] = self.keys(group);
        let mut c = self.0.connection();
        let order: Vec<String> = c.zrange(&gmo, 0, -1).await.map_err(err)?;
        if order.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(&gm)
            .arg(&order)
            .query_async(&mut c)
            .await
            .map_err(err)?;
        Ok(order
            .into_iter()
            .zip(values)
            .filter_map(|(u, v)| v.map(|v| parse_member(u, &v)))
            .collect())
    }

    async fn member(&self, group: &GroupId, user: &UserId) -> Result<Option<Member>> {
        let mut c = self.0.connection();
        let v: Option<String> = c
            .hget(self.0.key(&["gm", group.as_str()]), user.as_str())
            .await
            .map_err(err)?;
        Ok(v.map(|v| parse_member(user.to_string(), &v)))
    }

    async fn groups_of(&self, user: &UserId) -> Result<Vec<GroupId>> {
        let mut c = self.0.connection();
        let mut v: Vec<String> = c
            .smembers(self.0.key(&["ug", user.as_str()]))
            .await
            .map_err(err)?;
        v.sort();
        Ok(v.into_iter().map(GroupId::new).collect())
    }
}
