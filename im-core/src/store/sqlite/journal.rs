//! SQLite [`JournalStore`]: the `journal` table. Units write their records
//! in the writer's transaction ([`record`]); ids come from `AUTOINCREMENT`,
//! so they grow in commit order and are never reused after a take.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, params};

use super::{CachedExt, Db, db_err, i64_of};
use crate::Result;
use crate::store::{JournalRecord, JournalStore};

/// Writes a record inside the current transaction.
pub(super) fn record(c: &Connection, key: &str, seq: u64, payload: &[u8]) -> Result<()> {
    c.exec(
        "INSERT INTO journal (key, seq, payload) VALUES (?1, ?2, ?3)",
        params![key, i64_of(seq), payload],
    )
    .map(drop)
    .map_err(db_err)
}

/// SQLite [`JournalStore`].
#[derive(Debug, Clone)]
pub struct SqliteJournal {
    db: Arc<Db>,
}

impl SqliteJournal {
    /// The journal of a database.
    pub fn new(db: Arc<Db>) -> Self {
        SqliteJournal { db }
    }
}

#[async_trait]
impl JournalStore for SqliteJournal {
    async fn put(&self, key: &str, payload: Vec<u8>) -> Result<()> {
        let key = key.to_owned();
        self.db.write(move |c| record(c, &key, 0, &payload)).await
    }

    async fn read(&self, after: u64, limit: usize) -> Result<Vec<JournalRecord>> {
        self.db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT id, key, seq, payload FROM journal WHERE id > ?1 ORDER BY id LIMIT ?2",
                    )
                    .map_err(db_err)?;
                let rows = stmt
                    .query_map(params![i64_of(after), i64_of(limit as u64)], |r| {
                        Ok(JournalRecord {
                            id: r.get::<_, i64>(0)? as u64,
                            key: r.get(1)?,
                            seq: r.get::<_, i64>(2)? as u64,
                            payload: r.get(3)?,
                        })
                    })
                    .map_err(db_err)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
            })
            .await
    }

    async fn take(&self, ids: &[u64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        // One statement for the batch: the ids as a JSON array.
        let list = serde_json::to_string(ids).map_err(db_err)?;
        self.db
            .write(move |c| {
                c.exec(
                    "DELETE FROM journal WHERE id IN (SELECT value FROM json_each(?1))",
                    params![list],
                )
                .map(drop)
                .map_err(db_err)
            })
            .await
    }

    async fn pending(&self) -> Result<u64> {
        self.db
            .read(|c| {
                c.row("SELECT COUNT(*) FROM journal", [], |r| r.get::<_, i64>(0))
                    .map(|n| n as u64)
                    .map_err(db_err)
            })
            .await
    }

    async fn lease(&self, _holder: &str, _ttl: Duration) -> Result<bool> {
        // One process owns the file.
        Ok(true)
    }
}
