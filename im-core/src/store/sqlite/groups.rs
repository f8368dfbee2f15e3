//! SQLite [`GroupStore`], with a write-through cache of member lists (a
//! send to a group of 5,000 reads its members from memory, not disk).

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::cache::Cached;
use super::{CachedExt, Db, db_err, i64_of};
use crate::model::*;
use crate::store::GroupStore;
use crate::{Error, Result};

/// Groups whose member lists are cached.
const CACHED_GROUPS: usize = 10_000;

/// SQLite [`GroupStore`].
#[derive(Debug, Clone)]
pub struct SqliteGroups {
    db: Arc<Db>,
    members: Arc<Cached<GroupId, Arc<Vec<Member>>>>,
}

impl SqliteGroups {
    /// The group store of a database.
    pub fn new(db: Arc<Db>) -> Self {
        SqliteGroups {
            db,
            members: Arc::new(Cached::new(CACHED_GROUPS)),
        }
    }

    /// Runs a write that changes `group`'s members, with the cache dropped
    /// around it.
    async fn write_group<R: Send + 'static>(
        &self,
        group: &GroupId,
        f: impl FnOnce(&Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        self.members.invalidate(group);
        let r = self.db.write(f).await;
        self.members.invalidate(group);
        r
    }

    async fn cached_members(&self, group: &GroupId) -> Result<Arc<Vec<Member>>> {
        if let Some(m) = self.members.get(group) {
            return Ok(m);
        }
        let seen = self.members.generation();
        let g = group.clone();
        let members = Arc::new(
            self.db
                .read(move |c| {
                    let mut stmt = c
                        .prepare_cached("SELECT user, role, joined_ms FROM group_members WHERE group_id = ?1 ORDER BY rowid")
                        .map_err(db_err)?;
                    let rows = stmt.query_map(params![g.as_str()], row_to_member).map_err(db_err)?;
                    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
                })
                .await?,
        );
        self.members.fill(group.clone(), members.clone(), seen);
        Ok(members)
    }
}

fn row_to_group(r: &rusqlite::Row<'_>) -> rusqlite::Result<Group> {
    Ok(Group {
        id: GroupId::new(r.get::<_, String>(0)?),
        name: r.get(1)?,
        avatar: r.get(2)?,
        owner: UserId::new(r.get::<_, String>(3)?),
        created_ms: r.get::<_, i64>(4)? as u64,
    })
}

fn row_to_member(r: &rusqlite::Row<'_>) -> rusqlite::Result<Member> {
    let role: String = r.get(1)?;
    Ok(Member {
        user: UserId::new(r.get::<_, String>(0)?),
        role: Role::from_name(&role).unwrap_or(Role::Member),
        joined_ms: r.get::<_, i64>(2)? as u64,
    })
}

fn get_group(c: &Connection, g: &str) -> Result<Option<Group>> {
    c.row(
        "SELECT id, name, avatar, owner, created_ms FROM groups WHERE id = ?1",
        params![g],
        row_to_group,
    )
    .optional()
    .map_err(db_err)
}

#[async_trait]
impl GroupStore for SqliteGroups {
    async fn create(&self, group: Group, members: Vec<Member>) -> Result<()> {
        let id = group.id.clone();
        self.write_group(&id, move |c| {
                if get_group(c, group.id.as_str())?.is_some() {
                    return Err(Error::Conflict(format!("group {} exists", group.id)));
                }
                c.exec(
                    "INSERT INTO groups (id, name, avatar, owner, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![group.id.as_str(), group.name, group.avatar, group.owner.as_str(), i64_of(group.created_ms)],
                )
                .map_err(db_err)?;
                for m in &members {
                    c.exec(
                        "INSERT OR IGNORE INTO group_members (group_id, user, role, joined_ms) VALUES (?1, ?2, ?3, ?4)",
                        params![group.id.as_str(), m.user.as_str(), m.role.as_str(), i64_of(m.joined_ms)],
                    )
                    .map_err(db_err)?;
                }
                Ok(())
            })
            .await
    }

    async fn dismiss(&self, group: &GroupId) -> Result<bool> {
        let g = group.clone();
        self.write_group(group, move |c| {
            c.exec(
                "DELETE FROM group_members WHERE group_id = ?1",
                params![g.as_str()],
            )
            .map_err(db_err)?;
            Ok(
                c.exec("DELETE FROM groups WHERE id = ?1", params![g.as_str()])
                    .map_err(db_err)?
                    > 0,
            )
        })
        .await
    }

    async fn get(&self, group: &GroupId) -> Result<Option<Group>> {
        let g = group.clone();
        self.db.read(move |c| get_group(c, g.as_str())).await
    }

    async fn update(
        &self,
        group: &GroupId,
        name: Option<String>,
        avatar: Option<String>,
    ) -> Result<Option<Group>> {
        let g = group.clone();
        self.db
            .write(move |c| {
                c.exec(
                    "UPDATE groups SET name = COALESCE(?2, name), avatar = COALESCE(?3, avatar) WHERE id = ?1",
                    params![g.as_str(), name, avatar],
                )
                .map_err(db_err)?;
                get_group(c, g.as_str())
            })
            .await
    }

    async fn add_members(&self, group: &GroupId, members: Vec<Member>) -> Result<Vec<UserId>> {
        let g = group.clone();
        self.write_group(group, move |c| {
                if get_group(c, g.as_str())?.is_none() {
                    return Err(Error::NotFound(format!("group {g}")));
                }
                let mut added = Vec::new();
                for m in members {
                    let n = c
                        .exec(
                            "INSERT OR IGNORE INTO group_members (group_id, user, role, joined_ms) VALUES (?1, ?2, ?3, ?4)",
                            params![g.as_str(), m.user.as_str(), m.role.as_str(), i64_of(m.joined_ms)],
                        )
                        .map_err(db_err)?;
                    if n > 0 {
                        added.push(m.user);
                    }
                }
                Ok(added)
            })
            .await
    }

    async fn remove_members(&self, group: &GroupId, users: &[UserId]) -> Result<Vec<UserId>> {
        let (g, users) = (group.clone(), users.to_vec());
        self.write_group(group, move |c| {
            if get_group(c, g.as_str())?.is_none() {
                return Err(Error::NotFound(format!("group {g}")));
            }
            // Report in membership order, as the other backends do.
            let mut stmt = c
                .prepare_cached("SELECT user FROM group_members WHERE group_id = ?1 ORDER BY rowid")
                .map_err(db_err)?;
            let current = stmt
                .query_map(params![g.as_str()], |r| {
                    Ok(UserId::new(r.get::<_, String>(0)?))
                })
                .map_err(db_err)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db_err)?;
            let mut removed = Vec::new();
            for u in current.into_iter().filter(|u| users.contains(u)) {
                c.exec(
                    "DELETE FROM group_members WHERE group_id = ?1 AND user = ?2",
                    params![g.as_str(), u.as_str()],
                )
                .map_err(db_err)?;
                removed.push(u);
            }
            Ok(removed)
        })
        .await
    }

    async fn set_role(&self, group: &GroupId, user: &UserId, role: Role) -> Result<bool> {
        let (g, u) = (group.clone(), user.clone());
        self.write_group(group, move |c| {
            c.exec(
                "UPDATE group_members SET role = ?3 WHERE group_id = ?1 AND user = ?2",
                params![g.as_str(), u.as_str(), role.as_str()],
            )
            .map(|n| n > 0)
            .map_err(db_err)
        })
        .await
    }

    async fn members(&self, group: &GroupId) -> Result<Vec<Member>> {
        Ok(Vec::clone(&*self.cached_members(group).await?))
    }

    async fn member(&self, group: &GroupId, user: &UserId) -> Result<Option<Member>> {
        let members = self.cached_members(group).await?;
        Ok(members.iter().find(|m| &m.user == user).cloned())
    }

    async fn groups_of(&self, user: &UserId) -> Result<Vec<GroupId>> {
        let u = user.clone();
        self.db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT group_id FROM group_members WHERE user = ?1 ORDER BY group_id",
                    )
                    .map_err(db_err)?;
                let rows = stmt
                    .query_map(params![u.as_str()], |r| {
                        Ok(GroupId::new(r.get::<_, String>(0)?))
                    })
                    .map_err(db_err)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
            })
            .await
    }
}
