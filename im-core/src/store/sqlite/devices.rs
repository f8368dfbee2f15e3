//! SQLite [`DeviceStore`]. Devices only ever accrue and every write goes
//! through this store (one process owns the database), so each user's list
//! is cached: logging in again with a known device costs no write.

use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use rusqlite::params;

use super::{CachedExt, Db, db_err};
use crate::Result;
use crate::model::*;
use crate::store::DeviceStore;

/// Users whose device lists are cached before the cache starts over.
const CACHED_USERS: usize = 100_000;

type Cache = std::collections::HashMap<UserId, Vec<DeviceId>, foldhash::fast::RandomState>;

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
    async fn register(&self, user: &UserId, device: &DeviceId) -> Result<bool> {
        if self
            .known
            .lock()
            .get(user)
            .is_some_and(|d| d.contains(device))
        {
            return Ok(false);
        }
        let (u, d) = (user.clone(), device.clone());
        let inserted = self
            .db
            .write(move |c| {
                c.exec(
                    "INSERT OR IGNORE INTO devices (user, device) VALUES (?1, ?2)",
                    params![u.as_str(), d.as_str()],
                )
                .map(|n| n > 0)
                .map_err(db_err)
            })
            .await?;
        // Reload from the table so the cache holds every device.
        self.known.lock().remove(user);
        self.devices(user).await?;
        Ok(inserted)
    }

    async fn devices(&self, user: &UserId) -> Result<Vec<DeviceId>> {
        if let Some(d) = self.known.lock().get(user) {
            return Ok(d.clone());
        }
        let u = user.clone();
        let devices = self
            .db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached("SELECT device FROM devices WHERE user = ?1")
                    .map_err(db_err)?;
                let rows = stmt
                    .query_map(params![u.as_str()], |r| {
                        Ok(DeviceId::new(r.get::<_, String>(0)?))
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
}
