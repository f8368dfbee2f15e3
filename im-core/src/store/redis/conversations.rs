//! Redis [`ConversationStore`]: a unit of work is one Lua script (one
//! round trip, atomic), unread and positions are scripts too.

use async_trait::async_trait;
use imkit_proto::pb;
use prost::Message as _;
use redis::{AsyncCommands, Script};

use super::{RedisDb, err};
use crate::model::*;
use crate::store::{
    Committed, ConversationStore, Cursor, Direction, MoveTo, Moved, Position, UnitOfWork,
};
use crate::{Error, Result};

/// The unit of work.
///
/// KEYS: 1 hs, 2 h, 3 hu, 4 hr, 5 hrz, 6 hid, 7 hc:{sender} (any key when
/// nothing is appended), then one `uc:{user}` per list entry, then one key
/// per cursor move (`rd:{conv}` for a read cursor, `dl:{user}:{device}`
/// for a delivered one).
/// ARGV: 1 appends (0/1), 2 client msg id, 3 payload, 4 countable (0/1),
/// 5 message id, 6 recall target (0 = none), 7 conversation, 8 list
/// entries, 9 moves, then per move: the hash field (the user for a read
/// cursor, the conversation for a delivered one) and the target (`a` for
/// the appended seq, `b` for the one before it, else a seq), then the
/// journal record's payload (empty for none; its two keys, `jid` and `jz`,
/// come last in KEYS; see [`super::journal`]).
/// Returns {status, conv, seq, before1, after1, ...}: status 1 for a
/// resend (conv and seq of the original), -1 for a missing recall target.
const COMMIT: &str = r"
local max = tonumber(redis.call('GET', KEYS[1]) or '0')
local seq = 0
if ARGV[1] == '1' then
  local found = redis.call('HGET', KEYS[7], ARGV[2])
  if found then
    local sp = string.find(found, ' ', 1, true)
    return {1, string.sub(found, 1, sp - 1), tonumber(string.sub(found, sp + 1))}
  end
  local target = tonumber(ARGV[6])
  if target > 0 then
    if redis.call('HEXISTS', KEYS[2], target) == 0 then return {-1, '', 0} end
    if redis.call('SADD', KEYS[4], target) == 1 then
      local at = tonumber(redis.call('HGET', KEYS[3], target) or '0')
      local before = 0
      if target > 1 then before = tonumber(redis.call('HGET', KEYS[3], target - 1) or '0') end
      if at > before then redis.call('ZADD', KEYS[5], target, target) end
    end
  end
  local upto = 0
  if max > 0 then upto = tonumber(redis.call('HGET', KEYS[3], max) or '0') end
  seq = max + 1
  redis.call('SET', KEYS[1], seq)
  redis.call('HSET', KEYS[2], seq, ARGV[3])
  redis.call('HSET', KEYS[3], seq, upto + tonumber(ARGV[4]))
  local loc = ARGV[7] .. ' ' .. seq
  redis.call('HSET', KEYS[7], ARGV[2], loc)
  redis.call('HSET', KEYS[6], ARGV[5], loc)
  max = seq
end
local lists = tonumber(ARGV[8])
local moves = tonumber(ARGV[9])
for i = 1, lists do redis.call('SADD', KEYS[7 + i], ARGV[7]) end
local out = {0, ARGV[7], seq}
local advanced = false
for j = 1, moves do
  local key = KEYS[7 + lists + j]
  local field = ARGV[8 + 2 * j]
  local to = ARGV[9 + 2 * j]
  local target
  if to == 'a' then target = seq
  elseif to == 'b' then target = math.max(seq - 1, 0)
  else target = math.min(tonumber(to), max) end
  local cur = tonumber(redis.call('HGET', key, field) or '0')
  local after = cur
  if target > cur then
    redis.call('HSET', key, field, target)
    after = target
  end
  table.insert(out, cur)
  table.insert(out, after)
  if after > cur then advanced = after end
end
local journal = ARGV[10 + 2 * moves]
if journal ~= '' then
  local jseq = nil
  if ARGV[1] == '1' then jseq = seq elseif advanced then jseq = out[#out] end
  if jseq then
    local id = redis.call('INCR', KEYS[8 + lists + moves])
    redis.call('ZADD', KEYS[9 + lists + moves], id, id .. ' ' .. jseq .. ' ' .. ARGV[7] .. '\n' .. journal)
  end
end
return out
";

/// Where a device stands in many conversations.
///
/// KEYS: 1 `dl:{user}:{device}`, then per conversation hs, hu, hrz, rd.
/// ARGV: 1 the user, then the conversations.
/// Returns per conversation {max, delivered or -1, read, unread}.
const POSITIONS: &str = r"
local out = {}
for i = 2, #ARGV do
  local k = 2 + (i - 2) * 4
  local max = tonumber(redis.call('GET', KEYS[k]) or '0')
  local d = redis.call('HGET', KEYS[1], ARGV[i])
  local r = tonumber(redis.call('HGET', KEYS[k + 3], ARGV[1]) or '0')
  local unread = 0
  if r < max then
    local at_max = tonumber(redis.call('HGET', KEYS[k + 1], max) or '0')
    local at_read = 0
    if r > 0 then at_read = tonumber(redis.call('HGET', KEYS[k + 1], r) or '0') end
    unread = at_max - at_read - redis.call('ZCOUNT', KEYS[k + 2], '(' .. r, max)
    if unread < 0 then unread = 0 end
  end
  table.insert(out, max)
  if d then table.insert(out, tonumber(d)) else table.insert(out, -1) end
  table.insert(out, r)
  table.insert(out, unread)
end
return out
";

/// Redis [`ConversationStore`].
#[derive(Clone, Debug)]
pub struct RedisConversations(pub(super) RedisDb);

static COMMIT_SCRIPT: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(COMMIT));
static POSITIONS_SCRIPT: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(POSITIONS));

impl RedisConversations {
    fn k(&self, kind: &str, id: &str) -> String {
        self.0.key(&[kind, id])
    }

    /// The script call that applies `unit` (see [`COMMIT`]).
    fn invocation(&self, unit: &UnitOfWork) -> redis::ScriptInvocation<'static> {
        let c_ = unit.conversation.as_str();
        let mut inv = COMMIT_SCRIPT.key(self.k("hs", c_));
        inv.key(self.k("h", c_))
            .key(self.k("hu", c_))
            .key(self.k("hr", c_))
            .key(self.k("hrz", c_))
            .key(self.0.key(&["hid"]));
        match &unit.append {
            Some(m) => {
                let target = recall_target(&m.content).unwrap_or(0);
                // Stored without seq (the key holds it) and with recalled=false.
                let payload = Message::from_new(m.clone(), 0).to_pb().encode_to_vec();
                inv.key(self.k("hc", m.sender.as_str()))
                    .arg(1)
                    .arg(&m.client_msg_id)
                    .arg(payload)
                    .arg(u8::from(is_user_content(&m.content)))
                    .arg(m.id.to_string())
                    .arg(target);
            }
            None => {
                inv.key(self.k("hs", c_))
                    .arg(0)
                    .arg("")
                    .arg("")
                    .arg(0)
                    .arg("")
                    .arg(0);
            }
        }
        inv.arg(c_).arg(unit.list_for.len()).arg(unit.moves.len());
        for u in &unit.list_for {
            inv.key(self.0.key(&["uc", u.as_str()]));
        }
        for mv in &unit.moves {
            match &mv.cursor {
                Cursor::Read(u) => {
                    inv.key(self.k("rd", c_)).arg(u.as_str());
                }
                Cursor::Delivered(u, d) => {
                    inv.key(self.0.key(&["dl", u.as_str(), d.as_str()])).arg(c_);
                }
            }
            match mv.to {
                MoveTo::Appended => inv.arg("a"),
                MoveTo::BeforeAppended => inv.arg("b"),
                MoveTo::Seq(s) => inv.arg(s),
            };
        }
        let (jid, jz) = super::journal::keys(&self.0);
        inv.key(jid).key(jz);
        match &unit.journal {
            Some(payload) => inv.arg(payload.as_slice()),
            None => inv.arg(""),
        };
        inv
    }

    /// What the script's answer says about `unit`.
    async fn interpret(&self, unit: UnitOfWork, out: &[redis::Value]) -> Result<Committed> {
        let status: i64 = value_at(out, 0)?;
        let found_conv: String = value_at(out, 1)?;
        let seq: u64 = value_at(out, 2)?;
        match status {
            -1 => {
                let target = unit
                    .append
                    .as_ref()
                    .and_then(|m| recall_target(&m.content))
                    .unwrap_or(0);
                Err(Error::NotFound(format!(
                    "message {target} in {}",
                    unit.conversation
                )))
            }
            1 => {
                let message = self
                    .load(&ConversationId::new(found_conv), &[seq])
                    .await?
                    .pop()
                    .ok_or_else(|| err("client index points at nothing"))?;
                Ok(Committed {
                    appended: Some(Appended {
                        message,
                        duplicate: true,
                    }),
                    moves: Vec::new(),
                })
            }
            _ => {
                let mut moves = Vec::with_capacity(unit.moves.len());
                for j in 0..unit.moves.len() {
                    moves.push(Moved {
                        before: value_at(out, 3 + 2 * j)?,
                        after: value_at(out, 4 + 2 * j)?,
                    });
                }
                Ok(Committed {
                    appended: unit.append.map(|m| Appended {
                        message: Message::from_new(m, seq),
                        duplicate: false,
                    }),
                    moves,
                })
            }
        }
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
impl ConversationStore for RedisConversations {
    async fn commit(&self, unit: UnitOfWork) -> Result<Committed> {
        unit.validate()?;
        let mut c = self.0.connection();
        let out: Vec<redis::Value> = self
            .invocation(&unit)
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        self.interpret(unit, &out).await
    }

    async fn commit_all(&self, units: Vec<UnitOfWork>) -> Vec<Result<Committed>> {
        // One round trip: the script (in case Redis forgot it), then one
        // invocation per unit, each atomic on its own.
        let mut pipe = redis::pipe();
        pipe.load_script(&COMMIT_SCRIPT);
        let mut checked = Vec::with_capacity(units.len());
        for unit in units {
            let ok = unit.validate();
            if ok.is_ok() {
                pipe.invoke_script(&self.invocation(&unit));
            }
            checked.push((unit, ok));
        }
        let mut c = self.0.connection();
        let answers: Result<Vec<redis::Value>> = pipe.query_async(&mut c).await.map_err(err);
        let mut answers = match answers {
            Ok(a) => a.into_iter().skip(1),
            Err(e) => return checked.into_iter().map(|_| Err(e.clone())).collect(),
        };
        let mut out = Vec::with_capacity(checked.len());
        for (unit, ok) in checked {
            if let Err(e) = ok {
                out.push(Err(e));
                continue;
            }
            let r = match answers.next() {
                Some(redis::Value::Array(values)) => self.interpret(unit, &values).await,
                other => Err(err(format!("unit script answered {other:?}"))),
            };
            out.push(r);
        }
        out
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

    async fn unread(&self, conversation: &ConversationId, reader: &UserId) -> Result<u64> {
        let device = DeviceId::from("");
        let p = self
            .positions(reader, &device, std::slice::from_ref(conversation))
            .await?;
        Ok(p.first().map_or(0, |p| p.unread))
    }

    async fn conversations(&self, user: &UserId) -> Result<Vec<ConversationId>> {
        let mut c = self.0.connection();
        let v: Vec<String> = c
            .smembers(self.0.key(&["uc", user.as_str()]))
            .await
            .map_err(err)?;
        Ok(v.into_iter().map(ConversationId::new).collect())
    }

    async fn delivered(
        &self,
        user: &UserId,
        device: &DeviceId,
        conversation: &ConversationId,
    ) -> Result<Option<u64>> {
        let mut c = self.0.connection();
        c.hget(
            self.0.key(&["dl", user.as_str(), device.as_str()]),
            conversation.as_str(),
        )
        .await
        .map_err(err)
    }

    async fn read(&self, user: &UserId, conversation: &ConversationId) -> Result<u64> {
        let mut c = self.0.connection();
        let n: Option<u64> = c
            .hget(self.k("rd", conversation.as_str()), user.as_str())
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
            .arg(self.k("rd", conversation.as_str()))
            .arg(names)
            .query_async(&mut c)
            .await
            .map_err(err)?;
        Ok(v.into_iter().map(|n| n.unwrap_or(0)).collect())
    }

    async fn positions(
        &self,
        user: &UserId,
        device: &DeviceId,
        conversations: &[ConversationId],
    ) -> Result<Vec<Position>> {
        if conversations.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(conversations.len());
        // Bounded scripts: a user in thousands of conversations is asked
        // about in chunks, so no one script holds Redis for long.
        for chunk in conversations.chunks(256) {
            let mut inv = POSITIONS_SCRIPT.key(self.0.key(&["dl", user.as_str(), device.as_str()]));
            inv.arg(user.as_str());
            for conv in chunk {
                let c_ = conv.as_str();
                inv.key(self.k("hs", c_))
                    .key(self.k("hu", c_))
                    .key(self.k("hrz", c_))
                    .key(self.k("rd", c_))
                    .arg(c_);
            }
            let mut c = self.0.connection();
            let flat: Vec<i64> = inv.invoke_async(&mut c).await.map_err(err)?;
            if flat.len() != chunk.len() * 4 {
                return Err(err("positions script answered the wrong length"));
            }
            for (conv, v) in chunk.iter().zip(flat.chunks(4)) {
                let n = |x: i64| u64::try_from(x).unwrap_or(0);
                out.push(Position {
                    conversation: conv.clone(),
                    max_seq: n(v[0]),
                    delivered: u64::try_from(v[1]).ok(),
                    read: n(v[2]),
                    unread: n(v[3]),
                });
            }
        }
        Ok(out)
    }
}

/// Element `i` of a script's answer, converted.
fn value_at<T: redis::FromRedisValue>(out: &[redis::Value], i: usize) -> Result<T> {
    let v = out.get(i).ok_or_else(|| {
        err(format!(
            "unit script answered {} values, wanted #{i}",
            out.len()
        ))
    })?;
    redis::from_redis_value(v).map_err(err)
}
