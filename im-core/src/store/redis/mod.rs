//! Redis stores (feature `redis`): every store on one Redis, so any node
//! of a cluster can serve any user.
//!
//! Each operation that must be atomic is one Lua script, so a unit of work
//! is one round trip. Keys live under a namespace prefix (default
//! `imkit:`); `format` holds the layout's version ([`FORMAT`]), and a
//! server refuses a namespace written in another layout.
//!
//! | key | type | holds |
//! |-----|------|-------|
//! | `p:u:{user}` | hash | device → node |
//! | `p:n:{node}` | set | users with a device on the node |
//! | `p:alive:{node}` | string, TTL | the node's liveness (see [`RedisPresence::with_liveness`]) |
//! | `h:{conv}` | hash | seq → message (protobuf, seq and recall applied on read) |
//! | `hs:{conv}` | string | the conversation's max seq |
//! | `hu:{conv}` | hash | seq → messages up to it that count as unread |
//! | `hr:{conv}` | set | recalled seqs |
//! | `hrz:{conv}` | sorted set | recalled seqs that had counted as unread (score = seq) |
//! | `hc:{sender}` | hash | client message id → `conv seq` |
//! | `hid` | hash | message id → `conv seq` |
//! | `dv:{user}`, `uc:{user}` | set | devices; 1:1 conversations |
//! | `dl:{user}:{device}` | hash | conv → delivered seq |
//! | `rd:{conv}` | hash | user → read seq |
//! | `g:{group}`, `gm:{group}`, `gmo:{group}`, `ug:{user}` | hash, hash, zset, set | groups |
//! | `fr:`, `fi:`, `fo:`, `bl:{user}` | set | friends, incoming, outgoing, blocked |
//! | `acct:{user}` | hash | account: name, disabled, created_ms |
//! | `revoked:{token_id}` | string | a revoked token, expiring with it |

mod accounts;
mod contacts;
mod conversations;
mod devices;
mod groups;
mod journal;
mod persistence;
mod presence;
mod push;

pub use accounts::RedisAccounts;
pub use contacts::RedisContacts;
pub use conversations::RedisConversations;
pub use devices::RedisDevices;
pub use groups::RedisGroups;
pub use journal::RedisJournal;
pub use persistence::{Persistence, check_record};
pub use presence::RedisPresence;
pub use push::RedisPush;

/// The version of the key layout this build reads and writes. Version 2
/// replaced per-device inboxes with cursors (read diffusion) and added
/// running unread counts.
pub const FORMAT: u32 = 2;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use crate::store::Stores;
use crate::{Error, Result};

const BACKEND: &str = "redis";

pub(crate) fn err(e: impl std::fmt::Display) -> Error {
    Error::store(BACKEND, e)
}

/// A connection to Redis and the key namespace. Cheap to clone.
#[derive(Clone)]
pub struct RedisDb {
    client: redis::Client,
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

/// How long opening a connection to Redis may take before it counts as
/// failed (1 s).
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
/// How long a command may wait for its answer before it fails (2 s): a
/// Redis that is cut off must not stall sends, whose record may be
/// elsewhere, nor presence lookups.
pub const COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// The longest pause between reconnection attempts, in milliseconds (1 s).
pub const RECONNECT_MAX_DELAY_MS: u64 = 1_000;

impl RedisDb {
    /// Connects (with automatic reconnection) to `url`, e.g.
    /// `redis://127.0.0.1:6379`, with keys under `namespace`. Fails if the
    /// namespace holds data in another key layout than [`FORMAT`].
    pub async fn connect(url: &str, namespace: &str) -> Result<RedisDb> {
        let client = redis::Client::open(url).map_err(err)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(COMMAND_TIMEOUT)
            .set_max_delay(RECONNECT_MAX_DELAY_MS);
        let conn = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(err)?;
        let db = RedisDb {
            client,
            conn,
            ns: namespace.to_owned(),
        };
        db.check_format().await?;
        Ok(db)
    }

    /// Claims the namespace for [`FORMAT`], or refuses one in another.
    async fn check_format(&self) -> Result<()> {
        let mut c = self.connection();
        let key = self.key(&["format"]);
        let _: bool = c.set_nx(&key, FORMAT).await.map_err(err)?;
        let found: Option<u32> = c.get(&key).await.map_err(err)?;
        match found {
            Some(FORMAT) => Ok(()),
            other => Err(err(format!(
                "namespace {:?} holds data in key layout {other:?}, this build uses {FORMAT}; \
                 use a fresh namespace or Redis",
                self.ns
            ))),
        }
    }

    /// A command connection.
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// A new pub/sub connection to the same server (for the cluster bus,
    /// which needs a connection of its own to subscribe).
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub> {
        self.client.get_async_pubsub().await.map_err(err)
    }

    /// The namespace prefix.
    pub fn namespace(&self) -> &str {
        &self.ns
    }

    pub(crate) fn key(&self, parts: &[&str]) -> String {
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
        conversations: std::sync::Arc::new(RedisConversations(db.clone())),
        devices: std::sync::Arc::new(RedisDevices(db.clone())),
        groups: std::sync::Arc::new(RedisGroups(db.clone())),
        contacts: std::sync::Arc::new(RedisContacts(db.clone())),
        accounts: std::sync::Arc::new(RedisAccounts(db.clone())),
        journal: std::sync::Arc::new(RedisJournal(db.clone())),
        push: std::sync::Arc::new(RedisPush(db)),
    }
}
