//! imkit server: assembles the core over TCP and WebSocket.
//!
//! ```
//! use std::time::Duration;
//! use imkit_core::store::StoreConfig;
//! use imkit_server::{Limits, Server};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), imkit_server::ServerError> {
//! let server = Server::builder()
//!     .store(StoreConfig::Memory) // or StoreConfig::sqlite("imkit.db")
//!     .token_secret("change-me")
//!     .limits(Limits::default())
//!     .tcp("127.0.0.1:0")
//!     .websocket("127.0.0.1:0")
//!     .start()
//!     .await?;
//! println!("chat on {:?}", server.tcp_addr());
//! let token = server.mint_token("alice", Duration::from_secs(3600))?;
//! # let _ = token;
//! server.shutdown();
//! # Ok(())
//! # }
//! ```
//!
//! [`Server::builder`] picks stores, the authenticator, the push notifier,
//! [`Limits`] and listeners; [`Server::run`] serves until shutdown. Inside,
//! each connection is a session task (login deadline, heartbeats, rate
//! limit) plus a writer task that drains a bounded queue in batches. Every
//! request, from a session or the HTTP API, runs through
//! [`Router::exec`]: the [`imkit_core::Engine`] commits it, and the router
//! delivers what it produced to local queues and to other nodes through a
//! [`ClusterBus`]. Devices that are not connected catch up from their
//! cursors. With feature `http`, [`http`] serves the HTTP API (accounts,
//! tokens, server-side sends, files; see docs/openapi.json) behind its own
//! timeouts and limits. With feature `tls`, [`TlsOptions`] puts every
//! listener behind TLS (rustls). [`fds`] splits the open-file budget between chat
//! and HTTP connections; SECURITY.md lists every limit and what it stops.
//! The `imkit-server` binary wraps all of it.

mod builder;
mod bus;
#[cfg(feature = "redis")]
pub mod cluster;
mod config;
mod error;
#[cfg(feature = "metrics")]
mod exporter;
mod fanout;
pub mod fds;
mod handle;
#[cfg(feature = "http")]
pub mod http;
mod inbuf;
mod lifecycle;
pub mod metrics;
mod outbox;
#[cfg(feature = "webhooks")]
pub mod push;
mod registry;
mod router;
mod server;
mod session;
#[cfg(feature = "tls")]
mod tls;
mod transport;
#[cfg(feature = "webhooks")]
pub mod webhooks;

pub use builder::ServerBuilder;
pub use bus::{ClusterBus, LocalNode};
pub use config::Limits;
pub use error::ServerError;
pub use handle::ServerHandle;
pub use router::Router;
pub use server::Server;
#[cfg(feature = "tls")]
pub use tls::TlsOptions;
