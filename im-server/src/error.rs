//! The server crate's error type.

/// What can go wrong while starting or running a server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listener could not bind its address.
    #[error("cannot bind {what} listener to {addr}: {source}")]
    Bind {
        /// "tcp" or "websocket".
        what: &'static str,
        /// The address asked for.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An I/O error on a connection.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A WebSocket protocol error.
    #[error("websocket error: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    /// A framing or packet error from the peer.
    #[error("protocol error: {0}")]
    Proto(#[from] imkit_proto::ProtoError),
    /// An engine or store error.
    #[error(transparent)]
    Core(#[from] imkit_core::Error),
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
}
