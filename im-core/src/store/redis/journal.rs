//! Redis [`JournalStore`]: a sorted set `jz` scored by record id, each
//! member `"{id} {seq} {key}\n{payload}"`, and the id counter `jid`. The
//! unit script records in the same script call as the unit (atomic), so
//! ids grow in commit order. The reading lease is a key set with `NX PX`
//! and renewed by its holder.

use std::time::Duration;

use async_trait::async_trait;
use redis::Script;

use super::{RedisDb, err};
use crate::Result;
use crate::store::{JournalRecord, JournalStore};

/// The counter and the sorted set, in that order.
pub(super) fn keys(db: &RedisDb) -> (String, String) {
    (db.key(&["jid"]), db.key(&["jz"]))
}

/// Records outside units. KEYS: jid, jz. ARGV: key, payload.
const PUT: &str = r"
local id = redis.call('INCR', KEYS[1])
redis.call('ZADD', KEYS[2], id, id .. ' 0 ' .. ARGV[1] .. '\n' .. ARGV[2])
return id
";

/// Takes or renews the lease. KEYS: the lease. ARGV: holder, ttl in ms.
const LEASE: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur == false or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
";

static PUT_SCRIPT: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| Script::new(PUT));
static LEASE_SCRIPT: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| Script::new(LEASE));

/// Redis [`JournalStore`].
#[derive(Clone, Debug)]
pub struct RedisJournal(pub(super) RedisDb);

/// A member of `jz` taken apart.
fn parse(member: &[u8]) -> Result<JournalRecord> {
    let bad = || err("malformed journal record");
    let nl = member.iter().position(|&b| b == b'\n').ok_or_else(bad)?;
    let head = std::str::from_utf8(&member[..nl]).map_err(err)?;
    let mut parts = head.splitn(3, ' ');
    let id = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let seq = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let key = parts.next().ok_or_else(bad)?.to_owned();
    Ok(JournalRecord {
        id,
        key,
        seq,
        payload: member[nl + 1..].to_vec(),
    })
}

#[async_trait]
impl JournalStore for RedisJournal {
    async fn put(&self, key: &str, payload: Vec<u8>) -> Result<()> {
        let (jid, jz) = keys(&self.0);
        let mut c = self.0.connection();
        let _: u64 = PUT_SCRIPT
            .key(jid)
            .key(jz)
            .arg(key)
            .arg(payload)
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn read(&self, after: u64, limit: usize) -> Result<Vec<JournalRecord>> {
        let (_, jz) = keys(&self.0);
        let mut c = self.0.connection();
        let members: Vec<Vec<u8>> = redis::cmd("ZRANGE")
            .arg(jz)
            .arg(format!("({after}"))
            .arg("+inf")
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut c)
            .await
            .map_err(err)?;
        members.iter().map(|m| parse(m)).collect()
    }

    async fn take(&self, ids: &[u64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let (_, jz) = keys(&self.0);
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("ZREMRANGEBYSCORE")
                .arg(&jz)
                .arg(id)
                .arg(id)
                .ignore();
        }
        let mut c = self.0.connection();
        pipe.query_async::<()>(&mut c).await.map_err(err)
    }

    async fn pending(&self) -> Result<u64> {
        let (_, jz) = keys(&self.0);
        let mut c = self.0.connection();
        redis::cmd("ZCARD")
            .arg(jz)
            .query_async(&mut c)
            .await
            .map_err(err)
    }

    async fn lease(&self, holder: &str, ttl: Duration) -> Result<bool> {
        let mut c = self.0.connection();
        let held: i64 = LEASE_SCRIPT
            .key(self.0.key(&["jlease"]))
            .arg(holder)
            .arg(ttl.as_millis().max(1) as u64)
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        Ok(held == 1)
    }
}
