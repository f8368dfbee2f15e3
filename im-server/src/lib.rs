//! imkit server: assembles the core over TCP and WebSocket.
//!
//! [`Server::builder`] picks stores, the authenticator, the push notifier,
//! [`Limits`] and listeners; [`Server::run`] serves until shutdown. Inside,
//! each connection is a session task (login deadline, heartbeats, rate
//! limit, dispatch to the [`imkit_core::Engine`]) plus a writer task that
//! drains a bounded queue in batches; the [`Router`] delivers the engine's
//! pushes to local queues, to other nodes through a [`ClusterBus`], or to
//! the offline inbox. With feature `http`, [`http`] serves the HTTP API
//! (accounts, tokens, server-side sends, files; see docs/openapi.json)
//! through the same engine and router. The `imkit-server` binary wraps all
//! of it.

#[cfg(feature = "redis")]
pub mod cluster;
mod config;
mod error;
#[cfg(feature = "http")]
pub mod http;
mod outbox;
mod registry;
mod router;
mod server;
mod session;
mod transport;

pub use config::Limits;
pub use error::ServerError;
pub use registry::{ConnHandle, Registry};
pub use router::{ClusterBus, LocalNode, Router};
pub use server::{Server, ServerBuilder, ServerHandle};
