//! A connection's outbound queue: encoded frames waiting for its writer.
//!
//! Bounded in frames and in bytes. A reply waits for room, and while it
//! waits its session reads nothing more from the socket, so a client that
//! does not read cannot make requests pile up replies (TCP back-pressure).
//! A push never waits: the router stops live pushes to a connection whose
//! queue passed the live-push limit and sends one small [`SyncNotice`]
//! instead (see [`crate::router`]); control frames (that notice, `Kicked`)
//! go in past the bounds, so room is always kept for them.
//!
//! The queue allocates nothing while empty and gives back its buffer once
//! drained: an idle connection carries only this struct.
//!
//! [`SyncNotice`]: imkit_proto::pb::SyncNotice

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// A drained queue keeps its buffer up to this many slots; a larger one
/// (left by a burst) is freed so idle connections stay small.
const KEEP_SLOTS: usize = 16;

/// Why a frame was not queued.
#[derive(Debug)]
pub(crate) enum PushError {
    /// The queue is at its bound: the reader is not keeping up. The frame
    /// is handed back.
    Full(Bytes),
    /// The connection is closing or its writer has stopped.
    Closed,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Bytes>,
    bytes: usize,
    closed: bool,
}

/// The bounded queue between everything that sends to a connection and the
/// one writer task that owns its socket. No lock is held across `.await`.
#[derive(Debug)]
pub(crate) struct Outbox {
    state: Mutex<State>,
    max_frames: usize,
    max_bytes: usize,
    /// The most bytes ever queued at once (for tests and metrics).
    peak: AtomicUsize,
    /// Wakes the writer when frames arrive or the queue closes.
    frames: Notify,
    /// Wakes a sender waiting for room.
    room: Notify,
}

impl Outbox {
    /// An empty queue of at most `max_frames` frames and `max_bytes` bytes
    /// (a single frame larger than that is taken when the queue is empty).
    pub(crate) fn new(max_frames: usize, max_bytes: usize) -> Self {
        Outbox {
            state: Mutex::default(),
            max_frames: max_frames.max(1),
            max_bytes: max_bytes.max(1),
            peak: AtomicUsize::new(0),
            frames: Notify::new(),
            room: Notify::new(),
        }
    }

    fn fits(&self, state: &State, len: usize, max_bytes: usize) -> bool {
        state.queue.is_empty()
            || (state.queue.len() < self.max_frames && state.bytes + len <= max_bytes)
    }

    fn enqueue(&self, mut state: parking_lot::MutexGuard<'_, State>, frame: Bytes) {
        state.bytes += frame.len();
        state.queue.push_back(frame);
        self.peak.fetch_max(state.bytes, Ordering::Relaxed);
        drop(state);
        self.frames.notify_one();
    }

    /// Queues a frame if there is room, without waiting.
    pub(crate) fn try_push(&self, frame: Bytes) -> Result<(), PushError> {
        self.try_push_under(frame, self.max_bytes)
    }

    /// Queues a frame if the queue would then hold at most `max_bytes`
    /// (and is within its own bounds), without waiting: a live push, which
    /// must leave room for replies.
    pub(crate) fn try_push_under(&self, frame: Bytes, max_bytes: usize) -> Result<(), PushError> {
        let state = self.state.lock();
        if state.closed {
            return Err(PushError::Closed);
        }
        if !self.fits(&state, frame.len(), max_bytes.min(self.max_bytes)) {
            return Err(PushError::Full(frame));
        }
        self.enqueue(state, frame);
        Ok(())
    }

    /// Queues a control frame past the bounds (the queue keeps room for
    /// them): a notice, a `Kicked`. Fails only once the queue is closed.
    pub(crate) fn push_control(&self, frame: Bytes) -> Result<(), PushError> {
        let state = self.state.lock();
        if state.closed {
            return Err(PushError::Closed);
        }
        self.enqueue(state, frame);
        Ok(())
    }

    /// Queues a frame, waiting for room. Fails only once the queue is closed.
    pub(crate) async fn push(&self, mut frame: Bytes) -> Result<(), PushError> {
        loop {
            // `notify_one` leaves a permit when nobody waits yet, so room
            // made between the failed attempt and this wait is not missed.
            match self.try_push(frame) {
                Err(PushError::Full(f)) => {
                    frame = f;
                    self.room.notified().await;
                }
                other => return other,
            }
        }
    }

    /// Bytes queued now.
    #[cfg(any(test, feature = "metrics"))]
    pub(crate) fn queued_bytes(&self) -> usize {
        self.state.lock().bytes
    }

    /// The most bytes ever queued at once.
    pub(crate) fn peak_bytes(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Moves queued frames into `batch`, up to about `max_bytes`, waiting
    /// while the queue is empty. Returns `false` once the queue is closed
    /// and drained: the writer is done.
    pub(crate) async fn pop_batch(&self, batch: &mut Vec<Bytes>, max_bytes: usize) -> bool {
        loop {
            let arrived = self.frames.notified();
            {
                let mut state = self.state.lock();
                if !state.queue.is_empty() {
                    let mut size = 0;
                    while size < max_bytes {
                        let Some(frame) = state.queue.pop_front() else {
                            break;
                        };
                        size += frame.len();
                        batch.push(frame);
                    }
                    state.bytes -= size;
                    if state.queue.is_empty() && state.queue.capacity() > KEEP_SLOTS {
                        state.queue = VecDeque::new();
                    }
                    drop(state);
                    self.room.notify_one();
                    return true;
                }
                if state.closed {
                    return false;
                }
            }
            arrived.await;
        }
    }

    /// Accepts no more frames; the writer still writes what is queued.
    pub(crate) fn close(&self) {
        self.state.lock().closed = true;
        self.frames.notify_one();
        self.room.notify_waiters();
    }

    /// The writer has stopped: drops what is queued and refuses the rest,
    /// so later sends are refused (the device catches up from its cursors).
    pub(crate) fn abandon(&self) {
        let dropped = {
            let mut state = self.state.lock();
            state.closed = true;
            state.bytes = 0;
            std::mem::take(&mut state.queue)
        };
        drop(dropped);
        self.room.notify_waiters();
    }

    /// Frames waiting now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.state.lock().queue.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn frame(n: u8) -> Bytes {
        Bytes::from(vec![n; 10])
    }

    #[tokio::test]
    async fn bounded_ordered_and_closed() {
        let q = Outbox::new(3, 1 << 20);
        for i in 0..3 {
            q.try_push(frame(i)).expect("room");
        }
        assert!(matches!(q.try_push(frame(9)), Err(PushError::Full(_))));
        let mut batch = Vec::new();
        assert!(q.pop_batch(&mut batch, usize::MAX).await);
        assert_eq!(
            batch.iter().map(|b| b[0]).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        // A byte budget splits a batch.
        for i in 0..3 {
            q.try_push(frame(i)).expect("room");
        }
        batch.clear();
        assert!(q.pop_batch(&mut batch, 15).await);
        assert_eq!(batch.len(), 2);
        // Closing refuses new frames but the writer drains the old ones.
        q.close();
        assert!(matches!(q.try_push(frame(7)), Err(PushError::Closed)));
        batch.clear();
        assert!(q.pop_batch(&mut batch, usize::MAX).await);
        assert_eq!(batch.len(), 1);
        batch.clear();
        assert!(!q.pop_batch(&mut batch, usize::MAX).await);
    }

    #[tokio::test]
    async fn bounded_in_bytes_with_room_for_control_frames() {
        let q = Outbox::new(1_000, 25);
        q.try_push(frame(1)).expect("room");
        q.try_push(frame(2)).expect("room");
        assert_eq!(q.queued_bytes(), 20);
        assert!(
            matches!(q.try_push(frame(3)), Err(PushError::Full(_))),
            "30 bytes would pass the 25-byte bound"
        );
        q.push_control(frame(4))
            .expect("control frames always go in");
        assert_eq!(q.queued_bytes(), 30);
        assert_eq!(q.peak_bytes(), 30);
        let mut batch = Vec::new();
        assert!(q.pop_batch(&mut batch, usize::MAX).await);
        assert_eq!(q.queued_bytes(), 0);
        // One frame larger than the bound still goes into an empty queue.
        q.try_push(Bytes::from(vec![0u8; 100]))
            .expect("an empty queue takes anything");
        assert!(matches!(q.try_push(frame(5)), Err(PushError::Full(_))));
    }

    #[tokio::test]
    async fn a_live_push_leaves_room_below_its_own_bound() {
        let q = Outbox::new(1_000, 100);
        q.try_push_under(frame(1), 15)
            .expect("an empty queue takes it");
        assert!(
            matches!(q.try_push_under(frame(2), 15), Err(PushError::Full(_))),
            "20 bytes would pass the live bound of 15"
        );
        q.try_push(frame(3))
            .expect("a reply still fits the queue's bound");
        assert_eq!(q.queued_bytes(), 20);
    }

    #[tokio::test]
    async fn the_writer_wakes_for_a_frame_and_a_full_sender_for_room() {
        let q = Arc::new(Outbox::new(1, 1 << 20));
        let writer = {
            let q = q.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut batch = Vec::new();
                while q.pop_batch(&mut batch, usize::MAX).await {
                    got.extend(batch.drain(..).map(|b| b[0]));
                    // A slow writer, so the sender fills the queue.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                got
            })
        };
        for i in 0..20 {
            q.push(frame(i)).await.expect("queued");
            assert!(q.len() <= 1);
        }
        q.close();
        let got = tokio::time::timeout(Duration::from_secs(5), writer)
            .await
            .expect("writer ends after close")
            .expect("writer task");
        assert_eq!(got, (0..20).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn an_abandoned_queue_frees_its_frames_and_refuses_more() {
        let q = Outbox::new(8, 1 << 20);
        let f = frame(1);
        q.try_push(f.clone()).expect("room");
        q.abandon();
        assert!(f.is_unique(), "the queued copy was dropped");
        assert!(matches!(q.try_push(frame(2)), Err(PushError::Closed)));
        assert!(matches!(q.push(frame(3)).await, Err(PushError::Closed)));
    }
}
