//! PostgreSQL [`GroupStore`]. Members keep their join order through a
//! serial `position`; adding and removing many is one statement each.

use std::sync::Arc;

use async_trait::async_trait;

use super::{PgDb, i64_of, pg_err, u64_of};
use crate::model::*;
use crate::store::GroupStore;
use crate::{Error, Result};

/// PostgreSQL [`GroupStore`].
#[derive(Debug, Clone)]
pub struct PostgresGroups {
    db: Arc<PgDb>,
}

impl PostgresGroups {
    /// The group store of a database.
    pub fn new(db: Arc<PgDb>) -> Self {
        PostgresGroups { db }
    }
}

const ADD: &str = "INSERT INTO group_members (group_id, \"user\", role, joined_ms)
     SELECT $1, x.u, x.r, x.j FROM unnest($2::text[], $3::text[], $4::bigint[]) WITH ORDINALITY AS x(u, r, j, i)
     ORDER BY x.i
     ON CONFLICT (group_id, \"user\") DO NOTHING
     RETURNING \"user\"";

fn role_of(name: &str) -> Result<Role> {
    Role::from_name(name).ok_or_else(|| pg_err(format!("unknown role {name:?}")))
}

fn group_of(r: &tokio_postgres::Row) -> Result<Group> {
    Ok(Group {
        id: GroupId::new(r.try_get::<_, String>(0).map_err(pg_err)?),
        name: r.try_get(1).map_err(pg_err)?,
        avatar: r.try_get(2).map_err(pg_err)?,
        owner: UserId::new(r.try_get::<_, String>(3).map_err(pg_err)?),
        created_ms: u64_of(r.try_get(4).map_err(pg_err)?),
    })
}

fn member_of(r: &tokio_postgres::Row) -> Result<Member> {
    Ok(Member {
        user: UserId::new(r.try_get::<_, String>(0).map_err(pg_err)?),
        role: role_of(r.try_get(1).map_err(pg_err)?)?,
        joined_ms: u64_of(r.try_get(2).map_err(pg_err)?),
    })
}

/// The members' columns as arrays, for [`ADD`].
fn columns(members: &[Member]) -> (Vec<&str>, Vec<&str>, Vec<i64>) {
    (
        members.iter().map(|m| m.user.as_str()).collect(),
        members.iter().map(|m| m.role.as_str()).collect(),
        members.iter().map(|m| i64_of(m.joined_ms)).collect(),
    )
}

fn users_of(rows: &[tokio_postgres::Row]) -> Result<Vec<UserId>> {
    rows.iter()
        .map(|r| r.try_get::<_, String>(0).map(UserId::new).map_err(pg_err))
        .collect()
}

#[async_trait]
impl GroupStore for PostgresGroups {
    async fn create(&self, group: Group, members: Vec<Member>) -> Result<()> {
        let mut c = self.db.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        let inserted = tx
            .execute(
                "INSERT INTO groups (id, name, avatar, owner, created_ms) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (id) DO NOTHING",
                &[
                    &group.id.as_str(),
                    &group.name,
                    &group.avatar,
                    &group.owner.as_str(),
                    &i64_of(group.created_ms),
                ],
            )
            .await
            .map_err(pg_err)?;
        if inserted == 0 {
            return Err(Error::Conflict(format!("group {} exists", group.id)));
        }
        let (users, roles, joined) = columns(&members);
        tx.query(ADD, &[&group.id.as_str(), &users, &roles, &joined])
            .await
            .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)
    }

    async fn dismiss(&self, group: &GroupId) -> Result<bool> {
        let mut c = self.db.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        let n = tx
            .execute("DELETE FROM groups WHERE id = $1", &[&group.as_str()])
            .await
            .map_err(pg_err)?;
        tx.execute(
            "DELETE FROM group_members WHERE group_id = $1",
            &[&group.as_str()],
        )
        .await
        .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)?;
        Ok(n > 0)
    }

    async fn get(&self, group: &GroupId) -> Result<Option<Group>> {
        let c = self.db.conn().await?;
        let stmt = c
            .prepare_cached("SELECT id, name, avatar, owner, created_ms FROM groups WHERE id = $1")
            .await
            .map_err(pg_err)?;
        c.query_opt(&stmt, &[&group.as_str()])
            .await
            .map_err(pg_err)?
            .as_ref()
            .map(group_of)
            .transpose()
    }

    async fn update(
        &self,
        group: &GroupId,
        name: Option<String>,
        avatar: Option<String>,
    ) -> Result<Option<Group>> {
        let c = self.db.conn().await?;
        c.query_opt(
            "UPDATE groups SET name = coalesce($2, name), avatar = coalesce($3, avatar) WHERE id = $1
             RETURNING id, name, avatar, owner, created_ms",
            &[&group.as_str(), &name, &avatar],
        )
        .await
        .map_err(pg_err)?
        .as_ref()
        .map(group_of)
        .transpose()
    }

    async fn add_members(&self, group: &GroupId, members: Vec<Member>) -> Result<Vec<UserId>> {
        let mut c = self.db.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        // The group's row, shared-locked: a dismissal waits until we are done.
        if tx
            .query_opt(
                "SELECT 1 FROM groups WHERE id = $1 FOR SHARE",
                &[&group.as_str()],
            )
            .await
            .map_err(pg_err)?
            .is_none()
        {
            return Err(Error::NotFound(format!("group {group}")));
        }
        let (users, roles, joined) = columns(&members);
        let rows = tx
            .query(ADD, &[&group.as_str(), &users, &roles, &joined])
            .await
            .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)?;
        users_of(&rows)
    }

    async fn remove_members(&self, group: &GroupId, users: &[UserId]) -> Result<Vec<UserId>> {
        let names: Vec<&str> = users.iter().map(UserId::as_str).collect();
        let mut c = self.db.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        if tx
            .query_opt(
                "SELECT 1 FROM groups WHERE id = $1 FOR SHARE",
                &[&group.as_str()],
            )
            .await
            .map_err(pg_err)?
            .is_none()
        {
            return Err(Error::NotFound(format!("group {group}")));
        }
        let mut rows = tx
            .query(
                "DELETE FROM group_members WHERE group_id = $1 AND \"user\" = ANY($2)
                 RETURNING \"user\", position",
                &[&group.as_str(), &names],
            )
            .await
            .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)?;
        rows.sort_by_key(|r| r.try_get::<_, i64>(1).unwrap_or(0));
        users_of(&rows)
    }

    async fn set_role(&self, group: &GroupId, user: &UserId, role: Role) -> Result<bool> {
        let c = self.db.conn().await?;
        let n = c
            .execute(
                "UPDATE group_members SET role = $3 WHERE group_id = $1 AND \"user\" = $2",
                &[&group.as_str(), &user.as_str(), &role.as_str()],
            )
            .await
            .map_err(pg_err)?;
        Ok(n > 0)
    }

    async fn members(&self, group: &GroupId) -> Result<Vec<Member>> {
        let c = self.db.conn().await?;
        let stmt = c
            .prepare_cached(
                "SELECT \"user\", role, joined_ms FROM group_members WHERE group_id = $1 ORDER BY position",
            )
            .await
            .map_err(pg_err)?;
        c.query(&stmt, &[&group.as_str()])
            .await
            .map_err(pg_err)?
            .iter()
            .map(member_of)
            .collect()
    }

    async fn member(&self, group: &GroupId, user: &UserId) -> Result<Option<Member>> {
        let c = self.db.conn().await?;
        let stmt = c
            .prepare_cached(
                "SELECT \"user\", role, joined_ms FROM group_members WHERE group_id = $1 AND \"user\" = $2",
            )
            .await
            .map_err(pg_err)?;
        c.query_opt(&stmt, &[&group.as_str(), &user.as_str()])
            .await
            .map_err(pg_err)?
            .as_ref()
            .map(member_of)
            .transpose()
    }

    async fn groups_of(&self, user: &UserId) -> Result<Vec<GroupId>> {
        let c = self.db.conn().await?;
        let stmt = c
            .prepare_cached(
                "SELECT group_id FROM group_members WHERE \"user\" = $1 ORDER BY group_id",
            )
            .await
            .map_err(pg_err)?;
        c.query(&stmt, &[&user.as_str()])
            .await
            .map_err(pg_err)?
            .iter()
            .map(|r| r.try_get::<_, String>(0).map(GroupId::new).map_err(pg_err))
            .collect()
    }
}
