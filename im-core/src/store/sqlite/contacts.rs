//! SQLite [`ContactStore`], with a write-through cache of block lists (every
//! 1:1 send asks whether the recipient blocked the sender).

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::cache::Cached;
use super::{CachedExt, Db, db_err};
use crate::Result;
use crate::model::*;
use crate::store::ContactStore;

/// Users whose block lists are cached.
const CACHED_BLOCK_LISTS: usize = 100_000;

type BlockList = Arc<std::collections::HashSet<UserId, foldhash::fast::RandomState>>;

/// SQLite [`ContactStore`].
#[derive(Debug, Clone)]
pub struct SqliteContacts {
    db: Arc<Db>,
    blocked: Arc<Cached<UserId, BlockList>>,
    group_adds: Arc<Cached<UserId, GroupAdds>>,
}

impl SqliteContacts {
    /// The contact store of a database.
    pub fn new(db: Arc<Db>) -> Self {
        SqliteContacts {
            db,
            blocked: Arc::new(Cached::new(CACHED_BLOCK_LISTS)),
            group_adds: Arc::new(Cached::new(CACHED_BLOCK_LISTS)),
        }
    }

    async fn write_blocks<R: Send + 'static>(
        &self,
        user: &UserId,
        f: impl FnOnce(&Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        self.blocked.invalidate(user);
        let r = self.db.write(f).await;
        self.blocked.invalidate(user);
        r
    }
}

fn exists(c: &Connection, sql: &str, a: &str, b: &str) -> Result<bool> {
    c.row(sql, params![a, b], |_| Ok(()))
        .optional()
        .map(|r| r.is_some())
        .map_err(db_err)
}

fn users_where(c: &Connection, sql: &str, user: &str) -> Result<Vec<UserId>> {
    let mut stmt = c.prepare_cached(sql).map_err(db_err)?;
    let rows = stmt
        .query_map(params![user], |r| Ok(UserId::new(r.get::<_, String>(0)?)))
        .map_err(db_err)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
}

fn befriend(c: &Connection, a: &str, b: &str) -> Result<()> {
    c.exec(
        "DELETE FROM friend_requests WHERE (from_user = ?1 AND to_user = ?2) OR (from_user = ?2 AND to_user = ?1)",
        params![a, b],
    )
    .map_err(db_err)?;
    c.exec(
        "INSERT OR IGNORE INTO friends (user, other) VALUES (?1, ?2), (?2, ?1)",
        params![a, b],
    )
    .map_err(db_err)?;
    Ok(())
}

#[async_trait]
impl ContactStore for SqliteContacts {
    async fn request(&self, from: &UserId, to: &UserId) -> Result<FriendRequestOutcome> {
        let (from, to) = (from.clone(), to.clone());
        self.db
            .write(move |c| {
                let (f, t) = (from.as_str(), to.as_str());
                if exists(
                    c,
                    "SELECT 1 FROM friends WHERE user = ?1 AND other = ?2",
                    f,
                    t,
                )? {
                    return Ok(FriendRequestOutcome::AlreadyFriends);
                }
                if exists(
                    c,
                    "SELECT 1 FROM friend_requests WHERE from_user = ?1 AND to_user = ?2",
                    t,
                    f,
                )? {
                    befriend(c, f, t)?;
                    return Ok(FriendRequestOutcome::BecameFriends);
                }
                c.exec(
                    "INSERT OR IGNORE INTO friend_requests (from_user, to_user) VALUES (?1, ?2)",
                    params![f, t],
                )
                .map_err(db_err)?;
                Ok(FriendRequestOutcome::Pending)
            })
            .await
    }

    async fn accept(&self, user: &UserId, from: &UserId) -> Result<bool> {
        let (user, from) = (user.clone(), from.clone());
        self.db
            .write(move |c| {
                if !exists(
                    c,
                    "SELECT 1 FROM friend_requests WHERE from_user = ?1 AND to_user = ?2",
                    from.as_str(),
                    user.as_str(),
                )? {
                    return Ok(false);
                }
                befriend(c, user.as_str(), from.as_str())?;
                Ok(true)
            })
            .await
    }

    async fn remove(&self, user: &UserId, other: &UserId) -> Result<bool> {
        let (user, other) = (user.clone(), other.clone());
        self.db
            .write(move |c| {
                let a = c
                    .exec(
                        "DELETE FROM friends WHERE (user = ?1 AND other = ?2) OR (user = ?2 AND other = ?1)",
                        params![user.as_str(), other.as_str()],
                    )
                    .map_err(db_err)?;
                let b = c
                    .exec(
                        "DELETE FROM friend_requests WHERE (from_user = ?1 AND to_user = ?2) OR (from_user = ?2 AND to_user = ?1)",
                        params![user.as_str(), other.as_str()],
                    )
                    .map_err(db_err)?;
                Ok(a + b > 0)
            })
            .await
    }

    async fn list(&self, user: &UserId) -> Result<ContactList> {
        let user = user.clone();
        self.db
            .read(move |c| {
                let u = user.as_str();
                Ok(ContactList {
                    friends: users_where(c, "SELECT other FROM friends WHERE user = ?1 ORDER BY other", u)?,
                    incoming: users_where(c, "SELECT from_user FROM friend_requests WHERE to_user = ?1 ORDER BY from_user", u)?,
                    outgoing: users_where(c, "SELECT to_user FROM friend_requests WHERE from_user = ?1 ORDER BY to_user", u)?,
                    blocked: users_where(c, "SELECT other FROM blocks WHERE user = ?1 ORDER BY other", u)?,
                })
            })
            .await
    }

    async fn block(&self, user: &UserId, other: &UserId) -> Result<()> {
        let key = user.clone();
        let (user, other) = (user.clone(), other.clone());
        self.write_blocks(&key, move |c| {
            c.exec(
                "INSERT OR IGNORE INTO blocks (user, other) VALUES (?1, ?2)",
                params![user.as_str(), other.as_str()],
            )
            .map(drop)
            .map_err(db_err)
        })
        .await
    }

    async fn unblock(&self, user: &UserId, other: &UserId) -> Result<bool> {
        let key = user.clone();
        let (user, other) = (user.clone(), other.clone());
        self.write_blocks(&key, move |c| {
            c.exec(
                "DELETE FROM blocks WHERE user = ?1 AND other = ?2",
                params![user.as_str(), other.as_str()],
            )
            .map(|n| n > 0)
            .map_err(db_err)
        })
        .await
    }

    async fn is_blocked(&self, user: &UserId, other: &UserId) -> Result<bool> {
        if let Some(list) = self.blocked.get(user) {
            return Ok(list.contains(other));
        }
        let seen = self.blocked.generation();
        let u = user.clone();
        let list: BlockList = Arc::new(
            self.db
                .read(move |c| {
                    users_where(c, "SELECT other FROM blocks WHERE user = ?1", u.as_str())
                })
                .await?
                .into_iter()
                .collect(),
        );
        let blocked = list.contains(other);
        self.blocked.fill(user.clone(), list, seen);
        Ok(blocked)
    }

    async fn group_adds(&self, user: &UserId) -> Result<GroupAdds> {
        if let Some(policy) = self.group_adds.get(user) {
            return Ok(policy);
        }
        let seen = self.group_adds.generation();
        let u = user.clone();
        let friends_only = self
            .db
            .read(move |c| {
                c.row(
                    "SELECT group_adds FROM privacy WHERE user = ?1",
                    params![u.as_str()],
                    |r| r.get::<_, i64>(0),
                )
                .optional()
                .map_err(db_err)
            })
            .await?
            == Some(1);
        let policy = if friends_only {
            GroupAdds::FriendsOnly
        } else {
            GroupAdds::Anyone
        };
        self.group_adds.fill(user.clone(), policy, seen);
        Ok(policy)
    }

    async fn set_group_adds(&self, user: &UserId, policy: GroupAdds) -> Result<()> {
        let u = user.clone();
        let value = i64::from(policy == GroupAdds::FriendsOnly);
        self.group_adds.invalidate(user);
        let r = self
            .db
            .write(move |c| {
                c.exec(
                    "INSERT INTO privacy (user, group_adds) VALUES (?1, ?2)
                     ON CONFLICT (user) DO UPDATE SET group_adds = excluded.group_adds",
                    params![u.as_str(), value],
                )
                .map(|_| ())
                .map_err(db_err)
            })
            .await;
        self.group_adds.invalidate(user);
        r
    }
}
