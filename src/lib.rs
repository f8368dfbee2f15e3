//! imkit: embeddable instant messaging.
//!
//! A server and a client in one process:
//!
//! ```
//! use std::time::Duration;
//! use imkit::prelude::*;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Server::builder().token_secret("dev").tcp("127.0.0.1:0").start().await?;
//! let addr = server.tcp_addr().ok_or("no tcp listener")?.to_string();
//! let token = |user: &str| server.mint_token(user, Duration::from_secs(3600));
//!
//! let (alice, _) = Client::connect(&addr, ClientOptions::default()).await?;
//! alice.login(&token("alice")?, "phone").await?;
//! let (bob, mut events) = Client::connect(&addr, ClientOptions::default()).await?;
//! bob.login(&token("bob")?, "laptop").await?;
//!
//! alice.send(Peer::user("bob"), Content::text("hello, bob")).await?;
//! while let Some(event) = events.recv().await {
//!     if let Event::Message(m) = event {
//!         assert_eq!(m.text(), Some("hello, bob"));
//!         break;
//!     }
//! }
//! server.shutdown();
//! # Ok(())
//! # }
//! ```
//!
//! The member crates, re-exported: [`proto`] (the wire format), [`engine`]
//! (model, stores and the messaging engine; the `imkit-core` crate), and,
//! behind the `server` and `client` features, [`server`] and [`client`].
//! [`prelude`] has what most programs use. Features: `server` (SQLite),
//! `client`, `http` (the HTTP API), `redis` (cluster mode), `jwt`.
//! `examples/embed.rs` is the program above; docs/architecture.md follows
//! a message through the crates.

pub use imkit_core as engine;
pub use imkit_proto as proto;

#[cfg(feature = "client")]
pub use imkit_client as client;
#[cfg(feature = "server")]
pub use imkit_server as server;

/// What most programs use: `use imkit::prelude::*;`.
pub mod prelude {
    pub use imkit_core::EngineConfig;
    pub use imkit_core::store::StoreConfig;
    pub use imkit_proto::pb::{Content, File, Message};

    #[cfg(feature = "client")]
    pub use imkit_client::{Client, ClientError, ClientOptions, Event, Events, Peer};
    #[cfg(feature = "server")]
    pub use imkit_server::{Limits, Server, ServerBuilder, ServerError, ServerHandle};
}
