//! imkit client SDK.
//!
//! ```no_run
//! use imkit_client::{Client, ClientOptions, Content, Event, Peer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), imkit_client::ClientError> {
//! let (client, mut events) = Client::connect("127.0.0.1:7400", ClientOptions::default()).await?;
//! client.login("<a token from your backend>", "phone").await?;
//! let sent = client.send(Peer::user("bob"), Content::text("hello")).await?;
//! println!("stored at seq {}", sent.seq);
//! while let Some(event) = events.recv().await {
//!     if let Event::Message(m) = event {
//!         println!("{}: {:?}", m.sender_id, m.text());
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! [`Client::connect`] returns a cheap-to-clone [`Client`] handle and an
//! [`Events`] stream. Log in with [`Client::login`], then send with
//! [`Client::send_text`] (resolves when the server has stored the message)
//! and read [`Event`]s: messages in order and without duplicates, receipts,
//! recalls, typing, application signals, kicks and connection changes. The client sends
//! heartbeats and delivered receipts by itself, reconnects with backoff,
//! resends unacknowledged messages with their original ids, and catches up
//! by itself: when the server says messages wait (a `SyncNotice`), when a
//! conversation's start is unknown, and after a quiet spell
//! ([`ClientOptions::idle_sync`]), it pulls byte-bounded sync pages until
//! none is left.
//!
//! Start with [`Client`]; the order messages reach the application in is
//! `ordering.rs` (pure, unit-tested), the sync round `catch_up.rs`, the
//! connection actor `actor.rs`.

mod actor;
mod catch_up;
mod client;
mod command;
mod error;
mod ordering;
#[cfg(feature = "tls")]
mod tls;
mod transport;

use std::time::Duration;

use imkit_proto::pb;

pub use client::{Client, Events, Peer};
pub use command::{ConnectionState, MIN_HEARTBEAT_MS};
pub use error::ClientError;
pub use imkit_proto::pb as proto;
pub use imkit_proto::pb::{Content, File, Message};
#[cfg(feature = "tls")]
pub use tls::TrustedRoots;
pub use transport::ServerAddr;

/// Client settings; every field has a default.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// How long a request waits for its answer (default 10 s). Sends do not
    /// time out: they wait in the outbox until acknowledged.
    pub request_timeout: Duration,
    /// Reconnect after losing the connection (default true).
    pub reconnect: bool,
    /// First reconnect delay (default 200 ms); doubles per attempt, with
    /// ±50% jitter.
    pub reconnect_min: Duration,
    /// Longest reconnect delay (default 10 s).
    pub reconnect_max: Duration,
    /// Events buffered for the application (default 4,096). When full, the
    /// client stops reading from the server until there is room.
    pub event_capacity: usize,
    /// Most unacknowledged sends (default 10,000).
    pub max_outbox: usize,
    /// Sends in flight at once (default 256); the rest wait in the outbox.
    pub max_in_flight_sends: usize,
    /// Wait before resending a send the server asked to retry (it was
    /// overloaded, or a fail-closed send hook could not decide); it doubles
    /// with each retry of the same send, ±20%, up to `retry_max_delay`
    /// (default 200 ms). A sync page that failed is asked again after it too.
    pub retry_delay: Duration,
    /// Longest wait between retries of one send (default 5 s).
    pub retry_max_delay: Duration,
    /// Most times one send is retried (default 10, about 30 s with the
    /// default delays). After the last, `send` fails with the server's
    /// error; sending again with the same client message id is safe (the
    /// server stores a message once).
    pub send_retries: u32,
    /// Delivered receipts are coalesced over this delay (default 10 ms).
    pub ack_delay: Duration,
    /// The timed pull: after this long with no message from the server,
    /// the client syncs on its own (default 3 minutes, ±20% jitter; `None`
    /// turns it off). It recovers a wake-up the server lost (in a cluster,
    /// the bus between nodes may drop one) within this interval.
    pub idle_sync: Option<Duration>,
    /// Mints a fresh login token when the server ends the session because
    /// the token expired (`Kicked { TOKEN_EXPIRED }`, after an
    /// [`Event::Kicked`]) or refuses a reconnect with 2003. The client
    /// then reconnects with the new token. `None` (the default): the
    /// client stops and the app logs in again itself.
    pub token_refresh: Option<TokenRefresh>,
    /// Whom `tls://` and `wss://` servers must chain to (feature `tls`;
    /// default: the platform's roots).
    #[cfg(feature = "tls")]
    pub tls_roots: TrustedRoots,
}

/// A callback that mints a fresh login token, usually by asking the app's
/// backend; `None` from it means no token can be had, and the client
/// stops. See [`ClientOptions::token_refresh`].
#[derive(Clone)]
pub struct TokenRefresh(
    std::sync::Arc<dyn Fn() -> futures::future::BoxFuture<'static, Option<String>> + Send + Sync>,
);

impl TokenRefresh {
    /// Wraps an async function that returns a fresh token.
    pub fn new<F, Fut>(mint: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Option<String>> + Send + 'static,
    {
        TokenRefresh(std::sync::Arc::new(move || Box::pin(mint())))
    }

    /// Asks for a fresh token.
    pub(crate) async fn mint(&self) -> Option<String> {
        (self.0)().await
    }
}

impl std::fmt::Debug for TokenRefresh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenRefresh(..)")
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            request_timeout: Duration::from_secs(10),
            reconnect: true,
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(10),
            event_capacity: 4_096,
            max_outbox: 10_000,
            max_in_flight_sends: 256,
            retry_delay: Duration::from_millis(200),
            retry_max_delay: Duration::from_secs(5),
            send_retries: 10,
            ack_delay: Duration::from_millis(10),
            idle_sync: Some(Duration::from_secs(180)),
            token_refresh: None,
            #[cfg(feature = "tls")]
            tls_roots: TrustedRoots::Platform,
        }
    }
}

/// What the server tells the application.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Logged in (first time or after a reconnect).
    Connected {
        /// The user.
        user: String,
        /// The node serving the session.
        node: String,
    },
    /// A message, in conversation order, never twice. Recall events and
    /// group system events arrive this way too (see [`pb::Content`]).
    Message(pb::Message),
    /// A delivered or read cursor moved.
    Receipt(pb::ReceiptPush),
    /// Someone is typing.
    Typing(pb::Typing),
    /// An application signal from another member's device (never stored:
    /// it reaches only devices connected when it was sent).
    Signal(pb::Signal),
    /// A business notification.
    Notification(pb::Notification),
    /// A friend request, acceptance or removal.
    Contact(pb::ContactEvent),
    /// The server ended the session.
    Kicked {
        /// Why.
        reason: pb::KickReason,
        /// The server's words.
        message: String,
    },
    /// The connection dropped.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// Trying to reconnect.
    Reconnecting {
        /// Attempt number, from 1.
        attempt: u32,
    },
}
