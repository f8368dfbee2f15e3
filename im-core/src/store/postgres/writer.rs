//! The writer: this node's units of work, group-committed.
//!
//! Jobs (the units one caller commits together) wait on a bounded queue.
//! The writer takes the first, then every job already queued up to
//! [`PostgresOptions::max_batch`] units, and runs them on its own
//! connection as one transaction: `BEGIN` and one `apply_unit` call per
//! unit are sent pipelined (one round trip for the lot), and when every
//! call has answered, one `COMMIT` (one WAL flush). Only then is each
//! caller answered.
//!
//! Units are applied sorted by conversation (stably, so one caller's units
//! of a conversation keep their order): every node's writer then takes the
//! conversations' counter rows in the same order, which rules out
//! deadlocks between them. Should PostgreSQL still report one, or a
//! serialization failure, the batch is run again (up to
//! [`RETRIES`] times); nothing of a rolled-back attempt remains.
//!
//! A refusal (a recall of a message that does not exist) is answered by
//! the function without writing, so it fails only its own unit. Anything
//! else that goes wrong (the connection, the server) rolls the batch back
//! and fails every unit in it; the connection is opened again for the next
//! batch. A batch that takes longer than
//! [`PostgresOptions::batch_timeout`] is abandoned the same way. A caller
//! told of a failure may resend: de-duplication answers a resend of a
//! message that did get stored with the original.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use imkit_proto::pb;
use prost::Message as _;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{Client, Statement};

use super::{BACKEND, PostgresOptions, i64_of, u64_of};
use crate::model::*;
use crate::store::{Committed, Cursor, MoveTo, Moved, UnitOfWork};
use crate::{Error, Result};

/// How many times a batch is run again after a deadlock or serialization
/// failure.
pub const RETRIES: usize = 3;

const APPLY: &str =
    "SELECT status, o_conv, o_seq, o_id, o_device, o_ts, o_content, o_recalled, befores, afters
     FROM apply_unit($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";

/// The units one caller commits together, and where their answers go.
struct Job {
    units: Vec<UnitOfWork>,
    reply: oneshot::Sender<Vec<Result<Committed>>>,
}

/// The handle callers queue jobs on.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Job>,
    stats: Arc<Counters>,
}

/// What a writer has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions committed.
    pub batches: u64,
    /// Units of work in them.
    pub units: u64,
    /// Batches that failed (every unit in them answered with the error).
    pub failed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    batches: AtomicU64,
    units: AtomicU64,
    failed: AtomicU64,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("units", &self.units.len())
            .finish()
    }
}

impl Writer {
    /// Starts the writer task for the database `config` names.
    pub(crate) fn start(config: tokio_postgres::Config, options: &PostgresOptions) -> Writer {
        let (queue, jobs) = mpsc::channel(options.queue.max(1));
        let stats = Arc::new(Counters::default());
        let task = Task {
            stats: stats.clone(),
            config,
            max_batch: options.max_batch.max(1),
            batch_timeout: options.batch_timeout,
            conn: None,
        };
        tokio::spawn(task.run(jobs));
        Writer { queue, stats }
    }

    /// What the writer has done so far.
    pub(crate) fn stats(&self) -> WriterStats {
        WriterStats {
            batches: self.stats.batches.load(Ordering::Relaxed),
            units: self.stats.units.load(Ordering::Relaxed),
            failed: self.stats.failed.load(Ordering::Relaxed),
        }
    }

    /// Commits `units`, each all or nothing, answering each in order.
    pub(crate) async fn commit_all(&self, units: Vec<UnitOfWork>) -> Vec<Result<Committed>> {
        let n = units.len();
        let (reply, answer) = oneshot::channel();
        if self.queue.send(Job { units, reply }).await.is_err() {
            return failed(
                n,
                &Error::Unavailable("the postgres writer has stopped".into()),
            );
        }
        answer.await.unwrap_or_else(|_| {
            failed(
                n,
                &Error::Unavailable("the postgres writer has stopped".into()),
            )
        })
    }
}

fn failed(n: usize, e: &Error) -> Vec<Result<Committed>> {
    (0..n).map(|_| Err(e.clone())).collect()
}

/// The writer's connection and its prepared statement.
struct Conn {
    client: Client,
    apply: Statement,
}

struct Task {
    stats: Arc<Counters>,
    config: tokio_postgres::Config,
    max_batch: usize,
    batch_timeout: Duration,
    conn: Option<Conn>,
}

/// One unit's parameters, owned for the pipelined calls to borrow.
struct Params {
    conv: String,
    id: Option<uuid::Uuid>,
    sender: Option<String>,
    device: Option<String>,
    cmid: Option<String>,
    ts: Option<i64>,
    content: Option<Vec<u8>>,
    countable: Option<bool>,
    recall: Option<i64>,
    list: Vec<String>,
    users: Vec<String>,
    devices: Vec<String>,
    kinds: Vec<i16>,
    targets: Vec<i64>,
    journal: Option<Vec<u8>>,
}

impl Params {
    fn of(unit: &UnitOfWork) -> Params {
        let m = unit.append.as_ref();
        let mut p = Params {
            conv: unit.conversation.as_str().to_owned(),
            id: m.map(|m| m.id.0),
            sender: m.map(|m| m.sender.as_str().to_owned()),
            device: m.map(|m| m.sender_device.as_str().to_owned()),
            cmid: m.map(|m| m.client_msg_id.clone()),
            ts: m.map(|m| i64_of(m.timestamp_ms)),
            content: m.map(|m| m.content.encode_to_vec()),
            countable: m.map(|m| is_user_content(&m.content)),
            recall: m.and_then(|m| recall_target(&m.content)).map(i64_of),
            list: unit
                .list_for
                .iter()
                .map(|u| u.as_str().to_owned())
                .collect(),
            users: Vec::with_capacity(unit.moves.len()),
            devices: Vec::with_capacity(unit.moves.len()),
            kinds: Vec::with_capacity(unit.moves.len()),
            targets: Vec::with_capacity(unit.moves.len()),
            journal: unit.journal.clone(),
        };
        for mv in &unit.moves {
            let (user, device) = match &mv.cursor {
                Cursor::Read(u) => (u.as_str(), ""),
                Cursor::Delivered(u, d) => (u.as_str(), d.as_str()),
            };
            p.users.push(user.to_owned());
            p.devices.push(device.to_owned());
            let (kind, target) = match mv.to {
                MoveTo::Seq(s) => (0, i64_of(s)),
                MoveTo::Appended => (1, 0),
                MoveTo::BeforeAppended => (2, 0),
            };
            p.kinds.push(kind);
            p.targets.push(target);
        }
        p
    }
}

impl Task {
    async fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        while let Some(first) = jobs.recv().await {
            let mut batch = vec![first];
            let mut units: usize = batch[0].units.len();
            while units < self.max_batch {
                match jobs.try_recv() {
                    Ok(job) => {
                        units += job.units.len();
                        batch.push(job);
                    }
                    Err(_) => break,
                }
            }
            self.run_batch(batch).await;
        }
    }

    /// Runs a batch and answers every job in it.
    async fn run_batch(&mut self, batch: Vec<Job>) {
        let mut units = Vec::new();
        let mut replies = Vec::with_capacity(batch.len());
        for job in batch {
            replies.push((job.reply, job.units.len()));
            units.extend(job.units);
        }
        let mut answers = self.commit_units(units).await.into_iter();
        for (reply, n) in replies {
            let _ = reply.send(answers.by_ref().take(n).collect());
        }
    }

    /// Commits units in one transaction, retrying after a deadlock.
    async fn commit_units(&mut self, units: Vec<UnitOfWork>) -> Vec<Result<Committed>> {
        let started = std::time::Instant::now();
        let answers = self.commit_checked(units).await;
        crate::telemetry::store_commit("postgres", answers.len(), started.elapsed());
        answers
    }

    /// [`Self::commit_units`] without the timing.
    async fn commit_checked(&mut self, units: Vec<UnitOfWork>) -> Vec<Result<Committed>> {
        let n = units.len();
        // Reject malformed units before they reach the batch.
        let mut checked: Vec<Option<Result<Committed>>> = Vec::with_capacity(n);
        let mut valid = Vec::with_capacity(n);
        for (i, unit) in units.into_iter().enumerate() {
            match unit.validate() {
                Ok(()) => {
                    checked.push(None);
                    valid.push((i, unit));
                }
                Err(e) => checked.push(Some(Err(e))),
            }
        }
        valid.sort_by(|a, b| a.1.conversation.cmp(&b.1.conversation));
        let params: Vec<Params> = valid.iter().map(|(_, u)| Params::of(u)).collect();
        let mut attempt = 0;
        let outcome = loop {
            if params.is_empty() {
                break Ok(Vec::new());
            }
            let run = tokio::time::timeout(self.batch_timeout, self.transaction(&params)).await;
            match run {
                Ok(Ok(rows)) => break Ok(rows),
                Ok(Err(e)) if is_retryable(&e) && attempt < RETRIES => {
                    attempt += 1;
                    tracing::debug!(attempt, error = %e, "postgres batch retried");
                }
                Ok(Err(e)) => {
                    if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
                        self.conn = None;
                    }
                    break Err(Error::store(BACKEND, super::schema::error_text(&e)));
                }
                Err(_) => {
                    // The connection's state is unknown: start over.
                    self.conn = None;
                    break Err(Error::store(
                        BACKEND,
                        format!("a batch took longer than {:?}", self.batch_timeout),
                    ));
                }
            }
        };
        match outcome {
            Ok(rows) => {
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .units
                    .fetch_add(rows.len() as u64, Ordering::Relaxed);
                for ((i, unit), row) in valid.into_iter().zip(rows) {
                    checked[i] = Some(answer(unit, row));
                }
            }
            Err(e) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                for (i, _) in valid {
                    checked[i] = Some(Err(e.clone()));
                }
            }
        }
        checked
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::store(BACKEND, "a unit went unanswered"))))
            .collect()
    }

    /// The writer's connection, opened if there is none.
    async fn conn(&mut self) -> std::result::Result<&Conn, tokio_postgres::Error> {
        let conn = match self.conn.take() {
            Some(c) if !c.client.is_closed() => c,
            _ => {
                let (client, connection) = self.config.connect(tokio_postgres::NoTls).await?;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "postgres writer connection ended");
                    }
                });
                let apply = client.prepare(APPLY).await?;
                Conn { client, apply }
            }
        };
        Ok(self.conn.insert(conn))
    }

    /// One attempt: the units pipelined in a transaction, then the commit.
    async fn transaction(
        &mut self,
        params: &[Params],
    ) -> std::result::Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        let conn = self.conn().await?;
        let (client, apply) = (&conn.client, &conn.apply);
        let args: Vec<[&(dyn tokio_postgres::types::ToSql + Sync); 14]> = params
            .iter()
            .map(|p| -> [&(dyn tokio_postgres::types::ToSql + Sync); 14] {
                [
                    &p.conv,
                    &p.id,
                    &p.sender,
                    &p.device,
                    &p.cmid,
                    &p.ts,
                    &p.content,
                    &p.countable,
                    &p.recall,
                    &p.list,
                    &p.users,
                    &p.devices,
                    &p.kinds,
                    &p.targets,
                ]
            })
            .collect();
        let calls = args.iter().map(|a| client.query_one(apply, a));
        let (begun, rows) = futures::join!(
            client.batch_execute("BEGIN"),
            futures::future::join_all(calls)
        );
        let rows: std::result::Result<Vec<_>, _> = rows.into_iter().collect();
        let recorded = match begun.and(rows) {
            Ok(rows) => record_journal(client, params, &rows).await.map(|()| rows),
            Err(e) => Err(e),
        };
        match recorded {
            Ok(rows) => {
                client.batch_execute("COMMIT").await?;
                Ok(rows)
            }
            Err(e) => {
                if !client.is_closed() {
                    client.batch_execute("ROLLBACK").await?;
                }
                Err(e)
            }
        }
    }
}

/// Writes the journal records of the batch's units that wrote something,
/// inside its transaction, under [`super::schema::JOURNAL_LOCK`].
async fn record_journal(
    client: &Client,
    params: &[Params],
    rows: &[tokio_postgres::Row],
) -> std::result::Result<(), tokio_postgres::Error> {
    let (mut keys, mut seqs, mut payloads) = (Vec::new(), Vec::new(), Vec::new());
    for (p, row) in params.iter().zip(rows) {
        let Some(payload) = &p.journal else { continue };
        if row.try_get::<_, i16>(0)? != 0 {
            continue; // a resend or a refusal: nothing was written
        }
        let appended = if p.id.is_some() {
            Some(u64_of(row.try_get(2)?))
        } else {
            None
        };
        let befores: Vec<i64> = row.try_get(8)?;
        let afters: Vec<i64> = row.try_get(9)?;
        let moves: Vec<Moved> = befores
            .into_iter()
            .zip(afters)
            .map(|(b, a)| Moved {
                before: u64_of(b),
                after: u64_of(a),
            })
            .collect();
        if let Some(seq) = crate::store::unit::journal_seq(appended, &moves) {
            keys.push(p.conv.as_str());
            seqs.push(i64_of(seq));
            payloads.push(payload.as_slice());
        }
    }
    if keys.is_empty() {
        return Ok(());
    }
    let args: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&keys, &seqs, &payloads];
    let (locked, inserted) = futures::join!(
        client.batch_execute(super::schema::JOURNAL_LOCK),
        client.execute(
            "INSERT INTO journal (key, seq, payload)
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::bytea[])",
            &args,
        )
    );
    locked.and(inserted).map(drop)
}

/// Whether running the batch again may succeed.
fn is_retryable(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.code().is_some_and(|c| {
        *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

/// A unit's answer from its row.
fn answer(unit: UnitOfWork, row: tokio_postgres::Row) -> Result<Committed> {
    let pg = |e: tokio_postgres::Error| Error::store(BACKEND, e);
    let status: i16 = row.try_get(0).map_err(pg)?;
    match status {
        0 => {
            let appended = match unit.append {
                Some(new) => {
                    let seq: i64 = row.try_get(2).map_err(pg)?;
                    Some(Appended {
                        message: Message::from_new(new, u64_of(seq)),
                        duplicate: false,
                    })
                }
                None => None,
            };
            let befores: Vec<i64> = row.try_get(8).map_err(pg)?;
            let afters: Vec<i64> = row.try_get(9).map_err(pg)?;
            let moves = befores
                .into_iter()
                .zip(afters)
                .map(|(b, a)| Moved {
                    before: u64_of(b),
                    after: u64_of(a),
                })
                .collect();
            Ok(Committed { appended, moves })
        }
        1 => {
            let Some(new) = unit.append else {
                return Err(Error::store(BACKEND, "a resend without a message"));
            };
            let content: Vec<u8> = row.try_get(6).map_err(pg)?;
            let content = pb::Content::decode(content.as_slice())
                .map_err(|e| Error::store(BACKEND, format!("stored content: {e}")))?;
            let original = Message {
                id: MessageId(row.try_get(3).map_err(pg)?),
                conversation: ConversationId::new(row.try_get::<_, String>(1).map_err(pg)?),
                seq: u64_of(row.try_get(2).map_err(pg)?),
                sender: new.sender,
                sender_device: DeviceId::new(row.try_get::<_, String>(4).map_err(pg)?),
                client_msg_id: new.client_msg_id,
                timestamp_ms: u64_of(row.try_get(5).map_err(pg)?),
                content,
                recalled: row.try_get(7).map_err(pg)?,
            };
            Ok(Committed {
                appended: Some(Appended {
                    message: original,
                    duplicate: true,
                }),
                moves: Vec::new(),
            })
        }
        _ => {
            let target = unit
                .append
                .as_ref()
                .and_then(|m| recall_target(&m.content))
                .unwrap_or(0);
            Err(Error::NotFound(format!(
                "message {target} in {}",
                unit.conversation
            )))
        }
    }
}
