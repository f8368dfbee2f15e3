//! PostgreSQL [`PushStore`]: tables `push_tokens` and `push_prefs`.

use std::sync::Arc;

use async_trait::async_trait;

use super::{PgDb, pg_err};
use crate::Result;
use crate::model::{DeviceId, UserId};
use crate::store::{DeviceToken, PushProfile, PushStore, PushToken};

/// PostgreSQL [`PushStore`].
#[derive(Debug, Clone)]
pub struct PostgresPush {
    db: Arc<PgDb>,
}

impl PostgresPush {
    /// The push store of a database.
    pub fn new(db: Arc<PgDb>) -> Self {
        PostgresPush { db }
    }
}

#[async_trait]
impl PushStore for PostgresPush {
    async fn set_token(&self, user: &UserId, device: &DeviceId, token: PushToken) -> Result<()> {
        let c = self.db.conn().await?;
        c.execute(
            "INSERT INTO push_tokens (\"user\", device, provider, platform, token)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (\"user\", device) DO UPDATE SET provider = excluded.provider,
                platform = excluded.platform, token = excluded.token",
            &[
                &user.as_str(),
                &device.as_str(),
                &token.provider,
                &token.platform,
                &token.token,
            ],
        )
        .await
        .map_err(pg_err)?;
        Ok(())
    }

    async fn remove_token(
        &self,
        user: &UserId,
        device: &DeviceId,
        only: Option<&str>,
    ) -> Result<bool> {
        let c = self.db.conn().await?;
        let n = c
            .execute(
                "DELETE FROM push_tokens WHERE \"user\" = $1 AND device = $2
                    AND ($3::text IS NULL OR token = $3)",
                &[&user.as_str(), &device.as_str(), &only],
            )
            .await
            .map_err(pg_err)?;
        Ok(n > 0)
    }

    async fn set_hide_content(&self, user: &UserId, hide: bool) -> Result<()> {
        let c = self.db.conn().await?;
        c.execute(
            "INSERT INTO push_prefs (\"user\", hide_content) VALUES ($1, $2)
             ON CONFLICT (\"user\") DO UPDATE SET hide_content = excluded.hide_content",
            &[&user.as_str(), &hide],
        )
        .await
        .map_err(pg_err)?;
        Ok(())
    }

    async fn profiles(&self, users: &[UserId]) -> Result<Vec<PushProfile>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<&str> = users.iter().map(UserId::as_str).collect();
        let c = self.db.conn().await?;
        let rows = c
            .query(
                "SELECT t.\"user\", t.device, t.provider, t.platform, t.token,
                        coalesce(p.hide_content, false)
                 FROM push_tokens t LEFT JOIN push_prefs p ON p.\"user\" = t.\"user\"
                 WHERE t.\"user\" = ANY($1)
                 ORDER BY t.\"user\", t.device",
                &[&names],
            )
            .await
            .map_err(pg_err)?;
        let mut by_user: std::collections::HashMap<String, PushProfile> =
            std::collections::HashMap::new();
        for r in rows {
            let user: String = r.try_get(0).map_err(pg_err)?;
            let token = DeviceToken {
                device: DeviceId::new(r.try_get::<_, String>(1).map_err(pg_err)?),
                token: PushToken {
                    provider: r.try_get(2).map_err(pg_err)?,
                    platform: r.try_get(3).map_err(pg_err)?,
                    token: r.try_get(4).map_err(pg_err)?,
                },
            };
            let hide: bool = r.try_get(5).map_err(pg_err)?;
            by_user
                .entry(user.clone())
                .or_insert_with(|| PushProfile {
                    user: UserId::new(user),
                    hide_content: hide,
                    tokens: Vec::new(),
                })
                .tokens
                .push(token);
        }
        Ok(users
            .iter()
            .filter_map(|u| by_user.remove(u.as_str()))
            .collect())
    }
}
