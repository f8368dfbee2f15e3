//! Server limits and settings. Every limit has a name, a default and a
//! line in docs/protocol.md (section 7) where a client can see it.

use std::time::Duration;

use imkit_proto::{DEFAULT_MAX_CLIENT_FRAME, DEFAULT_MAX_PRELOGIN_FRAME, DEFAULT_MAX_SERVER_FRAME};

/// The limits a server enforces per connection and overall.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest frame accepted from a client (default 256 KiB).
    pub max_inbound_frame: usize,
    /// Largest frame accepted from a client that has not logged in yet
    /// (default 4 KiB): a login request with a long token fits, and a
    /// connection that never logs in cannot make the server buffer more.
    pub max_prelogin_frame: usize,
    /// Largest frame sent to a client (default 8 MiB).
    pub max_outbound_frame: usize,
    /// Most concurrent chat connections (TCP and WebSocket together); more
    /// are refused with `Overloaded`. `None` (the default) takes what the
    /// open-file limit leaves after the HTTP API's share and the server's
    /// own descriptors; a configured value the limit cannot honour stops
    /// the server at start (see [`crate::fds`]).
    pub max_connections: Option<usize>,
    /// Time a new connection has to log in (default 10 s).
    pub login_deadline: Duration,
    /// Heartbeat interval announced at login; a connection silent for two
    /// intervals is closed (default 30 s).
    pub heartbeat_interval: Duration,
    /// Frames per second one connection may send (default 500). Every
    /// frame counts, well-formed or not, before anything answers it; one
    /// over the rate is answered `RateLimited` and the connection is not
    /// read again until the rate allows another.
    pub rate_per_second: u32,
    /// Requests one connection may make in a burst (default 1,000).
    pub rate_burst: u32,
    /// Frames a connection may have refused (malformed, of an unknown or
    /// server-only type, or out of state) in a burst; one more is allowed
    /// each second. Past it the connection is closed with
    /// the last error as its reason (default 32).
    pub max_bad_frames: u32,
    /// Queries (every request but sends, receipts and typing: sync,
    /// history, lists, contacts, groups) the whole server runs at once
    /// (default 8). More wait their turn in arrival order, and a session
    /// waiting for one reads nothing more from its connection. However
    /// many connections flood queries, each within its own rate, sends and
    /// receipts never queue behind them: the flood waits here, parked,
    /// rather than crowding the runtime and the store's threads.
    pub max_concurrent_queries: usize,
    /// Frames queued for one connection's writer (default 1,024).
    pub queue_len: usize,
    /// Bytes queued for one connection's writer (default 512 KiB). A reply
    /// waits for room, and its session reads nothing meanwhile, so a client
    /// that does not read its socket cannot make replies pile up. With the
    /// read buffer and one reply being built, this bounds a connection's
    /// memory at about 1 MiB whatever the client does.
    pub queue_bytes: usize,
    /// Live message pushes stop while more than this many bytes wait in a
    /// connection's queue (default 256 KiB): the device is sent one
    /// `SyncNotice { BEHIND }` and pulls what it missed with `Sync`, which
    /// resumes its pushes. See docs/protocol.md, "Catching up".
    pub live_push_bytes: usize,
    /// Most bytes the writer coalesces into one write (default 64 KiB).
    pub write_batch_bytes: usize,
    /// How long a write to a client may stall before the connection is
    /// kicked as a slow consumer (default 10 s). The `Kicked` frame is
    /// queued, and the writer gets as long again to flush it before the
    /// connection closes.
    pub write_timeout: Duration,
    /// How long a graceful shutdown waits for connections to flush
    /// (default 5 s).
    pub shutdown_grace: Duration,
    /// Connections the kernel may hold for a listener before they are
    /// accepted (default 4,096; capped by `net.core.somaxconn`). A reconnect
    /// storm overflows a short backlog, and each dropped SYN costs the
    /// client a one-second retransmit.
    pub listen_backlog: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_inbound_frame: DEFAULT_MAX_CLIENT_FRAME,
            max_prelogin_frame: DEFAULT_MAX_PRELOGIN_FRAME,
            max_outbound_frame: DEFAULT_MAX_SERVER_FRAME,
            max_connections: None,
            login_deadline: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(30),
            rate_per_second: 500,
            rate_burst: 1_000,
            max_bad_frames: 32,
            max_concurrent_queries: 8,
            queue_len: 1_024,
            queue_bytes: 512 * 1024,
            live_push_bytes: 256 * 1024,
            write_batch_bytes: 64 * 1024,
            write_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
            listen_backlog: 4_096,
        }
    }
}

impl Limits {
    /// Checks that the limits make sense together.
    pub fn validate(&self) -> Result<(), crate::ServerError> {
        let bad = |m: &str| Err(crate::ServerError::Config(m.to_owned()));
        if self.max_inbound_frame < imkit_proto::MIN_FRAME_LEN {
            return bad("max_inbound_frame is below the 28-byte minimum frame");
        }
        if self.max_prelogin_frame < imkit_proto::MIN_FRAME_LEN
            || self.max_prelogin_frame > self.max_inbound_frame
        {
            return bad("max_prelogin_frame must be between 28 bytes and max_inbound_frame");
        }
        if self.max_bad_frames == 0 {
            return bad("max_bad_frames must be positive");
        }
        if self.max_outbound_frame < DEFAULT_MAX_CLIENT_FRAME.min(self.max_inbound_frame) {
            return bad("max_outbound_frame is too small to answer requests");
        }
        if self.max_connections == Some(0) || self.queue_len == 0 {
            return bad("max_connections and queue_len must be positive");
        }
        if self.max_concurrent_queries == 0 {
            return bad("max_concurrent_queries must be positive");
        }
        if self.queue_bytes == 0 || self.live_push_bytes > self.queue_bytes {
            return bad("queue_bytes must be positive and at least live_push_bytes");
        }
        if self.rate_per_second == 0 || self.rate_burst == 0 {
            return bad("rate_per_second and rate_burst must be positive");
        }
        if self.heartbeat_interval.is_zero() || self.login_deadline.is_zero() {
            return bad("heartbeat_interval and login_deadline must be positive");
        }
        Ok(())
    }
}
