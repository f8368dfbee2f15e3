//! SQLite [`PushStore`]: tables `push_tokens` (one row per device with a
//! token) and `push_prefs`.

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{CachedExt, Db, db_err};
use crate::Result;
use crate::model::{DeviceId, UserId};
use crate::store::{DeviceToken, PushProfile, PushStore, PushToken};

/// SQLite [`PushStore`].
#[derive(Debug, Clone)]
pub struct SqlitePush {
    db: Arc<Db>,
}

impl SqlitePush {
    /// The push store of a database.
    pub fn new(db: Arc<Db>) -> Self {
        SqlitePush { db }
    }
}

#[async_trait]
impl PushStore for SqlitePush {
    async fn set_token(&self, user: &UserId, device: &DeviceId, token: PushToken) -> Result<()> {
        let (u, d) = (user.clone(), device.clone());
        self.db
            .write(move |c| {
                c.exec(
                    "INSERT INTO push_tokens (user, device, provider, platform, token)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (user, device) DO UPDATE SET provider = excluded.provider,
                        platform = excluded.platform, token = excluded.token",
                    params![
                        u.as_str(),
                        d.as_str(),
                        token.provider,
                        token.platform,
                        token.token
                    ],
                )
                .map(drop)
                .map_err(db_err)
            })
            .await
    }

    async fn remove_token(
        &self,
        user: &UserId,
        device: &DeviceId,
        only: Option<&str>,
    ) -> Result<bool> {
        let (u, d, only) = (user.clone(), device.clone(), only.map(str::to_owned));
        self.db
            .write(move |c| {
                c.exec(
                    "DELETE FROM push_tokens WHERE user = ?1 AND device = ?2
                        AND (?3 IS NULL OR token = ?3)",
                    params![u.as_str(), d.as_str(), only],
                )
                .map(|n| n > 0)
                .map_err(db_err)
            })
            .await
    }

    async fn set_hide_content(&self, user: &UserId, hide: bool) -> Result<()> {
        let u = user.clone();
        self.db
            .write(move |c| {
                c.exec(
                    "INSERT INTO push_prefs (user, hide_content) VALUES (?1, ?2)
                     ON CONFLICT (user) DO UPDATE SET hide_content = excluded.hide_content",
                    params![u.as_str(), hide],
                )
                .map(drop)
                .map_err(db_err)
            })
            .await
    }

    async fn profiles(&self, users: &[UserId]) -> Result<Vec<PushProfile>> {
        let users = users.to_vec();
        self.db
            .read(move |c| {
                let mut tokens = c
                    .prepare_cached(
                        "SELECT device, provider, platform, token FROM push_tokens
                         WHERE user = ?1 ORDER BY device",
                    )
                    .map_err(db_err)?;
                let mut out = Vec::new();
                for user in users {
                    let found = tokens
                        .query_map(params![user.as_str()], |r| {
                            Ok(DeviceToken {
                                device: DeviceId::new(r.get::<_, String>(0)?),
                                token: PushToken {
                                    provider: r.get(1)?,
                                    platform: r.get(2)?,
                                    token: r.get(3)?,
                                },
                            })
                        })
                        .map_err(db_err)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                        .map_err(db_err)?;
                    if found.is_empty() {
                        continue;
                    }
                    let hide: Option<bool> = c
                        .row(
                            "SELECT hide_content FROM push_prefs WHERE user = ?1",
                            params![user.as_str()],
                            |r| r.get(0),
                        )
                        .optional()
                        .map_err(db_err)?;
                    out.push(PushProfile {
                        user,
                        hide_content: hide.unwrap_or(false),
                        tokens: found,
                    });
                }
                Ok(out)
            })
            .await
    }
}
