//! PostgreSQL stores (feature `postgres`): the shared, durable record of a
//! cluster. Every node writes the same database; presence and wake-ups
//! stay in Redis, where losing them costs a catch-up, never a message.
//!
//! * **Units of work, group-committed** ([`writer`]). Each node has one
//!   writer task on a connection of its own. It takes every unit waiting in
//!   its bounded queue (up to [`PostgresOptions::max_batch`]), sends them
//!   pipelined as calls of one server-side function inside one transaction,
//!   and commits once: one round trip and one WAL flush for many messages
//!   from many connections, with `synchronous_commit` as the server has it
//!   (on, by default). Callers are answered after the commit.
//! * **Seq across nodes**: a per-conversation counter row, locked and bumped
//!   in the same transaction as the message ([`schema`] explains why this
//!   and not insert-and-retry).
//! * **Reads** go to a pool of connections ([`PostgresOptions::pool_size`])
//!   with statements prepared once per connection.
//! * **Schema** in a PostgreSQL schema of its own, migrated at start;
//!   history hash-partitioned by conversation.
//! * **Faults**: a connection that breaks fails the batch in flight (its
//!   callers get an error and resend; a resend of a stored message is
//!   answered with the original, so an outcome lost with the connection is
//!   never a duplicate) and is opened again for the next batch.
//!
//! Tokio-postgres with deadpool: an async driver whose pipelining is what
//! makes a batch one round trip, and a pool that only hands out
//! connections (no query builder or compile-time database between us and
//! the SQL). Presence is not kept here ([`MemoryPresence`] for one node;
//! the server puts Redis's beside this record in a cluster).

mod accounts;
mod contacts;
mod conversations;
mod devices;
mod groups;
mod journal;
mod push;
pub mod schema;
pub mod writer;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

pub use accounts::PostgresAccounts;
pub use contacts::PostgresContacts;
pub use conversations::PostgresConversations;
pub use devices::PostgresDevices;
pub use groups::PostgresGroups;
pub use journal::PostgresJournal;
pub use push::PostgresPush;
pub use writer::WriterStats;

use crate::store::Stores;
use crate::store::memory::MemoryPresence;
use crate::{Error, Result};

const BACKEND: &str = "postgres";

fn pg_err(e: impl std::fmt::Display) -> Error {
    Error::store(BACKEND, e)
}

fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn u64_of(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Pool sizes and queue bounds of the PostgreSQL stores.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PostgresOptions {
    /// The PostgreSQL schema the tables live in (default `imkit`); the
    /// nodes of one cluster share it.
    pub schema: String,
    /// Connections for reads and the stores other than conversations
    /// (default 16).
    pub pool_size: usize,
    /// Units of work the writer commits in one transaction at most
    /// (default 512).
    pub max_batch: usize,
    /// Write jobs that may wait for the writer (default 8,192); a caller
    /// past it waits for room.
    pub queue: usize,
    /// How long a connection may take to open (default 5 s).
    pub connect_timeout: Duration,
    /// How long the writer waits for one batch before it gives up on the
    /// connection and fails the batch (default 10 s).
    pub batch_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            schema: "imkit".into(),
            pool_size: 16,
            max_batch: 512,
            queue: 8_192,
            connect_timeout: Duration::from_secs(5),
            batch_timeout: Duration::from_secs(10),
        }
    }
}

impl PostgresOptions {
    /// The same options in another schema.
    pub fn in_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }
}

/// A PostgreSQL database: the read pool and this node's writer.
#[derive(Debug)]
pub struct PgDb {
    pool: Pool,
    writer: writer::Writer,
}

impl PgDb {
    /// Connects to `url` (`postgres://user@host:port/db`), migrates the
    /// schema and starts the writer.
    pub async fn connect(url: &str, options: PostgresOptions) -> Result<Arc<PgDb>> {
        let s = &options.schema;
        if s.is_empty()
            || s.starts_with(|c: char| c.is_ascii_digit())
            || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(Error::InvalidArgument(format!(
                "postgres schema {s:?}: use letters, digits and _, not starting with a digit"
            )));
        }
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| pg_err(format!("bad url {url:?}: {e}")))?;
        config.connect_timeout(options.connect_timeout);
        config.application_name("imkit");
        config.keepalives_idle(Duration::from_secs(10));
        let mut setup = connect_one(&config).await?;
        schema::migrate(&mut setup, &options.schema).await?;
        drop(setup);
        config.options(format!("-c search_path={}", options.schema));
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(pg_err)?;
        let writer = writer::Writer::start(config, &options);
        Ok(Arc::new(PgDb { pool, writer }))
    }

    /// What this node's writer has done so far.
    pub fn writer_stats(&self) -> WriterStats {
        self.writer.stats()
    }

    /// A pooled connection.
    pub(crate) async fn conn(&self) -> Result<deadpool_postgres::Object> {
        self.pool
            .get()
            .await
            .map_err(|e| pg_err(format!("no connection: {e}")))
    }
}

/// Opens one connection and drives it in a task.
pub(crate) async fn connect_one(config: &tokio_postgres::Config) -> Result<tokio_postgres::Client> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| pg_err(format!("connect: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgres connection ended");
        }
    });
    Ok(client)
}

/// Every store but presence in the PostgreSQL database at `url`; presence
/// in memory (one node; a cluster puts Redis's in its place).
pub async fn open_stores(url: &str, options: PostgresOptions) -> Result<Stores> {
    let db = PgDb::connect(url, options).await?;
    Ok(stores_on(db))
}

/// The stores of an open database, presence in memory.
pub fn stores_on(db: Arc<PgDb>) -> Stores {
    Stores {
        presence: Arc::new(MemoryPresence::default()),
        conversations: Arc::new(PostgresConversations::new(db.clone())),
        devices: Arc::new(PostgresDevices::new(db.clone())),
        groups: Arc::new(PostgresGroups::new(db.clone())),
        contacts: Arc::new(PostgresContacts::new(db.clone())),
        accounts: Arc::new(PostgresAccounts::new(db.clone())),
        journal: Arc::new(PostgresJournal::new(db.clone())),
        push: Arc::new(PostgresPush::new(db)),
    }
}
