//! imkit core: where instant-messaging semantics live, with no sockets.
//!
//! * [`model`]: ids, messages, groups.
//! * [`store`]: one async trait per kind of state (presence, history,
//!   offline inbox, read state, groups, contacts, accounts), held as `Arc<dyn …>`,
//!   with in-memory backends and, behind features, SQLite and Redis ones.
//! * [`engine`]: the [`Engine`] that keeps the delivery contract (durable
//!   before SENT, gap-free seq, idempotent resends, forward-only cursors,
//!   unread from cursors) and returns what must be pushed to whom.
//! * [`auth`] and [`push`]: the hooks an application plugs in.
//! * [`blob`]: where the bytes of file messages live.
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
pub mod model;
pub mod push;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use clock::Clock;
pub use engine::{Caller, Engine, EngineConfig, LoginOutcome, Outcome, Push, Target};
pub use error::{Error, Result};
