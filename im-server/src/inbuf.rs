//! A connection's inbound buffer, and how much each read asks for.
//!
//! A read asks for [`MIN_READ`] bytes at first and for twice as much after
//! each read that filled what it asked for, up to [`MAX_READ`]; a read that
//! fills less than a quarter of it halves it again. So a client that
//! pipelines many frames is read in a few large reads (one `recv` for a
//! window of sends, not one per frame), and one that sends a frame now and
//! then in small ones. A TCP connection that waits for bytes with nothing
//! buffered lets its buffer go, so an idle connection holds none.
//!
//! The buffer never grows toward a frame length a peer only declared:
//! [`Frame::decode`](imkit_proto::Frame::decode) grows it at most by what
//! has arrived, and reads here add at most [`MAX_READ`].

use bytes::BytesMut;

/// The first read's size, and the least any read asks for.
pub(crate) const MIN_READ: usize = 256;
/// The most one read asks for.
pub(crate) const MAX_READ: usize = 16 * 1024;

/// Bytes read and not yet taken as frames, with the size of the next read.
#[derive(Debug)]
pub(crate) struct InBuf {
    /// The buffered bytes ([`imkit_proto::Frame::decode`] takes from it).
    pub(crate) buf: BytesMut,
    /// What the next read asks for.
    chunk: usize,
}

impl Default for InBuf {
    fn default() -> Self {
        InBuf {
            buf: BytesMut::new(),
            chunk: MIN_READ,
        }
    }
}

impl InBuf {
    /// Makes room for the next read and returns how many bytes it may
    /// take.
    pub(crate) fn make_room(&mut self) -> usize {
        if self.spare() < self.chunk / 2 {
            self.buf.reserve(self.chunk);
        }
        self.spare()
    }

    /// Records that a read given `offered` bytes of room took `n`.
    pub(crate) fn read_done(&mut self, n: usize, offered: usize) {
        if n >= offered {
            self.chunk = (self.chunk * 2).min(MAX_READ);
        } else if n.saturating_mul(4) <= self.chunk {
            self.chunk = (self.chunk / 2).max(MIN_READ);
        }
    }

    /// Before waiting for bytes: an empty buffer is let go (frames already
    /// taken keep their own share of it).
    pub(crate) fn idle(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > 0 {
            self.buf = BytesMut::new();
        }
    }

    fn spare(&self) -> usize {
        self.buf.capacity() - self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::{InBuf, MAX_READ, MIN_READ};
    use bytes::BufMut;

    /// Reads `n` of the bytes offered, as a socket would.
    fn read(b: &mut InBuf, n: usize) -> usize {
        let offered = b.make_room();
        let n = n.min(offered);
        b.buf.put_bytes(7, n);
        b.read_done(n, offered);
        n
    }

    #[test]
    fn reads_grow_while_they_fill_and_stop_at_the_most() {
        let mut b = InBuf::default();
        assert!(b.make_room() >= MIN_READ);
        let mut sizes = Vec::new();
        for _ in 0..10 {
            sizes.push(read(&mut b, usize::MAX));
            b.buf.clear();
        }
        assert_eq!(sizes[0], MIN_READ);
        assert!(sizes.windows(2).all(|w| w[1] >= w[0]), "{sizes:?}");
        assert!(sizes.iter().all(|s| *s <= 2 * MAX_READ), "{sizes:?}");
        assert!(sizes[9] >= MAX_READ, "{sizes:?}");
    }

    #[test]
    fn small_reads_shrink_the_next_one_back_to_the_least() {
        let mut b = InBuf::default();
        for _ in 0..8 {
            read(&mut b, usize::MAX);
            b.buf.clear();
        }
        for _ in 0..10 {
            read(&mut b, 10);
            b.buf.clear();
        }
        b.idle();
        assert_eq!(b.buf.capacity(), 0, "an empty buffer is let go");
        assert!(b.make_room() < 2 * MIN_READ);
    }

    #[test]
    fn a_buffer_holding_part_of_a_frame_is_kept_while_waiting() {
        let mut b = InBuf::default();
        read(&mut b, 100);
        b.idle();
        assert_eq!(b.buf.len(), 100);
    }
}
