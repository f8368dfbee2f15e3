//! The dispatcher: reads the journal, posts each event on its lane, and
//! removes what every endpoint took (see the module docs of
//! [`super`]).
//!
//! Tasks: the reader (holds the lease, reads records above its watermark
//! into lanes), one task per lane (posts its records one at a time, in
//! order), and the taker (removes finished records from the journal in
//! batches). A semaphore of [`WebhookOptions::max_in_flight`] permits
//! bounds everything read and not yet removed: a record carries its
//! permit from the reader to the taker, which drops it once the record is
//! gone from the journal.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use imkit_core::Engine;
use imkit_core::journal::{self, EventKind};
use imkit_core::model::NodeId;
use imkit_core::store::{JournalRecord, JournalStore};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::{Endpoint, Poster, WebhookOptions, payload};

/// Most records read from the journal at once.
const READ_BATCH: usize = 256;
/// Most records removed from the journal at once.
const TAKE_BATCH: usize = 256;
/// Wait after a store error before trying again.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// A record, its event if the reader's batch resolved it, and its permit.
type Slot = (
    JournalRecord,
    Option<journal::Resolved>,
    OwnedSemaphorePermit,
);

/// Posts journal events to the configured endpoints.
pub(crate) struct Dispatcher {
    options: Arc<WebhookOptions>,
    poster: Poster,
    holder: String,
}

impl Dispatcher {
    /// A dispatcher for `node` (its lease is held in that name).
    pub(crate) fn new(options: WebhookOptions, node: &NodeId) -> Result<Dispatcher, String> {
        let poster = Poster::new(options.request_timeout, options.extra_roots_pem.as_deref())?;
        Ok(Dispatcher {
            options: Arc::new(options),
            poster,
            holder: format!("{node}/{}", uuid::Uuid::new_v4().simple()),
        })
    }

    /// Runs until `shutdown`. What was read and not finished stays in the
    /// journal and is posted again by the next run.
    pub(crate) async fn run(self, engine: Engine, shutdown: CancellationToken) {
        if self.options.endpoints.is_empty() {
            return;
        }
        let journal = engine.stores().journal.clone();
        let max = self.options.max_in_flight;
        let permits = Arc::new(Semaphore::new(max));
        let (done, finished) = mpsc::channel(max);
        let taker = tokio::spawn(take(journal.clone(), finished, shutdown.clone()));
        let lanes: Vec<mpsc::Sender<Slot>> = (0..self.options.lanes)
            .map(|_| {
                let (tx, rx) = mpsc::channel(max);
                let lane = Lane {
                    engine: engine.clone(),
                    options: self.options.clone(),
                    poster: self.poster.clone(),
                    done: done.clone(),
                    shutdown: shutdown.clone(),
                };
                tokio::spawn(lane.run(rx));
                tx
            })
            .collect();
        drop(done);
        self.read(&engine, journal, lanes, permits, &shutdown).await;
        // The lanes stop at the shutdown, then the taker drains.
        let _ = taker.await;
    }

    /// The reader: holds the lease and feeds the lanes.
    async fn read(
        &self,
        engine: &Engine,
        journal: Arc<dyn JournalStore>,
        lanes: Vec<mpsc::Sender<Slot>>,
        permits: Arc<Semaphore>,
        shutdown: &CancellationToken,
    ) {
        let ttl = self.options.lease_ttl;
        let hasher = foldhash::fast::FixedState::default();
        let (mut after, mut leased, mut renew_at) = (0u64, false, Instant::now());
        while !shutdown.is_cancelled() {
            if Instant::now() >= renew_at {
                let held = match journal.lease(&self.holder, ttl).await {
                    Ok(held) => held,
                    Err(e) => {
                        tracing::warn!(error = %e, "webhooks: the journal lease could not be renewed");
                        false
                    }
                };
                if held && !leased {
                    tracing::info!(holder = %self.holder, "webhooks: this node posts the journal's events");
                    after = 0; // from the oldest event waiting
                }
                leased = held;
                renew_at = Instant::now() + ttl / 3;
            }
            if !leased {
                pause(renew_at.saturating_duration_since(Instant::now()), shutdown).await;
                continue;
            }
            let room = permits.available_permits();
            crate::metrics::webhook_in_flight(self.options.max_in_flight - room);
            let want = room.clamp(1, READ_BATCH);
            let records = match journal.read(after, want).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "webhooks: the journal could not be read");
                    pause(STORE_RETRY, shutdown).await;
                    continue;
                }
            };
            let got = records.len();
            // One read for the batch's messages, not one per event.
            let resolved = journal::resolve_all(engine.stores(), &records).await;
            for (record, resolved) in records.into_iter().zip(resolved) {
                after = record.id;
                let permit = tokio::select! {
                    p = permits.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => return,
                    },
                    () = shutdown.cancelled() => return,
                };
                let lane = (hasher.hash_one(record.key.as_str()) as usize) % lanes.len();
                if lanes[lane].send((record, resolved, permit)).await.is_err() {
                    return;
                }
            }
            if got < want {
                pause(self.options.poll_interval, shutdown).await;
            }
        }
    }
}

/// Sleeps for `d` or until the shutdown.
async fn pause(d: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(d) => {}
        () = shutdown.cancelled() => {}
    }
}

/// One lane: its records, one at a time, in order.
struct Lane {
    engine: Engine,
    options: Arc<WebhookOptions>,
    poster: Poster,
    done: mpsc::Sender<(u64, OwnedSemaphorePermit)>,
    shutdown: CancellationToken,
}

/// How posting a record ended.
enum Posted {
    /// Every endpoint took it, or it was given up: remove it.
    Finished,
    /// The server is stopping: leave it in the journal.
    Stopped,
}

impl Lane {
    async fn run(self, mut records: mpsc::Receiver<Slot>) {
        loop {
            let slot = tokio::select! {
                s = records.recv() => s,
                () = self.shutdown.cancelled() => None,
            };
            let Some((record, resolved, permit)) = slot else {
                return;
            };
            match self.post(&record, resolved).await {
                Posted::Finished => {
                    if self.done.send((record.id, permit)).await.is_err() {
                        return;
                    }
                }
                Posted::Stopped => return,
            }
        }
    }

    /// The wait before retry number `attempt` (0-based), with ±20% jitter.
    fn backoff(&self, attempt: u32) -> Duration {
        let first = self.options.first_retry.as_secs_f64();
        let max = self.options.max_retry_interval.as_secs_f64();
        let base = (first * 2f64.powi(attempt.min(30) as i32)).min(max);
        Duration::from_secs_f64(base * rand::random_range(0.8..1.2))
    }

    /// Waits before the next attempt; false if the server is stopping.
    async fn wait(&self, attempt: u32) -> bool {
        tokio::select! {
            () = tokio::time::sleep(self.backoff(attempt)) => true,
            () = self.shutdown.cancelled() => false,
        }
    }

    async fn post(&self, record: &JournalRecord, prefetched: Option<journal::Resolved>) -> Posted {
        let started = Instant::now();
        let give_up = self.options.give_up_after;
        let mut attempt = 0;
        let resolved = loop {
            if let Some(r) = prefetched {
                break Some(r);
            }
            match journal::resolve(self.engine.stores(), record).await {
                Ok(r) => break r,
                Err(e) if started.elapsed() >= give_up => {
                    tracing::error!(id = record.id, error = %e, "webhooks: an event could not be read; dropped");
                    crate::metrics::webhook_event("dropped");
                    return Posted::Finished;
                }
                Err(e) => {
                    tracing::warn!(id = record.id, error = %e, "webhooks: an event could not be read; retrying");
                    if !self.wait(attempt).await {
                        return Posted::Stopped;
                    }
                    attempt += 1;
                }
            }
        };
        let Some(resolved) = resolved else {
            tracing::warn!(id = record.id, key = %record.key, "webhooks: an event's message is gone; skipped");
            return Posted::Finished;
        };
        let kind = EventKind::of(&resolved.event);
        let targets: Vec<&Endpoint> = self
            .options
            .endpoints
            .iter()
            .filter(|e| e.events.contains(kind))
            .collect();
        if targets.is_empty() {
            return Posted::Finished;
        }
        let body = Bytes::from(
            payload::event(record.id, &record.key, &resolved)
                .to_string()
                .into_bytes(),
        );
        let id = record.id.to_string();
        let mut dropped = false;
        for endpoint in targets {
            let mut attempt = 0;
            loop {
                let sent = Instant::now();
                let posted = tokio::select! {
                    r = self.poster.post_signed(&endpoint.url, &endpoint.secret, &id, body.clone(), false) => r,
                    () = self.shutdown.cancelled() => return Posted::Stopped,
                };
                crate::metrics::webhook_request(posted.is_ok(), sent.elapsed());
                let Err(why) = posted else { break };
                if started.elapsed() >= give_up {
                    tracing::error!(id = record.id, url = %endpoint.url, why = %why,
                        "webhooks: an event was not taken within the retry period; dropped");
                    dropped = true;
                    break;
                }
                tracing::warn!(id = record.id, url = %endpoint.url, attempt, why = %why,
                    "webhooks: a post failed; retrying");
                if !self.wait(attempt).await {
                    return Posted::Stopped;
                }
                attempt += 1;
            }
        }
        crate::metrics::webhook_event(if dropped { "dropped" } else { "delivered" });
        Posted::Finished
    }
}

/// The taker: removes finished records in batches, then frees their
/// permits. A record whose removal fails is retried; one that is never
/// removed (the server stopped) is posted again after a restart.
async fn take(
    journal: Arc<dyn JournalStore>,
    mut finished: mpsc::Receiver<(u64, OwnedSemaphorePermit)>,
    shutdown: CancellationToken,
) {
    let mut ids = Vec::with_capacity(TAKE_BATCH);
    let mut permits = Vec::with_capacity(TAKE_BATCH);
    while let Some((id, permit)) = finished.recv().await {
        ids.push(id);
        permits.push(permit);
        while ids.len() < TAKE_BATCH {
            match finished.try_recv() {
                Ok((id, permit)) => {
                    ids.push(id);
                    permits.push(permit);
                }
                Err(_) => break,
            }
        }
        while let Err(e) = journal.take(&ids).await {
            tracing::warn!(error = %e, "webhooks: finished events could not be removed; retrying");
            if shutdown.is_cancelled() {
                return;
            }
            pause(STORE_RETRY, &shutdown).await;
        }
        ids.clear();
        permits.clear();
    }
}
