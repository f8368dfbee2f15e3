//! SQLite stores (feature `sqlite`): the embedded default, durable on one
//! machine with no other server.
//!
//! * **One writer thread with group commit.** Writes from all tasks queue on
//!   a bounded channel; the writer takes every job that is waiting, runs
//!   each in its own savepoint inside one transaction, commits once (one
//!   fsync for the whole batch), and only then answers the callers. So an
//!   acknowledged write is durable, and throughput does not collapse to one
//!   fsync per message.
//! * **Reads never wait behind writes**: WAL mode, and a fixed set of
//!   reader threads, each with its own connection, fed from one bounded
//!   queue. A busy reader takes the next job without sleeping, so reads do
//!   not pay a thread hand-off each (as `spawn_blocking` would).
//! * **Every statement is prepared once** per connection and reused from
//!   rusqlite's statement cache ([`CachedExt`]).
//! * **Schema versions** live in `PRAGMA user_version`; [`MIGRATIONS`] are
//!   applied in order at open, so an older database upgrades in place.
//! * **Durability** is a setting: [`Durability::Full`] (default) survives
//!   power loss; [`Durability::Normal`] survives a process crash but may
//!   lose the last transactions on power loss, for fewer fsyncs.
//!
//! Presence is soft state and stays in memory ([`crate::store::memory::MemoryPresence`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use imkit_proto::pb;
use parking_lot::Mutex;
use prost::Message as _;
use rusqlite::{Connection, OptionalExtension, Params, Row, params};
use tokio::sync::{mpsc, oneshot};

use crate::model::*;
use crate::store::memory::MemoryPresence;
use crate::store::{
    Account, AccountStore, ContactStore, Direction, GroupStore, HistoryStore, InboxStore,
    ReadStateStore, Stores,
};
use crate::{Error, Result};

const BACKEND: &str = "sqlite";

fn db_err(e: impl std::fmt::Display) -> Error {
    Error::store(BACKEND, e)
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
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// How hard a commit works to survive a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=FULL`: an acknowledged write survives power loss. The default.
    #[default]
    Full,
    /// `synchronous=NORMAL`: an acknowledged write survives a process crash;
    /// on power loss the last commits may be lost. Fewer fsyncs.
    Normal,
}

/// SQLite settings.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Commit durability (default [`Durability::Full`]).
    pub durability: Durability,
    /// Reader threads, each with its own connection (default 4).
    pub read_pool: usize,
    /// Reads queued for the readers before callers wait (default 8,192).
    pub read_queue: usize,
    /// Jobs queued for the writer before callers wait (default 8,192).
    pub write_queue: usize,
    /// Most jobs committed in one transaction (default 1,024).
    pub max_batch: usize,
    /// Most conversations pending in one device's inbox (default 10,000).
    pub inbox_cap: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            durability: Durability::Full,
            read_pool: 4,
            read_queue: 8_192,
            write_queue: 8_192,
            max_batch: 1_024,
            inbox_cap: crate::store::memory::DEFAULT_INBOX_CAP,
        }
    }
}

type Completion = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> (bool, Completion) + Send>;
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
    writer: mpsc::Sender<Job>,
    readers: flume::Sender<ReadJob>,
    options: SqliteOptions,
    cache: Mutex<Monotonic>,
    /// The writer thread. It holds the owner lock (one process owns the
    /// file; the caches above rely on it, and a second opener fails at
    /// once) until its last commit, and dropping the `Db` waits for it.
    writer_thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Db {
    fn drop(&mut self) {
        // Closing the queue ends the writer once it has committed what it
        // holds; waiting for it means the file is free when this returns.
        let (closed, _) = mpsc::channel(1);
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

/// Most entries in each map of [`Monotonic`] before that map starts over.
const MONOTONIC_CACHE_CAP: usize = 200_000;

type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Hot values that only ever grow, cached write-through so the send and
/// receipt paths do not read them from disk: read and delivered cursors,
/// and each conversation's highest seq. The writer thread is the only
/// writer of the database, an entry is set only from a committed write or a
/// read of committed data, and entries merge with `max`, so a cached value
/// is never ahead of the database and racing updates cannot move it back.
/// (This, like the device cache, assumes one process owns the file.)
#[derive(Debug, Default)]
struct Monotonic {
    read: FastMap<(UserId, ConversationId), u64>,
    delivered: FastMap<(UserId, DeviceId, ConversationId), u64>,
    max_seq: FastMap<ConversationId, u64>,
}

/// Merges `value` into `map[key]` with `max` and returns the result.
fn merge_max<K: std::hash::Hash + Eq>(map: &mut FastMap<K, u64>, key: K, value: u64) -> u64 {
    if map.len() >= MONOTONIC_CACHE_CAP {
        map.clear();
    }
    let slot = map.entry(key).or_insert(0);
    *slot = (*slot).max(value);
    *slot
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(db_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(db_err)?;
    conn.pragma_update(None, "foreign_keys", "ON")
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
        let mut conn = open_connection(&path)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(db_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::store(
                BACKEND,
                format!("cannot enable WAL (journal mode is {mode})"),
            ));
        }
        let sync = match options.durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync)
            .map_err(db_err)?;
        migrate(&mut conn)?;
        let (tx, rx) = mpsc::channel::<Job>(options.write_queue.max(1));
        let max_batch = options.max_batch.max(1);
        let writer_thread = std::thread::Builder::new()
            .name("imkit-sqlite-writer".into())
            .spawn(move || {
                writer_loop(conn, rx, max_batch);
                // Released only after the connection has closed.
                drop(owner);
            })
            .map_err(db_err)?;
        let (read_tx, read_rx) = flume::bounded::<ReadJob>(options.read_queue.max(1));
        for i in 0..options.read_pool.max(1) {
            let conn = open_connection(&path)?;
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
            options,
            cache: Mutex::default(),
            writer_thread: Some(writer_thread),
        }))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` inside the writer's current transaction (in its own
    /// savepoint) and returns its result once the transaction has committed.
    pub async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let r = f(conn);
            let ok = r.is_ok();
            let done: Completion = Box::new(move |commit| {
                let _ = tx.send(match commit {
                    Ok(()) => r,
                    Err(e) => Err(Error::store(BACKEND, format!("commit failed: {e}"))),
                });
            });
            (ok, done)
        });
        self.writer
            .send(job)
            .await
            .map_err(|_| Error::Unavailable("sqlite writer has stopped".into()))?;
        rx.await
            .map_err(|_| Error::Unavailable("sqlite writer has stopped".into()))?
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
        rx.await
            .map_err(|_| Error::store(BACKEND, "read failed: the reader panicked"))?
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

fn writer_loop(conn: Connection, mut rx: mpsc::Receiver<Job>, max_batch: usize) {
    let mut batch: Vec<Job> = Vec::with_capacity(max_batch);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut done = Vec::with_capacity(batch.len());
        let begin = conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| e.to_string());
        if let Err(e) = begin {
            // Dropping a job unrun drops its reply channel: the caller gets
            // an error and knows the write did not happen.
            tracing::error!(error = %e, "sqlite cannot begin a transaction");
            batch.clear();
            continue;
        }
        for job in batch.drain(..) {
            if let Err(e) = run_cached(&conn, "SAVEPOINT job") {
                tracing::error!(error = %e, "sqlite savepoint failed");
                continue;
            }
            let (ok, complete) = job(&conn);
            let ended = if ok {
                run_cached(&conn, "RELEASE job").is_ok()
            } else {
                run_cached(&conn, "ROLLBACK TO job").is_ok()
                    && run_cached(&conn, "RELEASE job").is_ok()
            };
            done.push((complete, ended));
        }
        let commit = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
        if commit.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for (complete, ended) in done {
            let r = match (&commit, ended) {
                (Ok(()), true) => Ok(()),
                (Ok(()), false) => Err("savepoint failed".to_owned()),
                (Err(e), _) => Err(e.clone()),
            };
            complete(r);
        }
    }
}

/// Runs a parameterless statement through the prepared-statement cache.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

// ───────────────────────────── History ─────────────────────────────

fn encode_content(c: &pb::Content) -> Vec<u8> {
    c.encode_to_vec()
}

fn row_to_message(r: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    let id: String = r.get("id")?;
    let content: Vec<u8> = r.get("content")?;
    let content = pb::Content::decode(content.as_slice()).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(7, rusqlite::types::Type::Blob, Box::new(e))
    })?;
    Ok(Message {
        id: MessageId(uuid::Uuid::parse_str(&id).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e))
        })?),
        conversation: ConversationId::new(r.get::<_, String>("conversation")?),
        seq: r.get::<_, i64>("seq")? as u64,
        sender: UserId::new(r.get::<_, String>("sender")?),
        sender_device: DeviceId::new(r.get::<_, String>("sender_device")?),
        client_msg_id: r.get("client_msg_id")?,
        timestamp_ms: r.get::<_, i64>("timestamp_ms")? as u64,
        content,
        recalled: r.get::<_, i64>("recalled")? != 0,
    })
}

const MESSAGE_COLUMNS: &str =
    "conversation, seq, id, sender, sender_device, client_msg_id, timestamp_ms, content, recalled";

fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// SQLite [`HistoryStore`].
#[derive(Debug, Clone)]
pub struct SqliteHistory(Arc<Db>);

#[async_trait]
impl HistoryStore for SqliteHistory {
    async fn append(&self, new: NewMessage) -> Result<Appended> {
        let appended = self
            .0
            .write(move |c| {
                let existing = c
                    .row(
                        &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE sender = ?1 AND client_msg_id = ?2"),
                        params![new.sender.as_str(), new.client_msg_id],
                        row_to_message,
                    )
                    .optional()
                    .map_err(db_err)?;
                if let Some(message) = existing {
                    return Ok(Appended { message, duplicate: true });
                }
                if let Some(target) = recall_target(&new.content) {
                    let empty = encode_content(&pb::Content::default());
                    let n = c
                        .exec(
                            "UPDATE messages SET recalled = 1, content = ?3 WHERE conversation = ?1 AND seq = ?2",
                            params![new.conversation.as_str(), i64_of(target), empty],
                        )
                        .map_err(db_err)?;
                    if n == 0 {
                        return Err(Error::NotFound(format!("message {target} in {}", new.conversation)));
                    }
                }
                let max: i64 = c
                    .row(
                        "SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conversation = ?1",
                        params![new.conversation.as_str()],
                        |r| r.get(0),
                    )
                    .map_err(db_err)?;
                let seq = max as u64 + 1;
                c.exec(
                    "INSERT INTO messages (conversation, seq, id, sender, sender_device, client_msg_id, timestamp_ms, content, recalled, countable)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9)",
                    params![
                        new.conversation.as_str(),
                        i64_of(seq),
                        new.id.to_string(),
                        new.sender.as_str(),
                        new.sender_device.as_str(),
                        new.client_msg_id,
                        i64_of(new.timestamp_ms),
                        encode_content(&new.content),
                        is_user_content(&new.content),
                    ],
                )
                .map_err(db_err)?;
                Ok(Appended { message: Message::from_new(new, seq), duplicate: false })
            })
            .await?;
        let m = &appended.message;
        merge_max(
            &mut self.0.cache.lock().max_seq,
            m.conversation.clone(),
            m.seq,
        );
        Ok(appended)
    }

    async fn get(&self, conversation: &ConversationId, seq: u64) -> Result<Option<Message>> {
        let conv = conversation.clone();
        self.0
            .read(move |c| {
                c.row(
                    &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation = ?1 AND seq = ?2"),
                    params![conv.as_str(), i64_of(seq)],
                    row_to_message,
                )
                .optional()
                .map_err(db_err)
            })
            .await
    }

    async fn get_by_id(&self, id: &MessageId) -> Result<Option<Message>> {
        let id = id.to_string();
        self.0
            .read(move |c| {
                c.row(
                    &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?1"),
                    params![id],
                    row_to_message,
                )
                .optional()
                .map_err(db_err)
            })
            .await
    }

    async fn find_by_client_id(
        &self,
        sender: &UserId,
        client_msg_id: &str,
    ) -> Result<Option<Message>> {
        let (sender, cmid) = (sender.clone(), client_msg_id.to_owned());
        self.0
            .read(move |c| {
                c.row(
                    &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE sender = ?1 AND client_msg_id = ?2"),
                    params![sender.as_str(), cmid],
                    row_to_message,
                )
                .optional()
                .map_err(db_err)
            })
            .await
    }

    async fn range(
        &self,
        conversation: &ConversationId,
        from_seq: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let conv = conversation.clone();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.0
            .read(move |c| {
                let (sql, from) = match direction {
                    Direction::Forward => (
                        format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation = ?1 AND seq > ?2 ORDER BY seq ASC LIMIT ?3"),
                        i64_of(from_seq),
                    ),
                    Direction::Backward => (
                        format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3"),
                        if from_seq == 0 { i64::MAX } else { i64_of(from_seq) },
                    ),
                };
                let mut stmt = c.prepare_cached(&sql).map_err(db_err)?;
                let rows = stmt
                    .query_map(params![conv.as_str(), from, limit], row_to_message)
                    .map_err(db_err)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
            })
            .await
    }

    async fn max_seq(&self, conversation: &ConversationId) -> Result<u64> {
        if let Some(seq) = self.0.cache.lock().max_seq.get(conversation) {
            return Ok(*seq);
        }
        let conv = conversation.clone();
        let seq = self
            .0
            .read(move |c| {
                c.row(
                    "SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conversation = ?1",
                    params![conv.as_str()],
                    |r| r.get::<_, i64>(0),
                )
                .map(|n| n as u64)
                .map_err(db_err)
            })
            .await?;
        Ok(merge_max(
            &mut self.0.cache.lock().max_seq,
            conversation.clone(),
            seq,
        ))
    }

    async fn count_unread(
        &self,
        conversation: &ConversationId,
        after_seq: u64,
        reader: &UserId,
    ) -> Result<u64> {
        let (conv, reader) = (conversation.clone(), reader.clone());
        self.0
            .read(move |c| {
                c.row(
                    "SELECT COUNT(*) FROM messages WHERE conversation = ?1 AND seq > ?2 AND sender <> ?3 AND countable = 1 AND recalled = 0",
                    params![conv.as_str(), i64_of(after_seq), reader.as_str()],
                    |r| r.get::<_, i64>(0),
                )
                .map(|n| n as u64)
                .map_err(db_err)
            })
            .await
    }
}

// ───────────────────────────── Inbox ─────────────────────────────

/// SQLite [`InboxStore`]: one row per (device, conversation).
#[derive(Debug, Clone)]
pub struct SqliteInbox(Arc<Db>);

#[async_trait]
impl InboxStore for SqliteInbox {
    async fn push(&self, user: &UserId, device: &DeviceId, entry: InboxEntry) -> Result<()> {
        let (user, device) = (user.clone(), device.clone());
        let cap = i64::try_from(self.0.options.inbox_cap.max(1)).unwrap_or(i64::MAX);
        self.0
            .write(move |c| {
                c.exec(
                    "INSERT INTO inbox (user, device, conversation, seq) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (user, device, conversation) DO UPDATE SET seq = MAX(seq, excluded.seq)",
                    params![user.as_str(), device.as_str(), entry.conversation.as_str(), i64_of(entry.seq)],
                )
                .map_err(db_err)?;
                c.exec(
                    "DELETE FROM inbox WHERE rowid IN (
                        SELECT rowid FROM inbox WHERE user = ?1 AND device = ?2 ORDER BY rowid DESC LIMIT -1 OFFSET ?3)",
                    params![user.as_str(), device.as_str(), cap],
                )
                .map_err(db_err)?;
                Ok(())
            })
            .await
    }

    async fn pending(
        &self,
        user: &UserId,
        device: &DeviceId,
        limit: usize,
    ) -> Result<Vec<InboxEntry>> {
        let (user, device) = (user.clone(), device.clone());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.0
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached("SELECT conversation, seq FROM inbox WHERE user = ?1 AND device = ?2 ORDER BY rowid LIMIT ?3")
                    .map_err(db_err)?;
                let rows = stmt
                    .query_map(params![user.as_str(), device.as_str(), limit], |r| {
                        Ok(InboxEntry {
                            conversation: ConversationId::new(r.get::<_, String>(0)?),
                            seq: r.get::<_, i64>(1)? as u64,
                        })
                    })
                    .map_err(db_err)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
            })
            .await
    }

    async fn ack(
        &self,
        user: &UserId,
        device: &DeviceId,
        conversation: &ConversationId,
        up_to_seq: u64,
    ) -> Result<usize> {
        let (user, device, conv) = (user.clone(), device.clone(), conversation.clone());
        self.0
            .write(move |c| {
                c.exec(
                    "DELETE FROM inbox WHERE user = ?1 AND device = ?2 AND conversation = ?3 AND seq <= ?4",
                    params![user.as_str(), device.as_str(), conv.as_str(), i64_of(up_to_seq)],
                )
                .map_err(db_err)
            })
            .await
    }
}

// ───────────────────────────── Read state ─────────────────────────────

/// SQLite [`ReadStateStore`].
///
/// Devices and conversation memberships only ever grow, and every write to
/// them goes through this store (one process owns the database), so they
/// are cached: a repeated `add_conversation` or `register_device` costs no
/// write, and `devices` no read.
#[derive(Debug, Clone)]
pub struct SqliteReadState {
    db: Arc<Db>,
    known: Arc<Mutex<KnownFacts>>,
}

/// Most cached (user, conversation) and user → devices facts before the
/// cache starts over.
const KNOWN_FACTS_CAP: usize = 200_000;

#[derive(Debug, Default)]
struct KnownFacts {
    conversations: std::collections::HashSet<(UserId, ConversationId)>,
    devices: std::collections::HashMap<UserId, Vec<DeviceId>>,
}

impl KnownFacts {
    fn trim(&mut self) {
        if self.conversations.len() > KNOWN_FACTS_CAP {
            self.conversations.clear();
        }
        if self.devices.len() > KNOWN_FACTS_CAP {
            self.devices.clear();
        }
    }
}

impl SqliteReadState {
    /// The read-state store of a database.
    pub fn new(db: Arc<Db>) -> Self {
        SqliteReadState {
            db,
            known: Arc::default(),
        }
    }
}

#[async_trait]
impl ReadStateStore for SqliteReadState {
    async fn register_device(&self, user: &UserId, device: &DeviceId) -> Result<()> {
        if self
            .known
            .lock()
            .devices
            .get(user)
            .is_some_and(|d| d.contains(device))
        {
            return Ok(());
        }
        let (u, d) = (user.clone(), device.clone());
        self.db
            .write(move |c| {
                c.exec(
                    "INSERT OR IGNORE INTO devices (user, device) VALUES (?1, ?2)",
                    params![u.as_str(), d.as_str()],
                )
                .map(drop)
                .map_err(db_err)
            })
            .await?;
        // Reload from the table so the cache holds every device.
        self.known.lock().devices.remove(user);
        self.devices(user).await.map(drop)
    }

    async fn devices(&self, user: &UserId) -> Result<Vec<DeviceId>> {
        if let Some(d) = self.known.lock().devices.get(user) {
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
        known.trim();
        known.devices.insert(user.clone(), devices.clone());
        Ok(devices)
    }

    async fn add_conversation(&self, user: &UserId, conversation: &ConversationId) -> Result<()> {
        let key = (user.clone(), conversation.clone());
        if self.known.lock().conversations.contains(&key) {
            return Ok(());
        }
        let (u, conv) = key.clone();
        self.db
            .write(move |c| {
                c.exec(
                    "INSERT OR IGNORE INTO user_conversations (user, conversation) VALUES (?1, ?2)",
                    params![u.as_str(), conv.as_str()],
                )
                .map(drop)
                .map_err(db_err)
            })
            .await?;
        let mut known = self.known.lock();
        known.trim();
        known.conversations.insert(key);
        Ok(())
    }

    async fn conversations(&self, user: &UserId) -> Result<Vec<ConversationId>> {
        let user = user.clone();
        self.db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached("SELECT conversation FROM user_conversations WHERE user = ?1")
                    .map_err(db_err)?;
                let rows = stmt
                    .query_map(params![user.as_str()], |r| {
                        Ok(ConversationId::new(r.get::<_, String>(0)?))
                    })
                    .map_err(db_err)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
            })
            .await
    }

    async fn advance_delivered(
        &self,
        user: &UserId,
        device: &DeviceId,
        conversation: &ConversationId,
        seq: u64,
    ) -> Result<u64> {
        let key = (user.clone(), device.clone(), conversation.clone());
        let (user, device, conv) = key.clone();
        let seq = self
            .db
            .write(move |c| {
                c.row(
                    "INSERT INTO delivered (user, device, conversation, seq) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (user, device, conversation) DO UPDATE SET seq = MAX(seq, excluded.seq)
                     RETURNING seq",
                    params![user.as_str(), device.as_str(), conv.as_str(), i64_of(seq)],
                    |r| r.get::<_, i64>(0),
                )
                .map(|n| n as u64)
                .map_err(db_err)
            })
            .await?;
        Ok(merge_max(&mut self.db.cache.lock().delivered, key, seq))
    }

    async fn delivered(
        &self,
        user: &UserId,
        device: &DeviceId,
        conversation: &ConversationId,
    ) -> Result<u64> {
        let key = (user.clone(), device.clone(), conversation.clone());
        if let Some(seq) = self.db.cache.lock().delivered.get(&key) {
            return Ok(*seq);
        }
        let (user, device, conv) = key.clone();
        let seq = self
            .db
            .read(move |c| {
                c.row(
                    "SELECT seq FROM delivered WHERE user = ?1 AND device = ?2 AND conversation = ?3",
                    params![user.as_str(), device.as_str(), conv.as_str()],
                    |r| r.get::<_, i64>(0),
                )
                .optional()
                .map(|n| n.unwrap_or(0) as u64)
                .map_err(db_err)
            })
            .await?;
        Ok(merge_max(&mut self.db.cache.lock().delivered, key, seq))
    }

    async fn advance_read(
        &self,
        user: &UserId,
        conversation: &ConversationId,
        seq: u64,
    ) -> Result<u64> {
        let key = (user.clone(), conversation.clone());
        let (user, conv) = key.clone();
        let seq = self
            .db
            .write(move |c| {
                c.row(
                    "INSERT INTO read_cursors (user, conversation, seq) VALUES (?1, ?2, ?3)
                     ON CONFLICT (user, conversation) DO UPDATE SET seq = MAX(seq, excluded.seq)
                     RETURNING seq",
                    params![user.as_str(), conv.as_str(), i64_of(seq)],
                    |r| r.get::<_, i64>(0),
                )
                .map(|n| n as u64)
                .map_err(db_err)
            })
            .await?;
        Ok(merge_max(&mut self.db.cache.lock().read, key, seq))
    }

    async fn read(&self, user: &UserId, conversation: &ConversationId) -> Result<u64> {
        let key = (user.clone(), conversation.clone());
        if let Some(seq) = self.db.cache.lock().read.get(&key) {
            return Ok(*seq);
        }
        let (user, conv) = key.clone();
        let seq = self
            .db
            .read(move |c| {
                c.row(
                    "SELECT seq FROM read_cursors WHERE user = ?1 AND conversation = ?2",
                    params![user.as_str(), conv.as_str()],
                    |r| r.get::<_, i64>(0),
                )
                .optional()
                .map(|n| n.unwrap_or(0) as u64)
                .map_err(db_err)
            })
            .await?;
        Ok(merge_max(&mut self.db.cache.lock().read, key, seq))
    }

    async fn read_many(&self, conversation: &ConversationId, users: &[UserId]) -> Result<Vec<u64>> {
        let (conv, users) = (conversation.clone(), users.to_vec());
        self.db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT seq FROM read_cursors WHERE user = ?1 AND conversation = ?2",
                    )
                    .map_err(db_err)?;
                let mut out = Vec::with_capacity(users.len());
                for u in &users {
                    let seq: Option<i64> = stmt
                        .query_row(params![u.as_str(), conv.as_str()], |r| r.get(0))
                        .optional()
                        .map_err(db_err)?;
                    out.push(seq.unwrap_or(0) as u64);
                }
                Ok(out)
            })
            .await
    }
}

// ───────────────────────────── Groups ─────────────────────────────

/// SQLite [`GroupStore`].
#[derive(Debug, Clone)]
pub struct SqliteGroups(Arc<Db>);

fn row_to_group(r: &rusqlite::Row<'_>) -> rusqlite::Result<Group> {
    Ok(Group {
        id: GroupId::new(r.get::<_, String>(0)?),
        name: r.get(1)?,
        avatar: r.get(2)?,
        owner: UserId::new(r.get::<_, String>(3)?),
        created_ms: r.get::<_, i64>(4)? as u64,
    })
}

fn row_to_member(r: &rusqlite::Row<'_>) -> rusqlite::Result<Member> {
    let role: String = r.get(1)?;
    Ok(Member {
        user: UserId::new(r.get::<_, String>(0)?),
        role: Role::from_name(&role).unwrap_or(Role::Member),
        joined_ms: r.get::<_, i64>(2)? as u64,
    })
}

fn get_group(c: &Connection, g: &str) -> Result<Option<Group>> {
    c.row(
        "SELECT id, name, avatar, owner, created_ms FROM groups WHERE id = ?1",
        params![g],
        row_to_group,
    )
    .optional()
    .map_err(db_err)
}

#[async_trait]
impl GroupStore for SqliteGroups {
    async fn create(&self, group: Group, members: Vec<Member>) -> Result<()> {
        self.0
            .write(move |c| {
                if get_group(c, group.id.as_str())?.is_some() {
                    return Err(Error::Conflict(format!("group {} exists", group.id)));
                }
                c.exec(
                    "INSERT INTO groups (id, name, avatar, owner, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![group.id.as_str(), group.name, group.avatar, group.owner.as_str(), i64_of(group.created_ms)],
                )
                .map_err(db_err)?;
                for m in &members {
                    c.exec(
                        "INSERT OR IGNORE INTO group_members (group_id, user, role, joined_ms) VALUES (?1, ?2, ?3, ?4)",
                        params![group.id.as_str(), m.user.as_str(), m.role.as_str(), i64_of(m.joined_ms)],
                    )
                    .map_err(db_err)?;
                }
                Ok(())
            })
            .await
    }

    async fn dismiss(&self, group: &GroupId) -> Result<bool> {
        let g = group.clone();
        self.0
            .write(move |c| {
                c.exec(
                    "DELETE FROM group_members WHERE group_id = ?1",
                    params![g.as_str()],
                )
                .map_err(db_err)?;
                Ok(
                    c.exec("DELETE FROM groups WHERE id = ?1", params![g.as_str()])
                        .map_err(db_err)?
                        > 0,
                )
            })
            .await
    }

    async fn get(&self, group: &GroupId) -> Result<Option<Group>> {
        let g = group.clone();
        self.0.read(move |c| get_group(c, g.as_str())).await
    }

    async fn update(
        &self,
        group: &GroupId,
        name: Option<String>,
        avatar: Option<String>,
    ) -> Result<Option<Group>> {
        let g = group.clone();
        self.0
            .write(move |c| {
                c.exec(
                    "UPDATE groups SET name = COALESCE(?2, name), avatar = COALESCE(?3, avatar) WHERE id = ?1",
                    params![g.as_str(), name, avatar],
                )
                .map_err(db_err)?;
                get_group(c, g.as_str())
            })
            .await
    }

    async fn add_members(&self, group: &GroupId, members: Vec<Member>) -> Result<Vec<UserId>> {
        let g = group.clone();
        self.0
            .write(move |c| {
                if get_group(c, g.as_str())?.is_none() {
                    return Err(Error::NotFound(format!("group {g}")));
                }
                let mut added = Vec::new();
                for m in members {
                    let n = c
                        .exec(
                            "INSERT OR IGNORE INTO group_members (group_id, user, role, joined_ms) VALUES (?1, ?2, ?3, ?4)",
                            params![g.as_str(), m.user.as_str(), m.role.as_str(), i64_of(m.joined_ms)],
                        )
                        .map_err(db_err)?;
                    if n > 0 {
                        added.push(m.user);
                    }
                }
                Ok(added)
            })
            .await
    }

    async fn remove_members(&self, group: &GroupId, users: &[UserId]) -> Result<Vec<UserId>> {
        let (g, users) = (group.clone(), users.to_vec());
        self.0
            .write(move |c| {
                if get_group(c, g.as_str())?.is_none() {
                    return Err(Error::NotFound(format!("group {g}")));
                }
                // Report in membership order, as the other backends do.
                let mut stmt = c
                    .prepare_cached(
                        "SELECT user FROM group_members WHERE group_id = ?1 ORDER BY rowid",
                    )
                    .map_err(db_err)?;
                let current = stmt
                    .query_map(params![g.as_str()], |r| {
                        Ok(UserId::new(r.get::<_, String>(0)?))
                    })
                    .map_err(db_err)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(db_err)?;
                let mut removed = Vec::new();
                for u in current.into_iter().filter(|u| users.contains(u)) {
                    c.exec(
                        "DELETE FROM group_members WHERE group_id = ?1 AND user = ?2",
                        params![g.as_str(), u.as_str()],
                    )
                    .map_err(db_err)?;
                    removed.push(u);
                }
                Ok(removed)
            })
            .await
    }

    async fn set_role(&self, group: &GroupId, user: &UserId, role: Role) -> Result<bool> {
        let (g, u) = (group.clone(), user.clone());
        self.0
            .write(move |c| {
                c.exec(
                    "UPDATE group_members SET role = ?3 WHERE group_id = ?1 AND user = ?2",
                    params![g.as_str(), u.as_str(), role.as_str()],
                )
                .map(|n| n > 0)
                .map_err(db_err)
            })
            .await
    }

    async fn members(&self, group: &GroupId) -> Result<Vec<Member>> {
        let g = group.clone();
        self.0
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached("SELECT user, role, joined_ms FROM group_members WHERE group_id = ?1 ORDER BY rowid")
                    .map_err(db_err)?;
                let rows = stmt.query_map(params![g.as_str()], row_to_member).map_err(db_err)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
            })
            .await
    }

    async fn member(&self, group: &GroupId, user: &UserId) -> Result<Option<Member>> {
        let (g, u) = (group.clone(), user.clone());
        self.0
            .read(move |c| {
                c.row(
                    "SELECT user, role, joined_ms FROM group_members WHERE group_id = ?1 AND user = ?2",
                    params![g.as_str(), u.as_str()],
                    row_to_member,
                )
                .optional()
                .map_err(db_err)
            })
            .await
    }

    async fn groups_of(&self, user: &UserId) -> Result<Vec<GroupId>> {
        let u = user.clone();
        self.0
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT group_id FROM group_members WHERE user = ?1 ORDER BY group_id",
                    )
                    .map_err(db_err)?;
                let rows = stmt
                    .query_map(params![u.as_str()], |r| {
                        Ok(GroupId::new(r.get::<_, String>(0)?))
                    })
                    .map_err(db_err)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
            })
            .await
    }
}

// ───────────────────────────── Contacts ─────────────────────────────

/// SQLite [`ContactStore`].
#[derive(Debug, Clone)]
pub struct SqliteContacts(Arc<Db>);

fn exists(c: &Connection, sql: &str, a: &str, b: &str) -> Result<bool> {
    c.row(sql, params![a, b], |_| Ok(()))
        .optional()
        .map(|r| r.is_some())
        .map_err(db_err)
}

fn users_where(c: &Connection, sql: &str, user: &str) -> Result<Vec<UserId>> {
    let mut stmt = c.prepare_cached(sql).map_err(db_err)?;
    let rows = stmt
        .query_map(params![user], |r| Ok(UserId::new(r.get::<_, String>(0)?)))
        .map_err(db_err)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
}

fn befriend(c: &Connection, a: &str, b: &str) -> Result<()> {
    c.exec(
        "DELETE FROM friend_requests WHERE (from_user = ?1 AND to_user = ?2) OR (from_user = ?2 AND to_user = ?1)",
        params![a, b],
    )
    .map_err(db_err)?;
    c.exec(
        "INSERT OR IGNORE INTO friends (user, other) VALUES (?1, ?2), (?2, ?1)",
        params![a, b],
    )
    .map_err(db_err)?;
    Ok(())
}

#[async_trait]
impl ContactStore for SqliteContacts {
    async fn request(&self, from: &UserId, to: &UserId) -> Result<FriendRequestOutcome> {
        let (from, to) = (from.clone(), to.clone());
        self.0
            .write(move |c| {
                let (f, t) = (from.as_str(), to.as_str());
                if exists(
                    c,
                    "SELECT 1 FROM friends WHERE user = ?1 AND other = ?2",
                    f,
                    t,
                )? {
                    return Ok(FriendRequestOutcome::AlreadyFriends);
                }
                if exists(
                    c,
                    "SELECT 1 FROM friend_requests WHERE from_user = ?1 AND to_user = ?2",
                    t,
                    f,
                )? {
                    befriend(c, f, t)?;
                    return Ok(FriendRequestOutcome::BecameFriends);
                }
                c.exec(
                    "INSERT OR IGNORE INTO friend_requests (from_user, to_user) VALUES (?1, ?2)",
                    params![f, t],
                )
                .map_err(db_err)?;
                Ok(FriendRequestOutcome::Pending)
            })
            .await
    }

    async fn accept(&self, user: &UserId, from: &UserId) -> Result<bool> {
        let (user, from) = (user.clone(), from.clone());
        self.0
            .write(move |c| {
                if !exists(
                    c,
                    "SELECT 1 FROM friend_requests WHERE from_user = ?1 AND to_user = ?2",
                    from.as_str(),
                    user.as_str(),
                )? {
                    return Ok(false);
                }
                befriend(c, user.as_str(), from.as_str())?;
                Ok(true)
            })
            .await
    }

    async fn remove(&self, user: &UserId, other: &UserId) -> Result<bool> {
        let (user, other) = (user.clone(), other.clone());
        self.0
            .write(move |c| {
                let a = c
                    .exec(
                        "DELETE FROM friends WHERE (user = ?1 AND other = ?2) OR (user = ?2 AND other = ?1)",
                        params![user.as_str(), other.as_str()],
                    )
                    .map_err(db_err)?;
                let b = c
                    .exec(
                        "DELETE FROM friend_requests WHERE (from_user = ?1 AND to_user = ?2) OR (from_user = ?2 AND to_user = ?1)",
                        params![user.as_str(), other.as_str()],
                    )
                    .map_err(db_err)?;
                Ok(a + b > 0)
            })
            .await
    }

    async fn list(&self, user: &UserId) -> Result<ContactList> {
        let user = user.clone();
        self.0
            .read(move |c| {
                let u = user.as_str();
                Ok(ContactList {
                    friends: users_where(c, "SELECT other FROM friends WHERE user = ?1 ORDER BY other", u)?,
                    incoming: users_where(c, "SELECT from_user FROM friend_requests WHERE to_user = ?1 ORDER BY from_user", u)?,
                    outgoing: users_where(c, "SELECT to_user FROM friend_requests WHERE from_user = ?1 ORDER BY to_user", u)?,
                    blocked: users_where(c, "SELECT other FROM blocks WHERE user = ?1 ORDER BY other", u)?,
                })
            })
            .await
    }

    async fn block(&self, user: &UserId, other: &UserId) -> Result<()> {
        let (user, other) = (user.clone(), other.clone());
        self.0
            .write(move |c| {
                c.exec(
                    "INSERT OR IGNORE INTO blocks (user, other) VALUES (?1, ?2)",
                    params![user.as_str(), other.as_str()],
                )
                .map(drop)
                .map_err(db_err)
            })
            .await
    }

    async fn unblock(&self, user: &UserId, other: &UserId) -> Result<bool> {
        let (user, other) = (user.clone(), other.clone());
        self.0
            .write(move |c| {
                c.exec(
                    "DELETE FROM blocks WHERE user = ?1 AND other = ?2",
                    params![user.as_str(), other.as_str()],
                )
                .map(|n| n > 0)
                .map_err(db_err)
            })
            .await
    }

    async fn is_blocked(&self, user: &UserId, other: &UserId) -> Result<bool> {
        let (user, other) = (user.clone(), other.clone());
        self.0
            .read(move |c| {
                exists(
                    c,
                    "SELECT 1 FROM blocks WHERE user = ?1 AND other = ?2",
                    user.as_str(),
                    other.as_str(),
                )
            })
            .await
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
        history: Arc::new(SqliteHistory(db.clone())),
        inbox: Arc::new(SqliteInbox(db.clone())),
        read_state: Arc::new(SqliteReadState::new(db.clone())),
        groups: Arc::new(SqliteGroups(db.clone())),
        contacts: Arc::new(SqliteContacts(db.clone())),
        accounts: Arc::new(SqliteAccounts(db)),
    }
}

/// Accounts and revoked tokens in SQLite.
pub struct SqliteAccounts(Arc<Db>);

fn row_to_account(r: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        user: UserId::new(r.get::<_, String>(0)?),
        name: r.get(1)?,
        disabled: r.get::<_, i64>(2)? != 0,
        created_ms: r.get::<_, i64>(3)?.max(0) as u64,
    })
}

fn get_account(c: &Connection, user: &str) -> Result<Option<Account>> {
    c.row(
        "SELECT user, name, disabled, created_ms FROM accounts WHERE user = ?1",
        params![user],
        row_to_account,
    )
    .optional()
    .map_err(db_err)
}

#[async_trait]
impl AccountStore for SqliteAccounts {
    async fn create(&self, a: Account) -> Result<bool> {
        self.0
            .write(move |c| {
                c.exec(
                    "INSERT OR IGNORE INTO accounts (user, name, disabled, created_ms)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![
                        a.user.as_str(),
                        a.name,
                        i64::from(a.disabled),
                        i64_of(a.created_ms)
                    ],
                )
                .map(|n| n > 0)
                .map_err(db_err)
            })
            .await
    }

    async fn get(&self, user: &UserId) -> Result<Option<Account>> {
        let user = user.clone();
        self.0.read(move |c| get_account(c, user.as_str())).await
    }

    async fn set_disabled(&self, user: &UserId, disabled: bool) -> Result<Option<Account>> {
        let user = user.clone();
        self.0
            .write(move |c| {
                c.exec(
                    "UPDATE accounts SET disabled = ?2 WHERE user = ?1",
                    params![user.as_str(), i64::from(disabled)],
                )
                .map_err(db_err)?;
                get_account(c, user.as_str())
            })
            .await
    }

    async fn revoke_token(&self, token_id: &str, expires_at: u64) -> Result<()> {
        let token_id = token_id.to_owned();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.0
            .write(move |c| {
                c.exec(
                    "DELETE FROM revoked_tokens WHERE expires_at < ?1",
                    params![i64_of(now)],
                )
                .map_err(db_err)?;
                c.exec(
                    "INSERT INTO revoked_tokens (token_id, expires_at) VALUES (?1, ?2)
                     ON CONFLICT (token_id) DO UPDATE SET expires_at = excluded.expires_at",
                    params![token_id, i64_of(expires_at)],
                )
                .map(drop)
                .map_err(db_err)
            })
            .await
    }

    async fn is_revoked(&self, token_id: &str) -> Result<bool> {
        let token_id = token_id.to_owned();
        self.0
            .read(move |c| {
                c.row(
                    "SELECT 1 FROM revoked_tokens WHERE token_id = ?1",
                    params![token_id],
                    |_| Ok(()),
                )
                .optional()
                .map(|r| r.is_some())
                .map_err(db_err)
            })
            .await
    }
}
