//! The writer thread: every write to a SQLite database, group-committed.
//!
//! Writes arrive as jobs on a bounded queue. The writer takes the first job
//! waiting, then every other job already queued, up to
//! [`SqliteOptions::max_batch`](super::SqliteOptions::max_batch), lingering up
//! to [`SqliteOptions::max_wait`](super::SqliteOptions::max_wait) for more.
//! It runs them in one transaction, each in its own savepoint, commits once
//! (one fsync for the batch), and only then answers each caller. A job that
//! fails is rolled back to its savepoint and fails alone; a commit that
//! fails fails every job of the batch, and nothing of it is kept.
//!
//! The writer is the only writer of the file (one process owns it), so it
//! remembers what it wrote in [`WriterState`]: each conversation's tail (last
//! seq, running unread count), cursors, and list entries. A send then costs
//! a de-duplication lookup and the writes themselves. Whenever a job or a
//! commit fails, the writer forgets all of it, so its memory never runs
//! ahead of the file.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::BACKEND;
use crate::model::{ConversationId, DeviceId, UserId};
use crate::{Error, Result};

type FastState = foldhash::fast::RandomState;
type FastMap<K, V> = std::collections::HashMap<K, V, FastState>;

/// Entries each map of [`WriterState`] holds before it starts over.
const STATE_CAP: usize = 200_000;

type Completion = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;

/// A write: runs inside the batch's transaction and says whether it
/// succeeded, with how to answer its caller once the batch is settled.
pub(crate) type Job = Box<dyn FnOnce(&Connection, &mut WriterState) -> (bool, Completion) + Send>;

/// Wraps `f` as a job whose result reaches `reply` after the commit.
pub(crate) fn job<R: Send + 'static>(
    f: impl FnOnce(&Connection, &mut WriterState) -> Result<R> + Send + 'static,
    reply: oneshot::Sender<Result<R>>,
) -> Job {
    Box::new(move |conn, state| {
        let r = f(conn, state);
        let ok = r.is_ok();
        let done: Completion = Box::new(move |commit| {
            let _ = reply.send(match commit {
                Ok(()) => r,
                Err(e) => Err(Error::store(BACKEND, format!("commit failed: {e}"))),
            });
        });
        (ok, done)
    })
}

/// The last message of a conversation, as the writer knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Tail {
    /// Its seq (0 for an empty conversation).
    pub(crate) max_seq: u64,
    /// Messages up to it that count as unread.
    pub(crate) countable_upto: u64,
}

/// A cursor, as a cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum CursorKey {
    Read(UserId, ConversationId),
    Delivered(UserId, DeviceId, ConversationId),
}

/// What the writer remembers of its own writes. Only ever filled from a
/// write it made or a read inside its transaction, and forgotten whenever
/// a job or a commit fails.
#[derive(Debug, Default)]
pub(crate) struct WriterState {
    tails: FastMap<ConversationId, Tail>,
    cursors: FastMap<CursorKey, u64>,
    listed: HashSet<(UserId, ConversationId), FastState>,
}

fn capped<K, V, S>(
    map: &mut std::collections::HashMap<K, V, S>,
) -> &mut std::collections::HashMap<K, V, S> {
    if map.len() >= STATE_CAP {
        map.clear();
    }
    map
}

impl WriterState {
    pub(crate) fn tail(&self, conversation: &ConversationId) -> Option<Tail> {
        self.tails.get(conversation).copied()
    }

    pub(crate) fn set_tail(&mut self, conversation: ConversationId, tail: Tail) {
        capped(&mut self.tails).insert(conversation, tail);
    }

    pub(crate) fn cursor(&self, key: &CursorKey) -> Option<u64> {
        self.cursors.get(key).copied()
    }

    pub(crate) fn set_cursor(&mut self, key: CursorKey, seq: u64) {
        capped(&mut self.cursors).insert(key, seq);
    }

    pub(crate) fn is_listed(&self, user: &UserId, conversation: &ConversationId) -> bool {
        // Borrowed lookup without cloning into a tuple would need a custom
        // key type; the clone is two reference-count increments.
        self.listed.contains(&(user.clone(), conversation.clone()))
    }

    pub(crate) fn set_listed(&mut self, user: UserId, conversation: ConversationId) {
        if self.listed.len() >= STATE_CAP {
            self.listed.clear();
        }
        self.listed.insert((user, conversation));
    }

    fn forget(&mut self) {
        self.tails.clear();
        self.cursors.clear();
        self.listed.clear();
    }
}

/// How the writer batches.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_batch: usize,
    pub(crate) max_wait: Duration,
}

/// Counters of the writer's work, for metrics and tests.
#[derive(Debug, Default)]
pub struct WriterStats {
    transactions: AtomicU64,
    writes: AtomicU64,
    failed: AtomicU64,
    largest: AtomicU64,
}

impl WriterStats {
    /// Transactions committed (or attempted).
    pub fn transactions(&self) -> u64 {
        self.transactions.load(Ordering::Relaxed)
    }

    /// Writes run, in all transactions.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Writes that failed (their own error, or their batch's commit).
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// The most writes one transaction held.
    pub fn largest_batch(&self) -> u64 {
        self.largest.load(Ordering::Relaxed)
    }
}

/// Runs the writer until every sender of `jobs` is gone and the last batch
/// is committed.
pub(crate) fn run(
    conn: Connection,
    jobs: flume::Receiver<Job>,
    limits: Limits,
    stats: &WriterStats,
) {
    let mut state = WriterState::default();
    let mut batch: Vec<Job> = Vec::with_capacity(limits.max_batch);
    while let Ok(first) = jobs.recv() {
        batch.push(first);
        gather(&jobs, &mut batch, limits);
        commit(&conn, &mut state, &mut batch, stats);
    }
}

/// Adds the jobs already waiting to `batch`, up to the batch limit, and
/// lingers for more up to `max_wait`.
fn gather(jobs: &flume::Receiver<Job>, batch: &mut Vec<Job>, limits: Limits) {
    let deadline = Instant::now() + limits.max_wait;
    while batch.len() < limits.max_batch {
        match jobs.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) if limits.max_wait.is_zero() => return,
            Err(_) => match jobs.recv_deadline(deadline) {
                Ok(job) => batch.push(job),
                Err(_) => return,
            },
        }
    }
}

/// Runs one batch in one transaction and answers its callers.
fn commit(conn: &Connection, state: &mut WriterState, batch: &mut Vec<Job>, stats: &WriterStats) {
    let n = batch.len() as u64;
    stats.transactions.fetch_add(1, Ordering::Relaxed);
    stats.writes.fetch_add(n, Ordering::Relaxed);
    stats.largest.fetch_max(n, Ordering::Relaxed);
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        // Dropping a job unrun drops its reply channel: the caller gets an
        // error and knows the write did not happen.
        tracing::error!(error = %e, "sqlite cannot begin a transaction");
        stats.failed.fetch_add(n, Ordering::Relaxed);
        batch.clear();
        return;
    }
    let mut done = Vec::with_capacity(batch.len());
    for job in batch.drain(..) {
        if let Err(e) = run_cached(conn, "SAVEPOINT job") {
            tracing::error!(error = %e, "sqlite savepoint failed");
            stats.failed.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(conn, state)));
        let (ok, complete) = match ran {
            Ok(r) => r,
            Err(_) => {
                // The caller's reply channel went with the job: it sees
                // the write fail.
                tracing::error!("sqlite write job panicked");
                let _ = run_cached(conn, "ROLLBACK TO job")
                    .and_then(|()| run_cached(conn, "RELEASE job"));
                state.forget();
                stats.failed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        let ended = if ok {
            run_cached(conn, "RELEASE job").is_ok()
        } else {
            state.forget();
            run_cached(conn, "ROLLBACK TO job").is_ok() && run_cached(conn, "RELEASE job").is_ok()
        };
        done.push((complete, ok && ended, ended));
    }
    let commit = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
    if commit.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
        state.forget();
    }
    for (complete, ok, ended) in done {
        let r = match (&commit, ended) {
            (Ok(()), true) => Ok(()),
            (Ok(()), false) => Err("savepoint failed".to_owned()),
            (Err(e), _) => Err(e.clone()),
        };
        if !ok || r.is_err() {
            stats.failed.fetch_add(1, Ordering::Relaxed);
        }
        complete(r);
    }
}

/// Runs a parameterless statement through the prepared-statement cache.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::{Db, SqliteOptions};
    use crate::Error;

    async fn db(max_batch: usize, max_wait_ms: u64) -> (tempfile::TempDir, Arc<Db>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = SqliteOptions {
            max_batch,
            max_wait: std::time::Duration::from_millis(max_wait_ms),
            ..SqliteOptions::default()
        };
        let db = Db::open(dir.path().join("w.db"), options).expect("open");
        db.write(|c| {
            c.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
                .map_err(super::super::db_err)
        })
        .await
        .expect("create");
        (dir, db)
    }

    /// Queues `n` inserts at once (they pile up while the writer is busy)
    /// and waits for all of them.
    async fn insert_many(db: &Arc<Db>, n: i64) -> Vec<crate::Result<()>> {
        let mut tasks = Vec::new();
        for k in 0..n {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                db.write(move |c| {
                    c.execute("INSERT INTO t (k, v) VALUES (?1, 'x')", [k])
                        .map(drop)
                        .map_err(super::super::db_err)
                })
                .await
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("task"));
        }
        out
    }

    async fn count(db: &Arc<Db>) -> i64 {
        db.read(|c| {
            c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
                .map_err(super::super::db_err)
        })
        .await
        .expect("count")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn waiting_writes_share_a_transaction_split_at_max_batch() {
        // A linger of 50 ms lets all 300 writes queue before the first
        // commit, so the batches are full ones of 64 and a remainder.
        let (_dir, db) = db(64, 50).await;
        let before = db.writer_stats().transactions();
        let results = insert_many(&db, 300).await;
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(count(&db).await, 300);
        let stats = db.writer_stats();
        let txs = stats.transactions() - before;
        assert!(
            (5..=10).contains(&txs),
            "300 writes at max_batch 64 took {txs} transactions"
        );
        assert_eq!(stats.largest_batch(), 64, "no batch exceeds max_batch");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failing_write_fails_alone() {
        let (_dir, db) = db(1_024, 50).await;
        let mut tasks = Vec::new();
        for k in 0..20i64 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                db.write(move |c| {
                    c.execute("INSERT INTO t (k, v) VALUES (?1, 'x')", [k])
                        .map_err(super::super::db_err)?;
                    if k == 7 {
                        // Wrote a row, then failed: the row must go too.
                        return Err(Error::InvalidArgument("seven fails".into()));
                    }
                    Ok(())
                })
                .await
            }));
        }
        let mut failed = Vec::new();
        for (k, t) in tasks.into_iter().enumerate() {
            if t.await.expect("task").is_err() {
                failed.push(k);
            }
        }
        assert_eq!(
            failed,
            vec![7],
            "only the failing write's caller sees an error"
        );
        assert_eq!(
            count(&db).await,
            19,
            "its row was rolled back, the others kept"
        );
        let seven: i64 = db
            .read(|c| {
                c.query_row("SELECT COUNT(*) FROM t WHERE k = 7", [], |r| r.get(0))
                    .map_err(super::super::db_err)
            })
            .await
            .expect("read");
        assert_eq!(seven, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_panicking_write_fails_alone_and_the_writer_carries_on() {
        let (_dir, db) = db(1_024, 20).await;
        let panicking = {
            let db = db.clone();
            tokio::spawn(async move {
                db.write(|_| -> crate::Result<()> { panic!("a bug in a write") })
                    .await
            })
        };
        let results = insert_many(&db, 10).await;
        assert!(panicking.await.expect("task").is_err());
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(count(&db).await, 10);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_lone_write_does_not_wait_without_linger() {
        let (_dir, db) = db(1_024, 0).await;
        let before = db.writer_stats().transactions();
        for k in 0..5i64 {
            db.write(move |c| {
                c.execute("INSERT INTO t (k, v) VALUES (?1, 'x')", [k])
                    .map(drop)
                    .map_err(super::super::db_err)
            })
            .await
            .expect("write");
            assert_eq!(count(&db).await, k + 1);
        }
        assert_eq!(
            db.writer_stats().transactions() - before,
            5,
            "sequential writes commit one by one"
        );
    }
}
