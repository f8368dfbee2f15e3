//! PostgreSQL [`ContactStore`]. A friend request and its acceptance run
//! under an advisory lock on the pair, so two users asking each other at
//! once from two nodes become friends exactly once.

use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::Object;

use super::{PgDb, pg_err};
use crate::Result;
use crate::model::*;
use crate::store::ContactStore;

/// PostgreSQL [`ContactStore`].
#[derive(Debug, Clone)]
pub struct PostgresContacts {
    db: Arc<PgDb>,
}

impl PostgresContacts {
    /// The contact store of a database.
    pub fn new(db: Arc<PgDb>) -> Self {
        PostgresContacts { db }
    }
}

const LOCK_PAIR: &str = "SELECT pg_advisory_xact_lock(hashtext('imkit contacts ' || least($1, $2) || ' ' || greatest($1, $2)))";
const BEFRIEND: [&str; 2] = [
    "DELETE FROM friend_requests WHERE (from_user = $1 AND to_user = $2) OR (from_user = $2 AND to_user = $1)",
    "INSERT INTO friends (\"user\", other) VALUES ($1, $2), ($2, $1) ON CONFLICT DO NOTHING",
];

async fn users_where(c: &Object, sql: &str, user: &UserId) -> Result<Vec<UserId>> {
    let stmt = c.prepare_cached(sql).await.map_err(pg_err)?;
    c.query(&stmt, &[&user.as_str()])
        .await
        .map_err(pg_err)?
        .iter()
        .map(|r| r.try_get::<_, String>(0).map(UserId::new).map_err(pg_err))
        .collect()
}

async fn exists(
    c: &deadpool_postgres::Transaction<'_>,
    sql: &str,
    a: &str,
    b: &str,
) -> Result<bool> {
    Ok(c.query_opt(sql, &[&a, &b]).await.map_err(pg_err)?.is_some())
}

#[async_trait]
impl ContactStore for PostgresContacts {
    async fn request(&self, from: &UserId, to: &UserId) -> Result<FriendRequestOutcome> {
        let (f, t) = (from.as_str(), to.as_str());
        let mut c = self.db.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        tx.execute(LOCK_PAIR, &[&f, &t]).await.map_err(pg_err)?;
        if exists(
            &tx,
            "SELECT 1 FROM friends WHERE \"user\" = $1 AND other = $2",
            f,
            t,
        )
        .await?
        {
            return Ok(FriendRequestOutcome::AlreadyFriends);
        }
        let outcome = if exists(
            &tx,
            "SELECT 1 FROM friend_requests WHERE from_user = $1 AND to_user = $2",
            t,
            f,
        )
        .await?
        {
            for sql in BEFRIEND {
                tx.execute(sql, &[&f, &t]).await.map_err(pg_err)?;
            }
            FriendRequestOutcome::BecameFriends
        } else {
            tx.execute(
                "INSERT INTO friend_requests (from_user, to_user) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&f, &t],
            )
            .await
            .map_err(pg_err)?;
            FriendRequestOutcome::Pending
        };
        tx.commit().await.map_err(pg_err)?;
        Ok(outcome)
    }

    async fn accept(&self, user: &UserId, from: &UserId) -> Result<bool> {
        let (u, f) = (user.as_str(), from.as_str());
        let mut c = self.db.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        tx.execute(LOCK_PAIR, &[&u, &f]).await.map_err(pg_err)?;
        if !exists(
            &tx,
            "SELECT 1 FROM friend_requests WHERE from_user = $1 AND to_user = $2",
            f,
            u,
        )
        .await?
        {
            return Ok(false);
        }
        for sql in BEFRIEND {
            tx.execute(sql, &[&u, &f]).await.map_err(pg_err)?;
        }
        tx.commit().await.map_err(pg_err)?;
        Ok(true)
    }

    async fn remove(&self, user: &UserId, other: &UserId) -> Result<bool> {
        let (u, o) = (user.as_str(), other.as_str());
        let mut c = self.db.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        tx.execute(LOCK_PAIR, &[&u, &o]).await.map_err(pg_err)?;
        let a = tx
            .execute(
                "DELETE FROM friends WHERE (\"user\" = $1 AND other = $2) OR (\"user\" = $2 AND other = $1)",
                &[&u, &o],
            )
            .await
            .map_err(pg_err)?;
        let b = tx.execute(BEFRIEND[0], &[&u, &o]).await.map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)?;
        Ok(a + b > 0)
    }

    async fn list(&self, user: &UserId) -> Result<ContactList> {
        let c = self.db.conn().await?;
        Ok(ContactList {
            friends: users_where(
                &c,
                "SELECT other FROM friends WHERE \"user\" = $1 ORDER BY other",
                user,
            )
            .await?,
            incoming: users_where(
                &c,
                "SELECT from_user FROM friend_requests WHERE to_user = $1 ORDER BY from_user",
                user,
            )
            .await?,
            outgoing: users_where(
                &c,
                "SELECT to_user FROM friend_requests WHERE from_user = $1 ORDER BY to_user",
                user,
            )
            .await?,
            blocked: users_where(
                &c,
                "SELECT other FROM blocks WHERE \"user\" = $1 ORDER BY other",
                user,
            )
            .await?,
        })
    }

    async fn block(&self, user: &UserId, other: &UserId) -> Result<()> {
        let c = self.db.conn().await?;
        c.execute(
            "INSERT INTO blocks (\"user\", other) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&user.as_str(), &other.as_str()],
        )
        .await
        .map_err(pg_err)?;
        Ok(())
    }

    async fn unblock(&self, user: &UserId, other: &UserId) -> Result<bool> {
        let c = self.db.conn().await?;
        let n = c
            .execute(
                "DELETE FROM blocks WHERE \"user\" = $1 AND other = $2",
                &[&user.as_str(), &other.as_str()],
            )
            .await
            .map_err(pg_err)?;
        Ok(n > 0)
    }

    async fn is_blocked(&self, user: &UserId, other: &UserId) -> Result<bool> {
        let c = self.db.conn().await?;
        let stmt = c
            .prepare_cached("SELECT 1 FROM blocks WHERE \"user\" = $1 AND other = $2")
            .await
            .map_err(pg_err)?;
        Ok(c.query_opt(&stmt, &[&user.as_str(), &other.as_str()])
            .await
            .map_err(pg_err)?
            .is_some())
    }

    async fn group_adds(&self, user: &UserId) -> Result<GroupAdds> {
        let c = self.db.conn().await?;
        let stmt = c
            .prepare_cached("SELECT friends_only FROM privacy WHERE \"user\" = $1")
            .await
            .map_err(pg_err)?;
        let friends_only = match c
            .query_opt(&stmt, &[&user.as_str()])
            .await
            .map_err(pg_err)?
        {
            Some(r) => r.try_get::<_, bool>(0).map_err(pg_err)?,
            None => false,
        };
        Ok(if friends_only {
            GroupAdds::FriendsOnly
        } else {
            GroupAdds::Anyone
        })
    }

    async fn set_group_adds(&self, user: &UserId, policy: GroupAdds) -> Result<()> {
        let c = self.db.conn().await?;
        c.execute(
            "INSERT INTO privacy (\"user\", friends_only) VALUES ($1, $2)
             ON CONFLICT (\"user\") DO UPDATE SET friends_only = excluded.friends_only",
            &[&user.as_str(), &(policy == GroupAdds::FriendsOnly)],
        )
        .await
        .map_err(pg_err)?;
        Ok(())
    }
}
