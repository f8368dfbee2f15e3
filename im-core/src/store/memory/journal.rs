//! In-memory [`JournalStore`]: records in id order under one mutex.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::Result;
use crate::store::{JournalRecord, JournalStore};

/// In-memory [`JournalStore`]. [`super::MemoryConversations`] writes the
/// records of its units here while it holds the conversation's lock, so a
/// conversation's records are numbered in the order they happened.
#[derive(Debug, Default)]
pub struct MemoryJournal {
    inner: Mutex<Records>,
}

#[derive(Debug, Default)]
struct Records {
    last_id: u64,
    by_id: BTreeMap<u64, JournalRecord>,
}

impl MemoryJournal {
    /// Appends a record; called with the conversation's lock held.
    pub(crate) fn append(&self, key: &str, seq: u64, payload: Vec<u8>) {
        let mut r = self.inner.lock();
        r.last_id += 1;
        let id = r.last_id;
        r.by_id.insert(
            id,
            JournalRecord {
                id,
                key: key.to_owned(),
                seq,
                payload,
            },
        );
    }
}

#[async_trait]
impl JournalStore for MemoryJournal {
    async fn put(&self, key: &str, payload: Vec<u8>) -> Result<()> {
        self.append(key, 0, payload);
        Ok(())
    }

    async fn read(&self, after: u64, limit: usize) -> Result<Vec<JournalRecord>> {
        let r = self.inner.lock();
        Ok(r.by_id
            .range(after.saturating_add(1)..)
            .take(limit)
            .map(|(_, rec)| rec.clone())
            .collect())
    }

    async fn take(&self, ids: &[u64]) -> Result<()> {
        let mut r = self.inner.lock();
        for id in ids {
            r.by_id.remove(id);
        }
        Ok(())
    }

    async fn pending(&self) -> Result<u64> {
        Ok(self.inner.lock().by_id.len() as u64)
    }

    async fn lease(&self, _holder: &str, _ttl: Duration) -> Result<bool> {
        Ok(true)
    }
}
