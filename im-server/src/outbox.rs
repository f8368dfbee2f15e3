//! A connection's outbound queue: encoded frames waiting for its writer.
//!
//! Bounded like a channel, but it allocates nothing while empty, and gives
//! back its buffer once drained. An idle connection so carries only this
//! struct (about 100 bytes), where a tokio channel keeps a preallocated block
//! of 32 slots (about 1 KiB) for its whole life.

use std::collections::VecDeque;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// A drained queue keeps its buffer up to this many slots; a larger one
/// (left by a burst) is freed so idle connections stay small.
const KEEP_SLOTS: usize = 16;

/// Why a frame was not queued.
#[derive(Debug)]
pub(crate) enum PushError {
    /// The queue holds its maximum: the reader is not keeping up. The frame
    /// is handed back.
    Full(Bytes),
    /// The connection is closing or its writer has stopped.
    Closed,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Bytes>,
    closed: bool,
}

/// The bounded queue between everything that sends to a connection and the
/// one writer task that owns its socket. No lock is held across `.await`.
#[derive(Debug)]
pub(crate) struct Outbox {
    state: Mutex<State>,
    cap: usize,
    /// Wakes the writer when frames arrive or the queue closes.
    frames: Notify,
    /// Wakes a sender waiting for room.
    room: Notify,
}

impl Outbox {
    /// An empty queue that holds at most `cap` frames (at least 1).
    pub(crate) fn new(cap: usize) -> Self {
        Outbox {
            state: Mutex::default(),
            cap: cap.max(1),
            frames: Notify::new(),
            room: Notify::new(),
        }
    }

    /// Queues a frame if there is room, without waiting.
    pub(crate) fn try_push(&self, frame: Bytes) -> Result<(), PushError> {
        let mut state = self.state.lock();
        if state.closed {
            return Err(PushError::Closed);
        }
        if state.queue.len() >= self.cap {
            return Err(PushError::Full(frame));
        }
        state.queue.push_back(frame);
        drop(state);
        self.frames.notify_one();
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

    /// Moves queued frames into `batch`, up to about `max_bytes`, waiting
    /// while the queue is empty. Returns `false` once the queue is closed
    /// and drained: the writer is done.
    pub(crate) async fn pop_batch(&self, batch: &mut Vec<Bytes>, max_bytes: usize) -> bool {
        loop {
            let arrived = self.frames.notified();
            {
                let mut state = self.state.lock();
                if !state.queue.is_empty() {
                    let was_full = state.queue.len() >= self.cap;
                    let mut size = 0;
                    while size < max_bytes {
                        let Some(frame) = state.queue.pop_front() else {
                            break;
                        };
                        size += frame.len();
                        batch.push(frame);
                    }
                    if state.queue.is_empty() && state.queue.capacity() > KEEP_SLOTS {
                        state.queue = VecDeque::new();
                    }
                    drop(state);
                    if was_full {
                        self.room.notify_one();
                    }
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
        let q = Outbox::new(3);
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
    async fn the_writer_wakes_for_a_frame_and_a_full_sender_for_room() {
        let q = Arc::new(Outbox::new(1));
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
        let q = Outbox::new(8);
        let f = frame(1);
        q.try_push(f.clone()).expect("room");
        q.abandon();
        assert!(f.is_unique(), "the queued copy was dropped");
        assert!(matches!(q.try_push(frame(2)), Err(PushError::Closed)));
        assert!(matches!(q.push(frame(3)).await, Err(PushError::Closed)));
    }
}
