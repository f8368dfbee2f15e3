//! PostgreSQL [`DeviceStore`]. Registration counts and inserts under an
//! advisory lock on the user, so nodes registering devices of one user
//! at once never take them past the limit.

use std::sync::Arc;

use async_trait::async_trait;

use super::{PgDb, i64_of, pg_err, u64_of};
use crate::Result;
use crate::model::*;
use crate::store::{DeviceInfo, DeviceStore, Registered};

/// PostgreSQL [`DeviceStore`].
#[derive(Debug, Clone)]
pub struct PostgresDevices {
    db: Arc<PgDb>,
}

impl PostgresDevices {
    /// The device store of a database.
    pub fn new(db: Arc<PgDb>) -> Self {
        PostgresDevices { db }
    }
}

#[async_trait]
impl DeviceStore for PostgresDevices {
    async fn register(
        &self,
        user: &UserId,
        device: &DeviceId,
        now_ms: u64,
        max: usize,
    ) -> Result<Registered> {
        let mut c = self.db.conn().await?;
        let known = c
            .prepare_cached("SELECT 1 FROM devices WHERE \"user\" = $1 AND device = $2")
            .await
            .map_err(pg_err)?;
        if c.query_opt(&known, &[&user.as_str(), &device.as_str()])
            .await
            .map_err(pg_err)?
            .is_some()
        {
            return Ok(Registered::Known);
        }
        let tx = c.transaction().await.map_err(pg_err)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('imkit devices ' || $1))",
            &[&user.as_str()],
        )
        .await
        .map_err(pg_err)?;
        let rows = tx
            .query(
                "SELECT device FROM devices WHERE \"user\" = $1",
                &[&user.as_str()],
            )
            .await
            .map_err(pg_err)?;
        let mut have = 0;
        for r in &rows {
            if r.try_get::<_, &str>(0).map_err(pg_err)? == device.as_str() {
                return Ok(Registered::Known);
            }
            have += 1;
        }
        if have >= max {
            return Ok(Registered::Full);
        }
        tx.execute(
            "INSERT INTO devices (\"user\", device, first_seen_ms) VALUES ($1, $2, $3)",
            &[&user.as_str(), &device.as_str(), &i64_of(now_ms)],
        )
        .await
        .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)?;
        Ok(Registered::New)
    }

    async fn devices(&self, user: &UserId) -> Result<Vec<DeviceInfo>> {
        let c = self.db.conn().await?;
        let stmt = c
            .prepare_cached(
                "SELECT device, first_seen_ms FROM devices WHERE \"user\" = $1 ORDER BY first_seen_ms, device",
            )
            .await
            .map_err(pg_err)?;
        c.query(&stmt, &[&user.as_str()])
            .await
            .map_err(pg_err)?
            .iter()
            .map(|r| {
                Ok(DeviceInfo {
                    device: DeviceId::new(r.try_get::<_, String>(0).map_err(pg_err)?),
                    first_seen_ms: u64_of(r.try_get(1).map_err(pg_err)?),
                })
            })
            .collect()
    }

    async fn remove(&self, user: &UserId, device: &DeviceId) -> Result<bool> {
        let c = self.db.conn().await?;
        let n = c
            .execute(
                "DELETE FROM devices WHERE \"user\" = $1 AND device = $2",
                &[&user.as_str(), &device.as_str()],
            )
            .await
            .map_err(pg_err)?;
        Ok(n > 0)
    }
}
