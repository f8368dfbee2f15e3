//! What the [`crate::Client`] handle and the connection actor say to each
//! other ([`Command`], answered through a [`Reply`]), and what both need to
//! know: the connection's state and how a refused answer becomes an error.

use imkit_proto::{Packet, pb};
use tokio::sync::oneshot;

use crate::ClientError;

/// The shortest heartbeat the client accepts from a server (50 ms), so a
/// misconfigured server cannot make it ping in a busy loop. The server's
/// interval is otherwise followed exactly: it closes a connection after two
/// silent intervals, so pinging less often than it asks would be cut off.
pub const MIN_HEARTBEAT_MS: u32 = 50;

pub(crate) type Reply<T> = oneshot::Sender<Result<T, ClientError>>;

/// The connection's state, as seen by [`crate::Client::state`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// Connected, not logged in.
    Connected,
    /// Logged in and serving.
    Online {
        /// The user.
        user: String,
    },
    /// Lost the connection; reconnecting.
    Reconnecting {
        /// Attempts so far.
        attempt: u32,
    },
    /// Closed for good (logout, kick, or the client was dropped).
    Closed,
}

/// What the handle asks the actor to do.
pub(crate) enum Command {
    Login {
        token: String,
        device: String,
        platform: pb::Platform,
        reply: Reply<pb::LoginResponse>,
    },
    Request {
        packet: Packet,
        reply: Reply<Packet>,
    },
    Send {
        req: pb::SendRequest,
        reply: Reply<pb::SendResponse>,
    },
    Fire {
        packet: Packet,
    },
    SetCursor {
        conversation: String,
        seq: u64,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
}

pub(crate) fn unexpected(p: &Packet) -> ClientError {
    ClientError::Unexpected(format!("{:?}", p.kind()))
}

/// The error an answer that is not the expected one stands for: the
/// server's own error, or an unexpected packet.
pub(crate) fn refusal(p: Packet) -> ClientError {
    match p {
        Packet::Error(e) => ClientError::Server {
            code: imkit_proto::ErrorCode::from_u32(e.code),
            message: e.message,
        },
        other => unexpected(&other),
    }
}
