//! The writer thread: every write to a SQLite database, group-committed.
//!
//! Writes arrive as jobs on a bounded queue. The writer takes the first job
//! waiting, then every other job already queued, up to
//! [`SqliteOptions::max_batch`](super::SqliteOptions::max_batch), lingering up
//! to [`SqliteOptions::max_wait`](super::SqliteOptions::max_wait) for more.
//! It runs them in one transaction, commits once (one fsync for the batch),
//! and only then answers each caller. A job that fails fails alone: a
//! general write runs in a savepoint of its own and is rolled back to it; a
//! unit of work checks everything before its first write, so it fails
//! before writing anything, and runs without a savepoint (a savepoint
//! copies every page the job touches to the sub-journal, which measured as
//! a fifth of the writer's work). If a write fails after all (the disk, a
//! broken invariant), the whole transaction is rolled back and every job in
//! it fails; so does every job of a batch whose commit fails. Nothing of a
//! failed job is ever kept.
//!
//! **Durability off the critical path.** With [`Durability::Full`], SQLite
//! itself runs at `synchronous=NORMAL` (a commit does not wait for the
//! disk) and a second thread, the syncer, makes commits durable: it takes
//! every batch committed so far, fsyncs the write-ahead log once, and only
//! then answers their callers. The writer meanwhile runs the next batch, so
//! the disk's latency (0.2 ms to several ms here) no longer stalls the
//! CPU's work, and one fsync covers as many batches as piled up during the
//! last. No reader may serve what is not yet durable: a read waits, after
//! it ran, until every batch whose commit had begun is synced
//! ([`Durable::wait_for_reads`]). An fsync that fails leaves the database
//! refusing every write (its state on disk is then unknown).
//!
//! [`Durability::Full`]: super::Durability::Full
//!
//! The writer is the only writer of the file (one process owns it), so it
//! remembers what it wrote in [`WriterState`]: each conversation's tail (last
//! seq, running unread count), cursors, and list entries. A send then costs
//! a de-duplication lookup and the writes themselves. Whenever a job or a
//! commit fails, the writer forgets all of it, so its memory never runs
//! ahead of the file.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// It did what it was asked (its result may still be a refusal that
    /// wrote nothing).
    Done,
    /// It failed; what it wrote must be undone.
    Failed,
}

/// Run by the writer inside the batch's transaction: how the job ended,
/// and how to answer its caller once the batch is settled.
type Run = Box<dyn FnOnce(&Connection, &mut WriterState) -> (Ended, Completion) + Send>;

/// A write waiting for the writer.
pub(crate) struct Job {
    run: Run,
    /// Whether it runs in a savepoint of its own (see the module doc).
    savepoint: bool,
}

/// Wraps `f` as a job in a savepoint of its own, whose result reaches
/// `reply` after the commit; an `Err` rolls it back.
pub(crate) fn job<R: Send + 'static>(
    f: impl FnOnce(&Connection, &mut WriterState) -> Result<R> + Send + 'static,
    reply: oneshot::Sender<Result<R>>,
) -> Job {
    Job {
        run: Box::new(move |conn, state| {
            let r = f(conn, state);
            let ended = if r.is_ok() {
                Ended::Done
            } else {
                Ended::Failed
            };
            (ended, answer(r, reply))
        }),
        savepoint: true,
    }
}

/// Wraps `f` as a job without a savepoint: `f` checks before it writes,
/// answers a refusal as its result with [`Ended::Done`], and says
/// [`Ended::Failed`] only when a write failed, which rolls back the whole
/// transaction.
pub(crate) fn checked_job<R: Send + 'static>(
    f: impl FnOnce(&Connection, &mut WriterState) -> (Ended, Result<R>) + Send + 'static,
    reply: oneshot::Sender<Result<R>>,
) -> Job {
    Job {
        run: Box::new(move |conn, state| {
            let (ended, r) = f(conn, state);
            (ended, answer(r, reply))
        }),
        savepoint: false,
    }
}

fn answer<R: Send + 'static>(r: Result<R>, reply: oneshot::Sender<Result<R>>) -> Completion {
    Box::new(move |commit| {
        let _ = reply.send(match commit {
            Ok(()) => r,
            Err(e) => Err(Error::store(BACKEND, format!("commit failed: {e}"))),
        });
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
    /// Cursors moved by the running job and not yet written.
    moved: FastMap<CursorKey, u64>,
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

    /// Moves a cursor in memory; the job writes it at its end
    /// ([`WriterState::take_moved_cursors`]), once however often it moved.
    pub(crate) fn move_cursor(&mut self, key: CursorKey, seq: u64) {
        self.moved.insert(key.clone(), seq);
        self.set_cursor(key, seq);
    }

    /// The cursors the running job moved, to write now.
    pub(crate) fn take_moved_cursors(&mut self) -> Vec<(CursorKey, u64)> {
        self.moved.drain().collect()
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

    /// Drops everything remembered (after a failed write).
    pub(crate) fn forget(&mut self) {
        self.tails.clear();
        self.cursors.clear();
        self.moved.clear();
        self.listed.clear();
    }
}

/// How the writer batches.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_batch: usize,
    pub(crate) max_wait: Duration,
}

/// How far commits have gone: begun, and made durable. Shared by the
/// writer, the syncer and every reader.
#[derive(Debug)]
pub(crate) struct Durable {
    /// Whether commits wait for the syncer's fsync (`Durability::Full`).
    synced_by_us: bool,
    /// Batches whose commit has begun (a read that ran after this moved may
    /// have seen them).
    begun: AtomicU64,
    /// Batches made durable (or settled by failure).
    synced: tokio::sync::watch::Sender<u64>,
    /// Set when an fsync failed: nothing is written any more.
    broken: AtomicBool,
}

impl Durable {
    pub(crate) fn new(synced_by_us: bool) -> Self {
        Durable {
            synced_by_us,
            begun: AtomicU64::new(0),
            synced: tokio::sync::watch::Sender::new(0),
            broken: AtomicBool::new(false),
        }
    }

    /// Waits until everything a read that has just finished could have
    /// seen is durable.
    pub(crate) async fn wait_for_reads(&self) -> Result<()> {
        if !self.synced_by_us {
            return Ok(());
        }
        let need = self.begun.load(Ordering::Acquire);
        let mut synced = self.synced.subscribe();
        synced
            .wait_for(|s| *s >= need)
            .await
            .map(drop)
            .map_err(|_| Error::Unavailable("sqlite writer has stopped".into()))?;
        if self.broken.load(Ordering::Acquire) {
            return Err(Error::store(
                BACKEND,
                "the database could not be made durable (fsync failed)",
            ));
        }
        Ok(())
    }
}

/// A committed batch on its way to the syncer.
struct Committed {
    id: u64,
    /// Each job's completion and its own result, given once the batch is
    /// durable (or has failed).
    answers: Vec<(Completion, std::result::Result<(), String>)>,
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
    durable: std::sync::Arc<Durable>,
    wal: PathBuf,
) {
    let mut state = WriterState::default();
    let mut batch: Vec<Job> = Vec::with_capacity(limits.max_batch);
    let (to_syncer, syncer) = if durable.synced_by_us {
        let (tx, rx) = std::sync::mpsc::channel::<Committed>();
        let d = durable.clone();
        let thread = std::thread::Builder::new()
            .name("imkit-sqlite-syncer".into())
            .spawn(move || sync_loop(&rx, &d, &wal));
        match thread {
            Ok(t) => (Some(tx), Some(t)),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the sqlite syncer");
                durable.broken.store(true, Ordering::Release);
                (None, None)
            }
        }
    } else {
        (None, None)
    };
    while let Ok(first) = jobs.recv() {
        batch.push(first);
        gather(&jobs, &mut batch, limits);
        if durable.broken.load(Ordering::Acquire) {
            // Dropped unrun: each caller sees its write fail.
            stats
                .failed
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            batch.clear();
            continue;
        }
        let id = durable.begun.fetch_add(1, Ordering::AcqRel) + 1;
        let answers = commit(&conn, &mut state, &mut batch, stats);
        match &to_syncer {
            Some(syncer) => {
                if let Err(std::sync::mpsc::SendError(c)) = syncer.send(Committed { id, answers }) {
                    settle(c.answers, Some("the sqlite syncer has stopped"));
                }
            }
            None => {
                settle(answers, None);
                durable.synced.send_replace(id);
            }
        }
    }
    // The syncer makes the last batches durable before the file is let go.
    drop(to_syncer);
    if let Some(t) = syncer {
        let _ = t.join();
    }
}

/// Answers a batch's callers, or fails them all with `error`.
fn settle(answers: Vec<(Completion, std::result::Result<(), String>)>, error: Option<&str>) {
    for (complete, r) in answers {
        complete(match error {
            Some(e) => Err(e.to_owned()),
            None => r,
        });
    }
}

/// The syncer: fsyncs the write-ahead log once for every batch committed
/// since the last fsync, then answers their callers.
fn sync_loop(
    batches: &std::sync::mpsc::Receiver<Committed>,
    durable: &Durable,
    wal: &std::path::Path,
) {
    while let Ok(first) = batches.recv() {
        let mut ready = vec![first];
        while let Ok(more) = batches.try_recv() {
            ready.push(more);
        }
        let last = ready.iter().map(|b| b.id).max().unwrap_or(0);
        let started = Instant::now();
        let synced = std::fs::File::open(wal).and_then(|f| f.sync_data());
        crate::telemetry::store_fsync(started.elapsed());
        let error = match &synced {
            Ok(()) => None,
            Err(e) => {
                tracing::error!(error = %e, wal = %wal.display(), "fsync of the write-ahead log failed; refusing further writes");
                durable.broken.store(true, Ordering::Release);
                Some("fsync of the write-ahead log failed")
            }
        };
        for b in ready {
            settle(b.answers, error);
        }
        durable.synced.send_replace(last);
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

/// Runs one batch in one transaction; returns each job's completion with
/// its result, for the caller to give once the batch is durable.
fn commit(
    conn: &Connection,
    state: &mut WriterState,
    batch: &mut Vec<Job>,
    stats: &WriterStats,
) -> Vec<(Completion, std::result::Result<(), String>)> {
    let n = batch.len() as u64;
    let started = Instant::now();
    stats.transactions.fetch_add(1, Ordering::Relaxed);
    stats.writes.fetch_add(n, Ordering::Relaxed);
    stats.largest.fetch_max(n, Ordering::Relaxed);
    if let Err(e) = run_cached(conn, "BEGIN IMMEDIATE") {
        // Dropping a job unrun drops its reply channel: the caller gets an
        // error and knows the write did not happen.
        tracing::error!(error = %e, "sqlite cannot begin a transaction");
        stats.failed.fetch_add(n, Ordering::Relaxed);
        batch.clear();
        return Vec::new();
    }
    let mut done: Vec<(Completion, bool)> = Vec::with_capacity(batch.len());
    let mut aborted: Option<String> = None;
    for job in batch.drain(..) {
        if aborted.is_some() {
            // Dropped unrun: its caller sees the write fail.
            stats.failed.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        match run_job(conn, state, job) {
            Ok(entry) => done.push(entry),
            Err(why) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                aborted = Some(why);
            }
        }
    }
    let commit = match aborted {
        Some(why) => Err(why),
        None => run_cached(conn, "COMMIT").map_err(|e| e.to_string()),
    };
    if commit.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
        state.forget();
    }
    crate::telemetry::store_commit("sqlite", n as usize, started.elapsed());
    done.into_iter()
        .map(|(complete, ok)| {
            let r = match &commit {
                Ok(()) if ok => Ok(()),
                Ok(()) => Err("savepoint failed".to_owned()),
                Err(e) => Err(e.clone()),
            };
            if r.is_err() {
                stats.failed.fetch_add(1, Ordering::Relaxed);
            }
            (complete, r)
        })
        .collect()
}

/// Runs one job. `Ok` gives its completion and whether what it did stands;
/// `Err` means the transaction must be rolled back (the job's completion
/// is gone with it, so its caller sees the write fail).
fn run_job(
    conn: &Connection,
    state: &mut WriterState,
    job: Job,
) -> std::result::Result<(Completion, bool), String> {
    let Job { run, savepoint } = job;
    if savepoint && let Err(e) = run_cached(conn, "SAVEPOINT job") {
        tracing::error!(error = %e, "sqlite savepoint failed");
        return Err(e.to_string());
    }
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(conn, state)));
    let (ended, complete) = match ran {
        Ok(r) => r,
        Err(_) => {
            // The caller's reply channel went with the job: it sees the
            // write fail.
            tracing::error!("sqlite write job panicked");
            state.forget();
            let undone = savepoint
                && run_cached(conn, "ROLLBACK TO job").is_ok()
                && run_cached(conn, "RELEASE job").is_ok();
            return if undone {
                Ok((Box::new(|_| {}), true))
            } else {
                Err("a write job panicked".into())
            };
        }
    };
    match (ended, savepoint) {
        (Ended::Done, true) => {
            let released = run_cached(conn, "RELEASE job").is_ok();
            Ok((complete, released))
        }
        (Ended::Done, false) => Ok((complete, true)),
        (Ended::Failed, true) => {
            state.forget();
            let undone = run_cached(conn, "ROLLBACK TO job").is_ok()
                && run_cached(conn, "RELEASE job").is_ok();
            if undone {
                Ok((complete, true))
            } else {
                Err("cannot roll back a failed write".into())
            }
        }
        (Ended::Failed, false) => {
            state.forget();
            complete(Err("a write failed; its transaction was rolled back".into()));
            Err("a write failed after its checks".into())
        }
    }
}

/// Runs a parameterless statement through the prepared-statement cache.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

#[cfg(test)]
mod tests;
