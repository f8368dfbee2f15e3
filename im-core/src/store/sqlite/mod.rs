//! SQLite stores (feature `sqlite`): the embedded default, durable on one
//! machine with no other server.
//!
//! * **One writer thread with group commit** ([`writer`]). Units of work
//!   and other writes from all tasks queue on a bounded channel; the writer
//!   takes every job waiting (up to [`SqliteOptions::max_batch`], lingering
//!   up to [`SqliteOptions::max_wait`] for more) and commits them in one
//!   transaction. A syncer thread fsyncs the log for all the batches
//!   committed meanwhile and only then answers their callers, while the
//!   writer goes on with the next batch. So an acknowledged write is
//!   durable, a failing job fails only its own caller, and throughput
//!   collapses neither to one fsync per message nor to the disk's latency.
//!   A connection's pipelined units arrive as one job
//!   ([`ConversationStore::commit_all`](crate::store::ConversationStore::commit_all)),
//!   so a transaction holds many messages of one conversation and writes
//!   each of its pages once.
//! * **The writer remembers what it wrote**: each conversation's last seq
//!   and unread count, cursors and list entries, so a send is a lookup for
//!   de-duplication and the writes themselves.
//! * **Reads never wait behind writes**: WAL mode, and a fixed set of
//!   reader threads, each with its own connection, fed from one bounded
//!   queue.
//! * **Every statement is prepared once** per connection and reused from
//!   rusqlite's statement cache ([`CachedExt`]).
//! * **Schema versions** live in `PRAGMA user_version`; [`MIGRATIONS`] are
//!   applied in order at open, so an older database upgrades in place.
//! * **Durability** is a setting: [`Durability::Full`] (default) survives
//!   power loss; [`Durability::Normal`] survives a process crash but may
//!   lose the last transactions on power loss, for fewer fsyncs.
//! * **One owner**: a database is open in one process at a time (a lock on
//!   `<db>.lock`); the write-through caches rely on it.
//!
//! Files: `writer.rs` (the group-committing writer and the syncer),
//! `conversations.rs` (the unit of work and its reads), `cache.rs` (the
//! write-through caches of group members and block lists), one file per
//! other store. Presence is soft state and stays in memory
//! ([`MemoryPresence`]).

mod accounts;
mod cache;
mod contacts;
mod conversations;
mod devices;
mod groups;
mod journal;
mod push;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, Params, Row};
use tokio::sync::oneshot;

pub use accounts::SqliteAccounts;
pub use contacts::SqliteContacts;
pub use conversations::SqliteConversations;
pub use devices::SqliteDevices;
pub use groups::SqliteGroups;
pub use journal::SqliteJournal;
pub use push::SqlitePush;
pub use writer::WriterStats;

use crate::store::Stores;
use crate::store::memory::MemoryPresence;
use crate::{Error, Result};
use writer::{Durable, Ended, Job, WriterState};

const BACKEND: &str = "sqlite";

fn db_err(e: impl std::fmt::Display) -> Error {
    Error::store(BACKEND, e)
}

fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The schema, one entry per version. Entry `i` moves a database from
/// version `i` to `i + 1`. Never edit an entry once released; add one.
pub const MIGRATIONS: &[&str] = &[
    // 1: messages, cursors, inbox, devices, conversation lists.
    "CREATE TABLE messages (
        conversation  TEXT    NOT NULL,
        seq           INTEGER NOT NULL,
        id            TEXT    NOT NULL UNIQUE,
        sender        TEXT    NOT NULL,
        sender_device TEXT    NOT NULL,
        client_msg_id TEXT    NOT NULL,
        timestamp_ms  INTEGER NOT NULL,
        content       BLOB    NOT NULL,
        recalled      INTEGER NOT NULL DEFAULT 0,
        countable     INTEGER NOT NULL,
        PRIMARY KEY (conversation, seq)
     ) WITHOUT ROWID;
     CREATE UNIQUE INDEX messages_by_client ON messages (sender, client_msg_id);
     CREATE TABLE inbox (
        user         TEXT    NOT NULL,
        device       TEXT    NOT NULL,
        conversation TEXT    NOT NULL,
        seq          INTEGER NOT NULL,
        UNIQUE (user, device, conversation)
     );
     CREATE TABLE devices (
        user   TEXT NOT NULL,
        device TEXT NOT NULL,
        PRIMARY KEY (user, device)
     ) WITHOUT ROWID;
     CREATE TABLE user_conversations (
        user         TEXT NOT NULL,
        conversation TEXT NOT NULL,
        PRIMARY KEY (user, conversation)
     ) WITHOUT ROWID;
     CREATE TABLE delivered (
        user         TEXT    NOT NULL,
        device       TEXT    NOT NULL,
        conversation TEXT    NOT NULL,
        seq          INTEGER NOT NULL,
        PRIMARY KEY (user, device, conversation)
     ) WITHOUT ROWID;
     CREATE TABLE read_cursors (
        user         TEXT    NOT NULL,
        conversation TEXT    NOT NULL,
        seq          INTEGER NOT NULL,
        PRIMARY KEY (user, conversation)
     ) WITHOUT ROWID;",
    // 2: groups and contacts.
    "CREATE TABLE groups (
        id         TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        avatar     TEXT NOT NULL,
        owner      TEXT NOT NULL,
        created_ms INTEGER NOT NULL
     );
     CREATE TABLE group_members (
        group_id  TEXT    NOT NULL,
        user      TEXT    NOT NULL,
        role      TEXT    NOT NULL,
        joined_ms INTEGER NOT NULL,
        UNIQUE (group_id, user)
     );
     CREATE INDEX group_members_by_user ON group_members (user);
     CREATE TABLE friends (
        user  TEXT NOT NULL,
        other TEXT NOT NULL,
        PRIMARY KEY (user, other)
     ) WITHOUT ROWID;
     CREATE TABLE friend_requests (
        from_user TEXT NOT NULL,
        to_user   TEXT NOT NULL,
        PRIMARY KEY (from_user, to_user)
     ) WITHOUT ROWID;
     CREATE INDEX friend_requests_to ON friend_requests (to_user);
     CREATE TABLE blocks (
        user  TEXT NOT NULL,
        other TEXT NOT NULL,
        PRIMARY KEY (user, other)
     ) WITHOUT ROWID;",
    // 3: accounts and revoked tokens (the HTTP admin API).
    "CREATE TABLE accounts (
        user       TEXT    PRIMARY KEY,
        name       TEXT    NOT NULL,
        disabled   INTEGER NOT NULL,
        created_ms INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE revoked_tokens (
        token_id   TEXT    PRIMARY KEY,
        expires_at INTEGER NOT NULL
     ) WITHOUT ROWID;",
    // 4: read diffusion and unread in O(log n). A device's missed messages
    // are its delivered cursor against the conversation's highest seq, so
    // the per-device inbox goes. Each message carries how many messages up
    // to it count as unread (user content); unread is a difference of two
    // of these, less the recalled ones after the read cursor (a partial
    // index finds those). Read and delivered cursors move into one table
    // keyed by conversation first, so the cursors one message moves (the
    // sender's, the receiver's) share a page, as its row and its
    // neighbours do. A sender's read cursor is brought up to their own last
    // message, which a crash between two writes could have left behind
    // before units of work.
    "ALTER TABLE messages ADD COLUMN countable_upto INTEGER NOT NULL DEFAULT 0;
     WITH c AS (
        SELECT conversation, seq,
               SUM(countable) OVER (PARTITION BY conversation ORDER BY seq) AS upto
        FROM messages)
     UPDATE messages SET countable_upto = c.upto
        FROM c WHERE c.conversation = messages.conversation AND c.seq = messages.seq;
     CREATE INDEX messages_recalled ON messages (conversation, seq)
        WHERE recalled = 1 AND countable = 1;
     CREATE TABLE cursors (
        conversation TEXT    NOT NULL,
        user         TEXT    NOT NULL,
        device       TEXT    NOT NULL, -- '' for the user's read cursor
        seq          INTEGER NOT NULL,
        PRIMARY KEY (conversation, user, device)
     ) WITHOUT ROWID;
     INSERT INTO cursors SELECT conversation, user, '', seq FROM read_cursors;
     INSERT INTO cursors SELECT conversation, user, device, seq FROM delivered;
     INSERT INTO cursors (conversation, user, device, seq)
        SELECT conversation, sender, '', MAX(seq) FROM messages WHERE countable = 1
        GROUP BY conversation, sender
        ON CONFLICT (conversation, user, device) DO UPDATE SET seq = MAX(seq, excluded.seq);
     DROP TABLE read_cursors;
     DROP TABLE delivered;
     DROP TABLE inbox;",
    // 5: when each device first logged in, so the oldest can be found
    // when a user reaches the device cap. Devices from before count as
    // oldest.
    "ALTER TABLE devices ADD COLUMN first_seen_ms INTEGER NOT NULL DEFAULT 0;",
    // 6: privacy settings (who may add a user to groups: 1 = friends only).
    "CREATE TABLE privacy (
        user       TEXT    PRIMARY KEY,
        group_adds INTEGER NOT NULL
     ) WITHOUT ROWID;",
    // 7: the event journal (store::journal): records wait here, written
    // with the units that caused them, until the webhooks hand them on.
    // AUTOINCREMENT: an id is never reused after its record is taken.
    "CREATE TABLE journal (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        key     TEXT    NOT NULL,
        seq     INTEGER NOT NULL,
        payload BLOB    NOT NULL
     );",
    // 8: push tokens, one per device, and whether a user's notifications
    // hide message content.
    "CREATE TABLE push_tokens (
        user     TEXT NOT NULL,
        device   TEXT NOT NULL,
        provider TEXT NOT NULL,
        platform TEXT NOT NULL,
        token    TEXT NOT NULL,
        PRIMARY KEY (user, device)
     ) WITHOUT ROWID;
     CREATE TABLE push_prefs (
        user         TEXT    PRIMARY KEY,
        hide_content INTEGER NOT NULL
     ) WITHOUT ROWID;",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// How hard a commit works to survive a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// An acknowledged write survives power loss: the write-ahead log is
    /// fsynced before any caller is answered, and no reader serves what is
    /// not yet fsynced. The default.
    #[default]
    Full,
    /// An acknowledged write survives a process crash; on power loss the
    /// last commits may be lost. The log is fsynced at checkpoints only.
    Normal,
}

/// SQLite settings. Every limit has a documented default.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Commit durability (default [`Durability::Full`]).
    pub durability: Durability,
    /// Reader threads, each with its own connection (default 4).
    pub read_pool: usize,
    /// Reads queued for the readers before callers wait (default 8,192).
    pub read_queue: usize,
    /// Writes queued for the writer before callers wait (default 8,192).
    pub write_queue: usize,
    /// Most writes committed in one transaction (default 1,024).
    pub max_batch: usize,
    /// How long the writer lingers for more writes once it has some, before
    /// it commits a batch smaller than `max_batch` (default 0: commit what
    /// is waiting at once; under load, writes arriving during one commit
    /// form the next batch by themselves).
    pub max_wait: Duration,
    /// Page cache per connection, in KiB (default 16,384: 16 MiB for the
    /// writer and each reader).
    pub cache_kib: usize,
    /// Log pages after which the writer copies the log into the database
    /// (a checkpoint; default 10,000 pages, about 40 MiB). A page changed
    /// many times between checkpoints is copied once, so a longer log means
    /// fewer writes under load, and a longer recovery after a crash.
    pub checkpoint_pages: u32,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            durability: Durability::Full,
            read_pool: 4,
            read_queue: 8_192,
            write_queue: 8_192,
            max_batch: 1_024,
            max_wait: Duration::ZERO,
            cache_kib: 16 * 1024,
            checkpoint_pages: 10_000,
        }
    }
}

type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// Statements through rusqlite's per-connection cache, so each SQL text is
/// parsed once per connection rather than on every call.
pub trait CachedExt {
    /// [`Connection::execute`] with a cached statement.
    fn exec<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
    /// [`Connection::query_row`] with a cached statement.
    fn row<T, P: Params, F: FnOnce(&Row<'_>) -> rusqlite::Result<T>>(
        &self,
        sql: &str,
        params: P,
        f: F,
    ) -> rusqlite::Result<T>;
}

impl CachedExt for Connection {
    fn exec<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn row<T, P: Params, F: FnOnce(&Row<'_>) -> rusqlite::Result<T>>(
        &self,
        sql: &str,
        params: P,
        f: F,
    ) -> rusqlite::Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

/// Distinct statements kept prepared per connection (rusqlite's default is
/// 16, fewer than the stores use, which would re-parse on every call).
const STATEMENT_CACHE: usize = 128;

/// A SQLite database: the writer thread and the read pool. Every SQLite
/// store holds one of these.
pub struct Db {
    path: PathBuf,
    writer: flume::Sender<Job>,
    readers: flume::Sender<ReadJob>,
    stats: Arc<WriterStats>,
    durable: Arc<Durable>,
    /// The writer thread. It holds the owner lock (one process owns the
    /// file; the caches rely on it, and a second opener fails at once)
    /// until its last commit, and dropping the `Db` waits for it.
    writer_thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Db {
    fn drop(&mut self) {
        // Closing the queue ends the writer once it has committed what it
        // holds; waiting for it means the file is free when this returns.
        let (closed, _) = flume::bounded(1);
        drop(std::mem::replace(&mut self.writer, closed));
        if let Some(thread) = self.writer_thread.take()
            && thread.thread().id() != std::thread::current().id()
        {
            let _ = thread.join();
        }
    }
}

/// The file locked by whoever owns the database at `path`.
fn owner_lock_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// Takes the owner lock of the database at `path`, or says who has it.
fn lock_owner(path: &Path) -> Result<std::fs::File> {
    let lock_path = owner_lock_path(path);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::store(BACKEND, format!("cannot open {}: {e}", lock_path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::store(
            BACKEND,
            format!(
                "{} is already open in another process or store (its lock {} is held); \
                 one imkit server owns a SQLite database",
                path.display(),
                lock_path.display()
            ),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::store(
            BACKEND,
            format!("cannot lock {}: {e}", lock_path.display()),
        )),
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn open_connection(path: &Path, options: &SqliteOptions) -> Result<Connection> {
    let conn = Connection::open(path).map_err(db_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(db_err)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(db_err)?;
    // Savepoint journals in memory, not in a temporary file (a write
    // syscall per page a general write touches).
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(db_err)?;
    conn.pragma_update(
        None,
        "cache_size",
        -i64::try_from(options.cache_kib).unwrap_or(i64::MAX),
    )
    .map_err(db_err)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Brings a database to [`SCHEMA_VERSION`]; returns the version it had.
pub fn migrate(conn: &mut Connection) -> Result<usize> {
    let version: usize = conn
        .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .map_err(db_err)? as usize;
    if version > SCHEMA_VERSION {
        return Err(Error::store(
            BACKEND,
            format!(
                "database schema version {version} is newer than this build ({SCHEMA_VERSION})"
            ),
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction().map_err(db_err)?;
        tx.execute_batch(sql).map_err(db_err)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        tracing::info!(version = i + 1, "sqlite schema migrated");
    }
    Ok(version)
}

impl Db {
    /// Opens (creating if needed) and migrates a database.
    ///
    /// Fails if another process (or another `Db` in this one) has the file
    /// open: the owner lock is the file's path with `.lock` appended.
    pub fn open(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Arc<Db>> {
        let path = path.as_ref().to_path_buf();
        let owner = lock_owner(&path)?;
        let mut conn = open_connection(&path, &options)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(db_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::store(
                BACKEND,
                format!("cannot enable WAL (journal mode is {mode})"),
            ));
        }
        // Full durability syncs the log in the syncer thread (see
        // `writer`), so SQLite itself never waits for the disk on commit.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db_err)?;
        conn.pragma_update(None, "wal_autocheckpoint", options.checkpoint_pages)
            .map_err(db_err)?;
        migrate(&mut conn)?;
        let synced_by_us = options.durability == Durability::Full;
        if synced_by_us {
            // Whatever the migrations wrote is on disk before anything runs.
            conn.execute_batch("PRAGMA wal_checkpoint(FULL)")
                .map_err(db_err)?;
        }
        let durable = Arc::new(Durable::new(synced_by_us));
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        let (tx, rx) = flume::bounded::<Job>(options.write_queue.max(1));
        let stats = Arc::new(WriterStats::default());
        let limits = writer::Limits {
            max_batch: options.max_batch.max(1),
            max_wait: options.max_wait,
        };
        let writer_stats = stats.clone();
        let writer_durable = durable.clone();
        let writer_thread = std::thread::Builder::new()
            .name("imkit-sqlite-writer".into())
            .spawn(move || {
                writer::run(conn, rx, limits, &writer_stats, writer_durable, wal);
                // Released only after the connection has closed.
                drop(owner);
            })
            .map_err(db_err)?;
        let (read_tx, read_rx) = flume::bounded::<ReadJob>(options.read_queue.max(1));
        for i in 0..options.read_pool.max(1) {
            let conn = open_connection(&path, &options)?;
            let jobs = read_rx.clone();
            std::thread::Builder::new()
                .name(format!("imkit-sqlite-reader-{i}"))
                .spawn(move || reader_loop(conn, jobs))
                .map_err(db_err)?;
        }
        Ok(Arc::new(Db {
            path,
            writer: tx,
            readers: read_tx,
            stats,
            durable,
            writer_thread: Some(writer_thread),
        }))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the writer has done so far: transactions and the writes in
    /// them.
    pub fn writer_stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Runs `f` inside the writer's current transaction (in its own
    /// savepoint) and returns its result once the transaction has committed.
    /// If `f` fails, its savepoint is rolled back and only its caller sees
    /// the error.
    pub async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        self.write_with(move |c, _| f(c)).await
    }

    /// [`Db::write`] with the writer's memory of what it wrote.
    pub(crate) async fn write_with<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &mut WriterState) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let (tx, rx) = oneshot::channel();
        self.submit(writer::job(f, tx), rx).await
    }

    /// A write that checks before it writes and needs no savepoint (see
    /// [`writer`]): `f` answers refusals with [`Ended::Done`] and reports a
    /// failed write with [`Ended::Failed`], which rolls back the batch.
    pub(crate) async fn write_checked<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &mut WriterState) -> (Ended, Result<R>) + Send + 'static,
    ) -> Result<R> {
        let (tx, rx) = oneshot::channel();
        self.submit(writer::checked_job(f, tx), rx).await
    }

    async fn submit<R>(&self, job: Job, rx: oneshot::Receiver<Result<R>>) -> Result<R> {
        self.writer
            .send_async(job)
            .await
            .map_err(|_| Error::Unavailable("sqlite writer has stopped".into()))?;
        // A job dropped unanswered did not commit (its batch could not
        // begin or was rolled back, or it panicked).
        rx.await
            .map_err(|_| Error::store(BACKEND, "the write was not committed"))?
    }

    /// Runs `f` on a reader thread's connection, off the async threads.
    pub async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let (tx, rx) = oneshot::channel();
        let job: ReadJob = Box::new(move |conn| {
            let _ = tx.send(f(conn));
        });
        self.readers
            .send_async(job)
            .await
            .map_err(|_| Error::Unavailable("sqlite readers have stopped".into()))?;
        // A job that panicked dropped its sender unanswered.
        let r = rx
            .await
            .map_err(|_| Error::store(BACKEND, "read failed: the reader panicked"))?;
        // Nothing a client is told may be undone by a power loss.
        self.durable.wait_for_reads().await?;
        r
    }
}

/// One reader thread: runs read jobs on its own connection until every
/// handle to the database is gone. A panicking job is contained (its caller
/// sees an error) and the thread carries on.
fn reader_loop(conn: Connection, jobs: flume::Receiver<ReadJob>) {
    while let Ok(job) = jobs.recv() {
        let run = std::panic::AssertUnwindSafe(|| job(&conn));
        if std::panic::catch_unwind(run).is_err() {
            tracing::error!("sqlite read job panicked");
        }
    }
}

/// Every store on one SQLite database (presence in memory).
pub fn open_stores(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Stores> {
    let db = Db::open(path, options)?;
    Ok(stores_on(db))
}

/// Every store on an open database (presence in memory).
pub fn stores_on(db: Arc<Db>) -> Stores {
    Stores {
        presence: Arc::new(MemoryPresence::default()),
        conversations: Arc::new(SqliteConversations::new(db.clone())),
        devices: Arc::new(SqliteDevices::new(db.clone())),
        groups: Arc::new(SqliteGroups::new(db.clone())),
        contacts: Arc::new(SqliteContacts::new(db.clone())),
        accounts: Arc::new(SqliteAccounts::new(db.clone())),
        journal: Arc::new(SqliteJournal::new(db.clone())),
        push: Arc::new(SqlitePush::new(db)),
    }
}
