//! SQLite [`DeviceStore`]. Every write goes through this store (one
//! process owns the database), so each user's list is cached: logging in
//! again with a known device costs no write and no read.

use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use rusqlite::params;

use super::{CachedExt, Db, db_err, i64_of};
use crate::Result;
use crate::model::*;
use crate::store::{DeviceInfo, DeviceStore, Registered};

/// Users whose device lists are cached before the cache starts over.
const CACHED_USERS: usize = 100_000;

type Cache = std::collections::HashMap<UserId, Vec<DeviceInfo>, foldhash::fast::RandomState>;

/// SQLite [`DeviceStore`].
#[derive(Debug, Clone)]
pub struct SqliteDevices {
    db: Arc<Db>,
    known: Arc<Mutex<Cache>>,
}

impl SqliteDevices {
    /// The device store of a database.
    pub fn new(db: Arc<Db>) -> Self {
        SqliteDevices {
            db,
            known: Arc::default(),
        }
    }
}

#[async_trait]
impl DeviceStore for SqliteDevices {
    async fn register(
        &self,
        user: &UserId,
        device: &DeviceId,
        now_ms: u64,
        max: usize,
    ) -> Result<Registered> {
        if self
            .known
            .lock()
            .get(user)
            .is_some_and(|d| d.iter().any(|d| d.device == *device))
        {
            return Ok(Registered::Known);
        }
        let (u, d) = (user.clone(), device.clone());
        // The one writer runs this whole: the count and the insert cannot
        // interleave with another registration.
        let registered = self
            .db
            .write(move |c| {
                let known = c
                    .row(
                        "SELECT COUNT(*) FROM devices WHERE user = ?1 AND device = ?2",
                        params![u.as_str(), d.as_str()],
                        |r| r.get::<_, i64>(0),
                    )
                    .map_err(db_err)?;
                if known > 0 {
                    return Ok(Registered::Known);
                }
                let count = c
                    .row(
                        "SELECT COUNT(*) FROM devices WHERE user = ?1",
                        params![u.as_str()],
                        |r| r.get::<_, i64>(0),
                    )
                    .map_err(db_err)?;
                if usize::try_from(count).unwrap_or(usize::MAX) >= max {
                    return Ok(Registered::Full);
                }
                c.exec(
                    "INSERT INTO devices (user, device, first_seen_ms) VALUES (?1, ?2, ?3)",
                    params![u.as_str(), d.as_str(), i64_of(now_ms)],
                )
                .map_err(db_err)?;
                Ok(Registered::New)
            })
            .await?;
        if registered == Registered::New {
            self.known.lock().remove(user);
        }
        Ok(registered)
    }

    async fn devices(&self, user: &UserId) -> Result<Vec<DeviceInfo>> {
        if let Some(d) = self.known.lock().get(user) {
            return Ok(d.clone());
        }
        let u = user.clone();
        let devices = self
            .db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT device, first_seen_ms FROM devices WHERE user = ?1
                         ORDER BY first_seen_ms, device",
                    )
                    .map_err(db_err)?;
                let rows = stmt
                    .query_map(params![u.as_str()], |r| {
                        Ok(DeviceInfo {
                            device: DeviceId::new(r.get::<_, String>(0)?),
                            first_seen_ms: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                        })
                    })
                    .map_err(db_err)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
            })
            .await?;
        let mut known = self.known.lock();
        if known.len() >= CACHED_USERS {
            known.clear();
        }
        known.insert(user.clone(), devices.clone());
        Ok(devices)
    }

    async fn remove(&self, user: &UserId, device: &DeviceId) -> Result<bool> {
        let (u, d) = (user.clone(), device.clone());
        let removed = self
            .db
            .write(move |c| {
                c.exec(
                    "DELETE FROM devices WHERE user = ?1 AND device = ?2",
                    params![u.as_str(), d.as_str()],
                )
                .map(|n| n > 0)
                .map_err(db_err)
            })
            .await?;
        self.known.lock().remove(user);
        Ok(removed)
    }
}
