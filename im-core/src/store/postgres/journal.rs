//! PostgreSQL [`JournalStore`]: the `journal` table, written by the writer
//! in the units' transaction (under [`JOURNAL_LOCK`]), and a lease row that
//! names the one node reading it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::schema::JOURNAL_LOCK;
use super::{PgDb, i64_of, pg_err, u64_of};
use crate::Result;
use crate::store::{JournalRecord, JournalStore};

/// PostgreSQL [`JournalStore`].
#[derive(Debug, Clone)]
pub struct PostgresJournal {
    db: Arc<PgDb>,
}

impl PostgresJournal {
    /// The journal of a database.
    pub fn new(db: Arc<PgDb>) -> Self {
        PostgresJournal { db }
    }
}

#[async_trait]
impl JournalStore for PostgresJournal {
    async fn put(&self, key: &str, payload: Vec<u8>) -> Result<()> {
        let mut c = self.db.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        tx.batch_execute(JOURNAL_LOCK).await.map_err(pg_err)?;
        tx.execute(
            "INSERT INTO journal (key, seq, payload) VALUES ($1, 0, $2)",
            &[&key, &payload],
        )
        .await
        .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)
    }

    async fn read(&self, after: u64, limit: usize) -> Result<Vec<JournalRecord>> {
        let c = self.db.conn().await?;
        let rows = c
            .query(
                "SELECT id, key, seq, payload FROM journal WHERE id > $1 ORDER BY id LIMIT $2",
                &[&i64_of(after), &i64_of(limit as u64)],
            )
            .await
            .map_err(pg_err)?;
        rows.iter()
            .map(|r| {
                Ok(JournalRecord {
                    id: u64_of(r.try_get(0).map_err(pg_err)?),
                    key: r.try_get(1).map_err(pg_err)?,
                    seq: u64_of(r.try_get(2).map_err(pg_err)?),
                    payload: r.try_get(3).map_err(pg_err)?,
                })
            })
            .collect()
    }

    async fn take(&self, ids: &[u64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = ids.iter().map(|&i| i64_of(i)).collect();
        let c = self.db.conn().await?;
        c.execute("DELETE FROM journal WHERE id = ANY($1)", &[&ids])
            .await
            .map_err(pg_err)?;
        Ok(())
    }

    async fn pending(&self) -> Result<u64> {
        let c = self.db.conn().await?;
        let row = c
            .query_one("SELECT COUNT(*) FROM journal", &[])
            .await
            .map_err(pg_err)?;
        Ok(u64_of(row.try_get(0).map_err(pg_err)?))
    }

    async fn lease(&self, holder: &str, ttl: Duration) -> Result<bool> {
        let c = self.db.conn().await?;
        let secs = ttl.as_secs_f64().max(0.001);
        let row = c
            .query_opt(
                "INSERT INTO journal_lease (name, holder, until)
                 VALUES ('reader', $1, now() + make_interval(secs => $2::float8))
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
                 WHERE journal_lease.holder = excluded.holder OR journal_lease.until < now()
                 RETURNING holder",
                &[&holder, &secs],
            )
            .await
            .map_err(pg_err)?;
        Ok(row.is_some())
    }
}
