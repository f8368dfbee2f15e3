//! The durable event journal: what happened, kept until an integration
//! (the server's webhooks) has handed it on.
//!
//! A record is written in the same transaction as what it reports: a
//! [`UnitOfWork`](super::UnitOfWork) may carry one
//! ([`UnitOfWork::journal`](super::UnitOfWork::journal)), which the
//! backend stores with the unit's seq ([`Committed::journal_seq`](super::Committed::journal_seq))
//! if, and only if, the unit wrote something. A crash therefore loses
//! neither a message nor its record, and a resend records nothing.
//! Events that are not units (contacts, logins) are [`JournalStore::put`]
//! just after their operation.
//!
//! Record ids grow in commit order, so a reader that walks ids upwards
//! sees the records of one conversation in the order they happened.
//! [`JournalStore::take`] removes what has been handed on; what is not
//! taken survives restarts. In a cluster, one node at a time holds the
//! reading lease ([`JournalStore::lease`]).

use std::time::Duration;

use async_trait::async_trait;

use crate::Result;

/// One journal record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRecord {
    /// Its id: unique, growing in commit order.
    pub id: u64,
    /// What orders it: its conversation (or, for events outside
    /// conversations, a user).
    pub key: String,
    /// The seq the recording unit produced (0 for records that were put).
    pub seq: u64,
    /// The engine's encoding of the event ([`crate::journal`]).
    pub payload: Vec<u8>,
}

/// Where journal records wait until they are handed on.
#[async_trait]
pub trait JournalStore: Send + Sync + 'static {
    /// Records an event outside any unit of work (seq 0).
    async fn put(&self, key: &str, payload: Vec<u8>) -> Result<()>;

    /// Up to `limit` records with ids above `after`, oldest first.
    async fn read(&self, after: u64, limit: usize) -> Result<Vec<JournalRecord>>;

    /// Removes records that have been handed on (unknown ids are ignored).
    async fn take(&self, ids: &[u64]) -> Result<()>;

    /// How many records wait.
    async fn pending(&self) -> Result<u64>;

    /// Takes or renews the reading lease for `holder` for `ttl`; true if
    /// `holder` holds it now. Single-process backends always grant it.
    async fn lease(&self, holder: &str, ttl: Duration) -> Result<bool>;
}
