//! The client crate's error type.

use imkit_proto::ErrorCode;

/// What a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address is not `host:port`, `tcp://host:port`, `tls://host:port`,
    /// `ws://host:port/path` or `wss://host:port/path`.
    #[error("invalid address {0:?}")]
    InvalidAddress(String),
    /// TLS could not be set up: no usable roots, a bad CA, or a handshake
    /// the server's certificate failed (not trusted, wrong name, expired).
    #[error("TLS: {0}")]
    Tls(String),
    /// Connecting failed.
    #[error("cannot connect to {addr}: {message}")]
    Connect {
        /// The address.
        addr: String,
        /// Why.
        message: String,
    },
    /// The server answered with an error.
    #[error("server error {code:?} ({}): {message}", *code as u32)]
    Server {
        /// The protocol error code.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// The connection dropped before the answer came. Sends are not failed
    /// this way: they stay in the outbox and are resent after reconnecting.
    #[error("disconnected before the server answered")]
    Disconnected,
    /// The server did not answer within the request timeout.
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
    /// Not logged in (or the session ended for good, e.g. after a kick).
    #[error("not logged in")]
    NotLoggedIn,
    /// The client was shut down.
    #[error("client closed")]
    Closed,
    /// The server answered with a packet of an unexpected type.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
    /// The outbox is full.
    #[error("outbox full ({0} unacknowledged sends)")]
    OutboxFull(usize),
}

impl ClientError {
    /// The protocol error code, for server errors.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}
