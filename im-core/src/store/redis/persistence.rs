//! Whether a Redis keeps what it acknowledged: read from its own settings
//! (`CONFIG GET appendonly appendfsync`) before a server trusts it as the
//! record.
//!
//! imkit answers SENT once Redis has applied the write. Redis writes to its
//! append-only file afterwards, and fsyncs it on its own schedule, so only
//! `appendonly yes` with `appendfsync always` keeps every acknowledged
//! message through a crash of Redis or of its machine. `everysec` loses up
//! to a second's worth; `appendonly no` loses everything since the last
//! snapshot (all of it, with `save ""`).

use super::{RedisDb, err};
use crate::Result;

/// A Redis's persistence settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persistence {
    /// `appendonly`: whether writes go to an append-only file.
    pub appendonly: bool,
    /// `appendfsync`: `always`, `everysec` or `no`.
    pub appendfsync: String,
}

impl Persistence {
    /// Reads the settings. Fails if the server refuses `CONFIG GET` (some
    /// hosted Redis services rename or forbid it).
    pub async fn of(db: &RedisDb) -> Result<Persistence> {
        let mut c = db.connection();
        let pairs: Vec<(String, String)> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("appendonly")
            .arg("appendfsync")
            .query_async(&mut c)
            .await
            .map_err(|e| err(format!("cannot read Redis's persistence settings: {e}")))?;
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        Ok(Persistence {
            appendonly: get("appendonly") == "yes",
            appendfsync: get("appendfsync"),
        })
    }

    /// Why acknowledged writes could be lost with these settings, or
    /// `None` if they cannot.
    pub fn risk(&self) -> Option<String> {
        if !self.appendonly {
            return Some(
                "Redis runs with appendonly no: a restart loses every message, cursor, group \
                 and account written since its last snapshot"
                    .into(),
            );
        }
        match self.appendfsync.as_str() {
            "always" => None,
            "everysec" => Some(
                "Redis runs with appendfsync everysec: a crash of Redis or its machine loses up \
                 to a second of acknowledged messages"
                    .into(),
            ),
            other => Some(format!(
                "Redis runs with appendfsync {other}: a crash of its machine loses acknowledged \
                 messages the OS had not yet written"
            )),
        }
    }
}

/// Refuses a Redis that could lose acknowledged writes, unless the caller
/// accepts that, in which case it is logged as a warning. The error says
/// what to change: `appendonly yes` and `appendfsync always`.
pub async fn check_record(db: &RedisDb, accept_loss: bool) -> Result<()> {
    let risk = match Persistence::of(db).await {
        Ok(p) => p.risk(),
        Err(e) => Some(e.to_string()),
    };
    match risk {
        None => Ok(()),
        Some(why) if accept_loss => {
            tracing::warn!("{why}; accepted by configuration: SENT may not survive Redis");
            Ok(())
        }
        Some(why) => Err(err(format!(
            "{why}. Run Redis with `appendonly yes` and `appendfsync always`, keep the record in \
             PostgreSQL (--store postgres --presence redis), or accept the loss explicitly \
             (--redis-accept-data-loss)"
        ))),
    }
}
