//! imkit core: where instant-messaging semantics live, with no sockets.
//!
//! ```
//! use imkit_core::store::Stores;
//! use imkit_core::{Caller, Engine, EngineConfig};
//! use imkit_proto::pb;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> imkit_core::Result<()> {
//! let engine = Engine::new(Stores::memory(), EngineConfig::default());
//! let alice = Caller::new("alice", "phone");
//! let sent = engine
//!     .send(&alice, pb::SendRequest {
//!         client_msg_id: "m-1".into(),
//!         to: Some(pb::send_request::To::UserId("bob".into())),
//!         content: Some(pb::Content::text("hello")),
//!     })
//!     .await?;
//! // Stored at seq 1; `pushes` says which connected devices get it.
//! assert_eq!(sent.reply.seq, 1);
//! let bob = Caller::new("bob", "laptop");
//! let page = engine
//!     .history(&bob, pb::HistoryRequest {
//!         conversation_id: sent.reply.conversation_id.clone(),
//!         ..Default::default()
//!     })
//!     .await?;
//! assert_eq!(page.messages[0].text(), Some("hello"));
//! # Ok(())
//! # }
//! ```
//!
//! * [`model`]: ids, messages, groups.
//! * [`store`]: one async trait per kind of state (presence, conversations
//!   with their cursors, devices, groups, contacts, accounts, the event
//!   journal), held as
//!   `Arc<dyn …>`, with in-memory backends and, behind features, SQLite and
//!   Redis ones. Messaging writes are [`store::UnitOfWork`]s, each committed
//!   atomically (and group-committed by the backends).
//! * [`engine`]: the [`Engine`] that keeps the delivery contract (durable
//!   before SENT, gap-free seq, idempotent resends, forward-only cursors,
//!   unread from cursors) and returns what must be pushed to whom. Devices
//!   that are not connected get nothing written for them: they catch up
//!   from their delivered cursors (read diffusion).
//! * [`auth`] and [`push`]: the hooks an application plugs in; `auth`
//!   also holds the built-in login tokens (standard JWTs with feature
//!   `jwt`, and the older HMAC format).
//! * [`blob`]: where the bytes of file messages live.
//! * [`hooks`]: an embedder's code before sends and after commits.
//! * [`journal`]: the durable event journal the server's webhooks post
//!   from, recorded in the units' own transactions
//!   ([`store::journal`]).
//! * [`memo`]: answers kept while their source's generation holds (a large
//!   group's fan-out, in the engine and in the server).
//! * `testing` (feature `testing`): the conformance suite every store
//!   backend runs.
//!
//! Start with [`Engine::new`] over [`store::Stores::memory`], and
//! [`Engine::handle`].

pub mod auth;
pub mod blob;
mod clock;
pub mod engine;
mod error;
pub mod hooks;
pub mod journal;
pub mod memo;
pub mod model;
pub mod push;
pub mod store;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use clock::Clock;
pub use engine::{Caller, Engine, EngineConfig, LoginOutcome, Outcome, Push, Target};
pub use error::{Error, Result};
