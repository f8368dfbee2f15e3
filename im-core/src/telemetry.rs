//! What the core reports through the [`metrics`](https://docs.rs/metrics)
//! facade (feature `metrics`): messages stored, deliveries by path, store
//! commits and their batch sizes. Without the feature these are empty
//! functions; with it and no recorder installed, each is a few loads.
//! docs/operations.md lists every name.

use std::time::Duration;

/// Messages stored, by conversation kind (`direct`, `group`).
pub const MESSAGES_SENT: &str = "imkit_messages_sent_total";
/// Message deliveries by path: `live` (queued for a connected device,
/// counted where it is connected), `paced` (returned by a sync, the
/// catch-up path), `offline` (the user had no device online; the push
/// notifier was told).
pub const DELIVERIES: &str = "imkit_deliveries_total";
/// Seconds from a store transaction's start to its commit (histogram,
/// by backend).
pub const STORE_COMMIT_SECONDS: &str = "imkit_store_commit_seconds";
/// Units of work (sends, receipts, ...) per store transaction (histogram,
/// by backend): how well group commit batches.
pub const STORE_BATCH_SIZE: &str = "imkit_store_batch_size";
/// Push notices handed to the push notifier (one per device).
pub const PUSH_SENT: &str = "imkit_push_notices_total";
/// Offline recipients whose pushes were dropped because the push queue
/// was full.
pub const PUSH_DROPPED: &str = "imkit_push_dropped_total";
/// Seconds one fsync of SQLite's write-ahead log takes (histogram).
pub const STORE_FSYNC_SECONDS: &str = "imkit_store_fsync_seconds";

/// A message was stored (not a resend of one already stored).
#[inline]
pub(crate) fn message_sent(group: bool) {
    #[cfg(feature = "metrics")]
    metrics::counter!(MESSAGES_SENT, "kind" => if group { "group" } else { "direct" }).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = group;
}

/// `n` messages reached devices by `path` (`live`, `paced`, `offline`).
#[inline]
pub fn delivered(path: &'static str, n: usize) {
    #[cfg(feature = "metrics")]
    if n > 0 {
        metrics::counter!(DELIVERIES, "path" => path).increment(n as u64);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (path, n);
}

/// A store transaction of `units` units committed (or failed) after `took`.
#[inline]
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) fn store_commit(backend: &'static str, units: usize, took: Duration) {
    #[cfg(feature = "metrics")]
    {
        metrics::histogram!(STORE_COMMIT_SECONDS, "backend" => backend).record(took.as_secs_f64());
        metrics::histogram!(STORE_BATCH_SIZE, "backend" => backend).record(units as f64);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (backend, units, took);
}

/// One fsync of the write-ahead log took `took`.
#[inline]
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
pub(crate) fn store_fsync(took: Duration) {
    #[cfg(feature = "metrics")]
    metrics::histogram!(STORE_FSYNC_SECONDS).record(took.as_secs_f64());
    #[cfg(not(feature = "metrics"))]
    let _ = took;
}

/// `n` push notices went to the notifier.
pub(crate) fn push_sent(n: usize) {
    #[cfg(feature = "metrics")]
    metrics::counter!(PUSH_SENT).increment(n as u64);
    #[cfg(not(feature = "metrics"))]
    let _ = n;
}

/// `n` recipients' pushes were dropped (queue full).
pub(crate) fn push_dropped(n: usize) {
    #[cfg(feature = "metrics")]
    metrics::counter!(PUSH_DROPPED).increment(n as u64);
    #[cfg(not(feature = "metrics"))]
    let _ = n;
}
