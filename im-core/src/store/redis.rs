//! Redis stores (feature `redis`): every store on one Redis, so any node
//! of a cluster can serve any user.
//!
//! Each operation that must be atomic is one Lua script. Keys live under
//! a namespace prefix (default `imkit:`):
//!
//! | key | type | holds |
//! |-----|------|-------|
//! | `p:u:{user}` | hash | device → node |
//! | `p:n:{node}` | set | users with a device on the node |
//! | `p:alive:{node}` | string, TTL | the node's liveness (see [`RedisPresence::with_liveness`]) |
//! | `h:{conv}` | hash | seq → message (protobuf, seq and recall applied on read) |
//! | `hm:{conv}` | hash | seq → `countable` flag and sender, for unread counts |
//! | `hs:{conv}` | string | the conversation's max seq |
//! | `hr:{conv}` | set | recalled seqs |
//! | `hc:{sender}` | hash | client message id → `conv seq` |
//! | `hid` | hash | message id → `conv seq` |
//! | `ib:{user}:{device}` / `ibo:…` | hash / list | inbox: conv → seq, and arrival order |
//! | `dv:{user}`, `uc:{user}` | set | devices; 1:1 conversations |
//! | `dl:{user}:{device}` | hash | conv → delivered seq |
//! | `rd:{conv}` | hash | user → read seq |
//! | `g:{group}`, `gm:{group}`, `gmo:{group}`, `ug:{user}` | hash, hash, zset, set | groups |
//! | `fr:`, `fi:`, `fo:`, `bl:{user}` | set | friends, incoming, outgoing, blocked |
//! | `acct:{user}` | hash | account: name, disabled, created_ms |
//! | `revoked:{token_id}` | string | a revoked token, expiring with it |

use async_trait::async_trait;
use imkit_proto::pb;
use prost::Message as _;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};

use crate::model::*;
use std::collections::HashMap;

use crate::store::{
    Account, AccountStore, ContactStore, Direction, GroupStore, HistoryStore, InboxStore,
    PresenceStore, ReadStateStore, Stores,
};
use crate::{Error, Result};

const BACKEND: &str = "redis";

fn err(e: impl std::fmt::Display) -> Error {
    Error::store(BACKEND, e)
}

/// A connection to Redis and the key namespace. Cheap to clone.
#[derive(Clone)]
pub struct RedisDb {
    conn: ConnectionManager,
    ns: String,
}

impl std::fmt::Debug for RedisDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisDb")
            .field("ns", &self.ns)
            .finish_non_exhaustive()
    }
}

impl RedisDb {
    /// Connects (with automatic reconnection) to `url`, e.g.
    /// `redis://127.0.0.1:6379`, with keys under `namespace`.
    pub async fn connect(url: &str, namespace: &str) -> Result<RedisDb> {
        let client = redis::Client::open(url).map_err(err)?;
        let conn = ConnectionManager::new(client).await.map_err(err)?;
        Ok(RedisDb {
            conn,
            ns: namespace.to_owned(),
        })
    }

    /// A command connection.
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// The namespace prefix.
    pub fn namespace(&self) -> &str {
        &self.ns
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut k = self.ns.clone();
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                k.push(':');
            }
            k.push_str(p);
        }
        k
    }
}

/// Every store on one Redis.
pub async fn open_stores(url: &str, namespace: &str) -> Result<Stores> {
    let db = RedisDb::connect(url, namespace).await?;
    Ok(stores_on(db))
}

/// Every store on a connected database, without presence liveness.
pub fn stores_on(db: RedisDb) -> Stores {
    Stores {
        presence: std::sync::Arc::new(RedisPresence::new(db.clone())),
        history: std::sync::Arc::new(RedisHistory(db.clone())),
        inbox: std::sync::Arc::new(RedisInbox::new(db.clone())),
        read_state: std::sync::Arc::new(RedisReadState(db.clone())),
        groups: std::sync::Arc::new(RedisGroups(db.clone())),
        contacts: std::sync::Arc::new(RedisContacts(db.clone())),
        accounts: std::sync::Arc::new(RedisAccounts(db)),
    }
}

// ───────────────────────────── Presence ─────────────────────────────

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
        let mut c = self.db.connection();
        let map: Vec<(String, String)> = c.hgetall(self.user_key(user)).await.map_err(err)?;
        let users = [user.clone()];
        Ok(self
            .filter_alive(&users, vec![parse_locations(map)])
            .await?
            .pop()
            .unwrap_or_default())
    }

    async fn locate_many(&self, users: &[UserId]) -> Result<Vec<Vec<DeviceLocation>>> {
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
        self.filter_alive(users, located).await
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

// ───────────────────────────── History ─────────────────────────────

/// Redis [`HistoryStore`]. Appends are one script: dedup, recall marking,
/// INCR of the conversation's seq and the writes, atomically.
#[derive(Clone, Debug)]
pub struct RedisHistory(RedisDb);

/// KEYS: hc:{sender}, hs:{conv}, h:{conv}, hm:{conv}, hr:{conv}, hid
/// ARGV: cmid, payload, meta, message id, recall target (0 = none), conv
/// Returns {duplicate (0/1), conv, seq}.
const APPEND: &str = r"
local found = redis.call('HGET', KEYS[1], ARGV[1])
if found then
  local sp = string.find(found, ' ', 1, true)
  return {1, string.sub(found, 1, sp - 1), tonumber(string.sub(found, sp + 1))}
end
local target = tonumber(ARGV[5])
if target > 0 then
  if redis.call('HEXISTS', KEYS[3], ARGV[5]) == 0 then
    return {-1, '', 0}
  end
  redis.call('SADD', KEYS[5], ARGV[5])
end
local seq = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[3], seq, ARGV[2])
redis.call('HSET', KEYS[4], seq, ARGV[3])
local loc = ARGV[6] .. ' ' .. seq
redis.call('HSET', KEYS[1], ARGV[1], loc)
redis.call('HSET', KEYS[6], ARGV[4], loc)
return {0, ARGV[6], seq}
";

/// KEYS: hs:{conv}, hm:{conv}, hr:{conv}; ARGV: after, reader.
const COUNT_UNREAD: &str = r"
local max = tonumber(redis.call('GET', KEYS[1]) or '0')
local n = 0
for seq = tonumber(ARGV[1]) + 1, max do
  local meta = redis.call('HGET', KEYS[2], seq)
  if meta and string.sub(meta, 1, 1) == '1' and string.sub(meta, 3) ~= ARGV[2]
     and redis.call('SISMEMBER', KEYS[3], seq) == 0 then
    n = n + 1
  end
end
return n
";

impl RedisHistory {
    fn k(&self, kind: &str, id: &str) -> String {
        self.0.key(&[kind, id])
    }

    /// Loads messages at the given seqs, applying seq and recall.
    async fn load(&self, conv: &ConversationId, seqs: &[u64]) -> Result<Vec<Message>> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.0.connection();
        let mut pipe = redis::pipe();
        pipe.cmd("HMGET").arg(self.k("h", conv.as_str())).arg(seqs);
        pipe.cmd("SMISMEMBER")
            .arg(self.k("hr", conv.as_str()))
            .arg(seqs);
        let (payloads, recalled): (Vec<Option<Vec<u8>>>, Vec<bool>) =
            pipe.query_async(&mut c).await.map_err(err)?;
        let mut out = Vec::with_capacity(seqs.len());
        for ((seq, payload), recalled) in seqs.iter().zip(payloads).zip(recalled) {
            let Some(bytes) = payload else { continue };
            let mut m = Message::from_pb(pb::Message::decode(bytes.as_slice()).map_err(err)?)?;
            m.seq = *seq;
            if recalled {
                m.recalled = true;
                m.content = pb::Content::default();
            }
            out.push(m);
        }
        Ok(out)
    }

    async fn locate_ref(&self, key: String, field: &str) -> Result<Option<Message>> {
        let mut c = self.0.connection();
        let loc: Option<String> = c.hget(key, field).await.map_err(err)?;
        let Some(loc) = loc else { return Ok(None) };
        let Some((conv, seq)) = loc.rsplit_once(' ') else {
            return Err(err(format!("malformed message reference {loc:?}")));
        };
        let seq: u64 = seq.parse().map_err(err)?;
        Ok(self.load(&ConversationId::new(conv), &[seq]).await?.pop())
    }
}

#[async_trait]
impl HistoryStore for RedisHistory {
    async fn append(&self, new: NewMessage) -> Result<Appended> {
        let conv = new.conversation.clone();
        let target = recall_target(&new.content).unwrap_or(0);
        let meta = format!("{} {}", u8::from(is_user_content(&new.content)), new.sender);
        // Stored without seq (the key holds it) and with recalled=false.
        let payload = Message::from_new(new.clone(), 0).to_pb().encode_to_vec();
        let mut c = self.0.connection();
        let (flag, found_conv, seq): (i64, String, u64) = Script::new(APPEND)
            .key(self.k("hc", new.sender.as_str()))
            .key(self.k("hs", conv.as_str()))
            .key(self.k("h", conv.as_str()))
            .key(self.k("hm", conv.as_str()))
            .key(self.k("hr", conv.as_str()))
            .key(self.0.key(&["hid"]))
            .arg(&new.client_msg_id)
            .arg(payload)
            .arg(meta)
            .arg(new.id.to_string())
            .arg(target)
            .arg(conv.as_str())
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        match flag {
            -1 => Err(Error::NotFound(format!("message {target} in {conv}"))),
            1 => {
                let message = self
                    .load(&ConversationId::new(found_conv), &[seq])
                    .await?
                    .pop()
                    .ok_or_else(|| err("client index points at nothing"))?;
                Ok(Appended {
                    message,
                    duplicate: true,
                })
            }
            _ => Ok(Appended {
                message: Message::from_new(new, seq),
                duplicate: false,
            }),
        }
    }

    async fn get(&self, conversation: &ConversationId, seq: u64) -> Result<Option<Message>> {
        if seq == 0 {
            return Ok(None);
        }
        Ok(self.load(conversation, &[seq]).await?.pop())
    }

    async fn get_by_id(&self, id: &MessageId) -> Result<Option<Message>> {
        self.locate_ref(self.0.key(&["hid"]), &id.to_string()).await
    }

    async fn find_by_client_id(
        &self,
        sender: &UserId,
        client_msg_id: &str,
    ) -> Result<Option<Message>> {
        self.locate_ref(self.k("hc", sender.as_str()), client_msg_id)
            .await
    }

    async fn range(
        &self,
        conversation: &ConversationId,
        from_seq: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let max = self.max_seq(conversation).await?;
        let limit = u64::try_from(limit).unwrap_or(u64::MAX);
        let seqs: Vec<u64> = match direction {
            Direction::Forward => {
                let start = from_seq.saturating_add(1);
                let end = max.min(from_seq.saturating_add(limit));
                (start..=end).collect()
            }
            Direction::Backward => {
                let top = if from_seq == 0 {
                    max
                } else {
                    from_seq.saturating_sub(1).min(max)
                };
                let bottom = top.saturating_sub(limit).saturating_add(1).max(1);
                if top == 0 {
                    Vec::new()
                } else {
                    (bottom..=top).rev().collect()
                }
            }
        };
        // Page through large ranges so one call never builds a huge reply.
        let mut out = Vec::with_capacity(seqs.len());
        for chunk in seqs.chunks(1000) {
            out.extend(self.load(conversation, chunk).await?);
        }
        Ok(out)
    }

    async fn max_seq(&self, conversation: &ConversationId) -> Result<u64> {
        let mut c = self.0.connection();
        let n: Option<u64> = c
            .get(self.k("hs", conversation.as_str()))
            .await
            .map_err(err)?;
        Ok(n.unwrap_or(0))
    }

    async fn count_unread(
        &self,
        conversation: &ConversationId,
        after_seq: u64,
        reader: &UserId,
    ) -> Result<u64> {
        let mut c = self.0.connection();
        Script::new(COUNT_UNREAD)
            .key(self.k("hs", conversation.as_str()))
            .key(self.k("hm", conversation.as_str()))
            .key(self.k("hr", conversation.as_str()))
            .arg(after_seq)
            .arg(reader.as_str())
            .invoke_async(&mut c)
            .await
            .map_err(err)
    }
}

// ───────────────────────────── Inbox ─────────────────────────────

/// Redis [`InboxStore`]: per device, a hash conv → seq and a list giving
/// arrival order, capped at `cap` conversations.
#[derive(Clone, Debug)]
pub struct RedisInbox {
    db: RedisDb,
    cap: usize,
}

impl RedisInbox {
    /// An inbox store with the default cap.
    pub fn new(db: RedisDb) -> Self {
        RedisInbox {
            db,
            cap: crate::store::memory::DEFAULT_INBOX_CAP,
        }
    }

    fn keys(&self, user: &UserId, device: &DeviceId) -> (String, String) {
        (
            self.db.key(&["ib", user.as_str(), device.as_str()]),
            self.db.key(&["ibo", user.as_str(), device.as_str()]),
        )
    }
}

/// KEYS: ib, ibo; ARGV: conv, seq, cap.
const INBOX_PUSH: &str = r"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  if tonumber(ARGV[2]) > tonumber(cur) then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('RPUSH', KEYS[2], ARGV[1])
if redis.call('LLEN', KEYS[2]) > tonumber(ARGV[3]) then
  local old = redis.call('LPOP', KEYS[2])
  redis.call('HDEL', KEYS[1], old)
end
return 1
";

/// KEYS: ib, ibo; ARGV: conv, up_to.
const INBOX_ACK: &str = r"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and tonumber(cur) <= tonumber(ARGV[2]) then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('LREM', KEYS[2], 1, ARGV[1])
  return 1
end
return 0
";

#[async_trait]
impl InboxStore for RedisInbox {
    async fn push(&self, user: &UserId, device: &DeviceId, entry: InboxEntry) -> Result<()> {
        let (h, l) = self.keys(user, device);
        let mut c = self.db.connection();
        Script::new(INBOX_PUSH)
            .key(h)
            .key(l)
            .arg(entry.conversation.as_str())
            .arg(entry.seq)
            .arg(self.cap)
            .invoke_async::<i64>(&mut c)
            .await
            .map(drop)
            .map_err(err)
    }

    async fn pending(
        &self,
        user: &UserId,
        device: &DeviceId,
        limit: usize,
    ) -> Result<Vec<InboxEntry>> {
        let (h, l) = self.keys(user, device);
        let mut c = self.db.connection();
        let stop = isize::try_from(limit)
            .unwrap_or(isize::MAX)
            .saturating_sub(1);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let convs: Vec<String> = c.lrange(&l, 0, stop).await.map_err(err)?;
        if convs.is_empty() {
            return Ok(Vec::new());
        }
        let seqs: Vec<Option<u64>> = redis::cmd("HMGET")
            .arg(&h)
            .arg(&convs)
            .query_async(&mut c)
            .await
            .map_err(err)?;
        Ok(convs
            .into_iter()
            .zip(seqs)
            .filter_map(|(conv, seq)| {
                seq.map(|seq| InboxEntry {
                    conversation: ConversationId::new(conv),
                    seq,
                })
            })
            .collect())
    }

    async fn ack(
        &self,
        user: &UserId,
        device: &DeviceId,
        conversation: &ConversationId,
        up_to_seq: u64,
    ) -> Result<usize> {
        let (h, l) = self.keys(user, device);
        let mut c = self.db.connection();
        let n: i64 = Script::new(INBOX_ACK)
            .key(h)
            .key(l)
            .arg(conversation.as_str())
            .arg(up_to_seq)
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        Ok(usize::try_from(n).unwrap_or(0))
    }
}

// ───────────────────────────── Read state ─────────────────────────────

/// Redis [`ReadStateStore`].
#[derive(Clone, Debug)]
pub struct RedisReadState(RedisDb);

/// KEYS: hash; ARGV: field, seq. Sets field to max(current, seq); returns it.
const ADVANCE: &str = r"
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local new = tonumber(ARGV[2])
if new > cur then
  redis.call('HSET', KEYS[1], ARGV[1], new)
  return new
end
return cur
";

impl RedisReadState {
    async fn advance(&self, key: String, field: &str, seq: u64) -> Result<u64> {
        let mut c = self.0.connection();
        Script::new(ADVANCE)
            .key(key)
            .arg(field)
            .arg(seq)
            .invoke_async(&mut c)
            .await
            .map_err(err)
    }
}

#[async_trait]
impl ReadStateStore for RedisReadState {
    async fn register_device(&self, user: &UserId, device: &DeviceId) -> Result<()> {
        let mut c = self.0.connection();
        c.sadd::<_, _, ()>(self.0.key(&["dv", user.as_str()]), device.as_str())
            .await
            .map_err(err)
    }

    async fn devices(&self, user: &UserId) -> Result<Vec<DeviceId>> {
        let mut c = self.0.connection();
        let d: Vec<String> = c
            .smembers(self.0.key(&["dv", user.as_str()]))
            .await
            .map_err(err)?;
        Ok(d.into_iter().map(DeviceId::new).collect())
    }

    async fn devices_many(&self, users: &[UserId]) -> Result<Vec<Vec<DeviceId>>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for u in users {
            pipe.smembers(self.0.key(&["dv", u.as_str()]));
        }
        let mut c = self.0.connection();
        let all: Vec<Vec<String>> = pipe.query_async(&mut c).await.map_err(err)?;
        Ok(all
            .into_iter()
            .map(|d| d.into_iter().map(DeviceId::new).collect())
            .collect())
    }

    async fn add_conversation(&self, user: &UserId, conversation: &ConversationId) -> Result<()> {
        let mut c = self.0.connection();
        c.sadd::<_, _, ()>(self.0.key(&["uc", user.as_str()]), conversation.as_str())
            .await
            .map_err(err)
    }

    async fn conversations(&self, user: &UserId) -> Result<Vec<ConversationId>> {
        let mut c = self.0.connection();
        let v: Vec<String> = c
            .smembers(self.0.key(&["uc", user.as_str()]))
            .await
            .map_err(err)?;
        Ok(v.into_iter().map(ConversationId::new).collect())
    }

    async fn advance_delivered(
        &self,
        user: &UserId,
        device: &DeviceId,
        conversation: &ConversationId,
        seq: u64,
    ) -> Result<u64> {
        self.advance(
            self.0.key(&["dl", user.as_str(), device.as_str()]),
            conversation.as_str(),
            seq,
        )
        .await
    }

    async fn delivered(
        &self,
        user: &UserId,
        device: &DeviceId,
        conversation: &ConversationId,
    ) -> Result<u64> {
        let mut c = self.0.connection();
        let n: Option<u64> = c
            .hget(
                self.0.key(&["dl", user.as_str(), device.as_str()]),
                conversation.as_str(),
            )
            .await
            .map_err(err)?;
        Ok(n.unwrap_or(0))
    }

    async fn advance_read(
        &self,
        user: &UserId,
        conversation: &ConversationId,
        seq: u64,
    ) -> Result<u64> {
        self.advance(
            self.0.key(&["rd", conversation.as_str()]),
            user.as_str(),
            seq,
        )
        .await
    }

    async fn read(&self, user: &UserId, conversation: &ConversationId) -> Result<u64> {
        let mut c = self.0.connection();
        let n: Option<u64> = c
            .hget(self.0.key(&["rd", conversation.as_str()]), user.as_str())
            .await
            .map_err(err)?;
        Ok(n.unwrap_or(0))
    }

    async fn read_many(&self, conversation: &ConversationId, users: &[UserId]) -> Result<Vec<u64>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.0.connection();
        let names: Vec<&str> = users.iter().map(UserId::as_str).collect();
        let v: Vec<Option<u64>> = redis::cmd("HMGET")
            .arg(self.0.key(&["rd", conversation.as_str()]))
            .arg(names)
            .query_async(&mut c)
            .await
            .map_err(err)?;
        Ok(v.into_iter().map(|n| n.unwrap_or(0)).collect())
    }
}

// ───────────────────────────── Groups ─────────────────────────────

/// Redis [`GroupStore`].
#[derive(Clone, Debug)]
pub struct RedisGroups(RedisDb);

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

// ───────────────────────────── Contacts ─────────────────────────────

/// Redis [`ContactStore`].
#[derive(Clone, Debug)]
pub struct RedisContacts(RedisDb);

/// KEYS: fr:{from}, fi:{from}, fo:{from}, fr:{to}, fi:{to}, fo:{to}; ARGV: from, to.
/// Returns 0 pending, 1 became friends, 2 already friends.
const FRIEND_REQUEST: &str = r"
if redis.call('SISMEMBER', KEYS[1], ARGV[2]) == 1 then return 2 end
if redis.call('SREM', KEYS[2], ARGV[2]) == 1 then
  redis.call('SREM', KEYS[6], ARGV[1])
  redis.call('SADD', KEYS[1], ARGV[2])
  redis.call('SADD', KEYS[4], ARGV[1])
  return 1
end
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('SADD', KEYS[5], ARGV[1])
return 0
";

/// KEYS: fr:{user}, fi:{user}, fr:{from}, fo:{from}; ARGV: user, from.
const FRIEND_ACCEPT: &str = r"
if redis.call('SREM', KEYS[2], ARGV[2]) == 0 then return 0 end
redis.call('SREM', KEYS[4], ARGV[1])
redis.call('SADD', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[1])
return 1
";

/// KEYS: fr, fi, fo of user, then of other; ARGV: user, other.
const FRIEND_REMOVE: &str = r"
local n = 0
n = n + redis.call('SREM', KEYS[1], ARGV[2]) + redis.call('SREM', KEYS[2], ARGV[2]) + redis.call('SREM', KEYS[3], ARGV[2])
n = n + redis.call('SREM', KEYS[4], ARGV[1]) + redis.call('SREM', KEYS[5], ARGV[1]) + redis.call('SREM', KEYS[6], ARGV[1])
return n
";

impl RedisContacts {
    fn sets(&self, u: &UserId) -> [String; 3] {
        [
            self.0.key(&["fr", u.as_str()]),
            self.0.key(&["fi", u.as_str()]),
            self.0.key(&["fo", u.as_str()]),
        ]
    }

    async fn sorted(&self, key: String) -> Result<Vec<UserId>> {
        let mut c = self.0.connection();
        let mut v: Vec<String> = c.smembers(key).await.map_err(err)?;
        v.sort();
        Ok(v.into_iter().map(UserId::new).collect())
    }
}

#[async_trait]
impl ContactStore for RedisContacts {
    async fn request(&self, from: &UserId, to: &UserId) -> Result<FriendRequestOutcome> {
        let [ffr, ffi, ffo] = self.sets(from);
        let [tfr, tfi, tfo] = self.sets(to);
        let mut c = self.0.connection();
        let n: i64 = Script::new(FRIEND_REQUEST)
            .key(ffr)
            .key(ffi)
            .key(ffo)
            .key(tfr)
            .key(tfi)
            .key(tfo)
            .arg(from.as_str())
            .arg(to.as_str())
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        Ok(match n {
            1 => FriendRequestOutcome::BecameFriends,
            2 => FriendRequestOutcome::AlreadyFriends,
            _ => FriendRequestOutcome::Pending,
        })
    }

    async fn accept(&self, user: &UserId, from: &UserId) -> Result<bool> {
        let [ufr, ufi, _] = self.sets(user);
        let [ffr, _, ffo] = self.sets(from);
        let mut c = self.0.connection();
        let n: i64 = Script::new(FRIEND_ACCEPT)
            .key(ufr)
            .key(ufi)
            .key(ffr)
            .key(ffo)
            .arg(user.as_str())
            .arg(from.as_str())
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        Ok(n == 1)
    }

    async fn remove(&self, user: &UserId, other: &UserId) -> Result<bool> {
        let [a, b, cc] = self.sets(user);
        let [d, e, f] = self.sets(other);
        let mut c = self.0.connection();
        let n: i64 = Script::new(FRIEND_REMOVE)
            .key(a)
            .key(b)
            .key(cc)
            .key(d)
            .key(e)
            .key(f)
            .arg(user.as_str())
            .arg(other.as_str())
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        Ok(n > 0)
    }

    async fn list(&self, user: &UserId) -> Result<ContactList> {
        let [fr, fi, fo] = self.sets(user);
        Ok(ContactList {
            friends: self.sorted(fr).await?,
            incoming: self.sorted(fi).await?,
            outgoing: self.sorted(fo).await?,
            blocked: self.sorted(self.0.key(&["bl", user.as_str()])).await?,
        })
    }

    async fn block(&self, user: &UserId, other: &UserId) -> Result<()> {
        let mut c = self.0.connection();
        c.sadd::<_, _, ()>(self.0.key(&["bl", user.as_str()]), other.as_str())
            .await
            .map_err(err)
    }

    async fn unblock(&self, user: &UserId, other: &UserId) -> Result<bool> {
        let mut c = self.0.connection();
        let n: i64 = c
            .srem(self.0.key(&["bl", user.as_str()]), other.as_str())
            .await
            .map_err(err)?;
        Ok(n > 0)
    }

    async fn is_blocked(&self, user: &UserId, other: &UserId) -> Result<bool> {
        let mut c = self.0.connection();
        c.sismember(self.0.key(&["bl", user.as_str()]), other.as_str())
            .await
            .map_err(err)
    }
}

// ───────────────────────────── Accounts ─────────────────────────────

/// Redis [`AccountStore`]: a hash per account, a key per revoked token
/// that expires with the token.
#[derive(Clone, Debug)]
pub struct RedisAccounts(RedisDb);

/// KEYS: acct:{user}; ARGV: name, disabled, created_ms. 1 if created.
const ACCOUNT_CREATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'name', ARGV[1], 'disabled', ARGV[2], 'created_ms', ARGV[3])
return 1
";

/// KEYS: acct:{user}; ARGV: disabled. 1 if the account exists.
const ACCOUNT_DISABLE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'disabled', ARGV[1])
return 1
";

#[async_trait]
impl AccountStore for RedisAccounts {
    async fn create(&self, a: Account) -> Result<bool> {
        let mut c = self.0.connection();
        let n: i64 = Script::new(ACCOUNT_CREATE)
            .key(self.0.key(&["acct", a.user.as_str()]))
            .arg(a.name)
            .arg(u8::from(a.disabled))
            .arg(a.created_ms)
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        Ok(n == 1)
    }

    async fn get(&self, user: &UserId) -> Result<Option<Account>> {
        let mut c = self.0.connection();
        let fields: HashMap<String, String> = c
            .hgetall(self.0.key(&["acct", user.as_str()]))
            .await
            .map_err(err)?;
        if fields.is_empty() {
            return Ok(None);
        }
        Ok(Some(Account {
            user: user.clone(),
            name: fields.get("name").cloned().unwrap_or_default(),
            disabled: fields.get("disabled").is_some_and(|d| d == "1"),
            created_ms: fields
                .get("created_ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        }))
    }

    async fn set_disabled(&self, user: &UserId, disabled: bool) -> Result<Option<Account>> {
        let mut c = self.0.connection();
        let n: i64 = Script::new(ACCOUNT_DISABLE)
            .key(self.0.key(&["acct", user.as_str()]))
            .arg(u8::from(disabled))
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        if n == 0 {
            return Ok(None);
        }
        self.get(user).await
    }

    async fn revoke_token(&self, token_id: &str, expires_at: u64) -> Result<()> {
        let mut c = self.0.connection();
        // EXAT: the record disappears when the token would have expired.
        // Redis refuses times past its range; a token minted elsewhere may
        // claim any expiry, so the record is kept until year 9999 at most.
        const LAST_EXAT: u64 = 253_402_300_799;
        let _: () = redis::cmd("SET")
            .arg(self.0.key(&["revoked", token_id]))
            .arg(1)
            .arg("EXAT")
            .arg(expires_at.clamp(1, LAST_EXAT))
            .query_async(&mut c)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn is_revoked(&self, token_id: &str) -> Result<bool> {
        let mut c = self.0.connection();
        c.exists(self.0.key(&["revoked", token_id]))
            .await
            .map_err(err)
    }
}
