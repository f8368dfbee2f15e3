//! imkit: embeddable instant messaging.
//!
//! This facade re-exports the member crates: [`proto`] (wire format),
//! [`core`] (model, stores and the messaging engine), and, behind the
//! `server` and `client` features, [`server`] and [`client`]. Start with
//! `examples/server.rs` to embed a server, or `examples/chat.rs` for the SDK.

pub use imkit_core as core;
pub use imkit_proto as proto;

#[cfg(feature = "client")]
pub use imkit_client as client;
#[cfg(feature = "server")]
pub use imkit_server as server;
