//! Store traits, one per concern, and their backends.
//!
//! Stores are held as `Arc<dyn …>` so a server chooses backends at run time.
//! Every backend passes the same conformance suite ([`crate::testing`]).
//! [`Stores`] bundles one of each; [`StoreConfig`] opens them for a backend.
//!
//! The write path of messaging is one method: [`ConversationStore::commit`]
//! takes a [`UnitOfWork`] (see [`unit`]) and applies it atomically.
//! Backends: [`memory`] (always), `sqlite`, `redis` and `postgres`
//! (features).

mod accounts;
mod config;
mod contacts;
mod conversations;
mod devices;
mod groups;
pub mod journal;
pub mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;
mod presence;
mod push;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod unit;

use std::sync::Arc;

pub use accounts::{Account, AccountStore};
pub use config::StoreConfig;
pub use contacts::ContactStore;
pub use conversations::{ConversationStore, Direction, Position};
pub use devices::{DeviceInfo, DeviceStore, Registered};
pub use groups::GroupStore;
pub use journal::{JournalRecord, JournalStore};
pub use presence::{Located, PresenceStore};
pub use push::{DeviceToken, PushProfile, PushStore, PushToken};
pub use unit::{Committed, Cursor, CursorMove, MoveTo, Moved, UnitOfWork};

/// One store of each kind: what the engine needs.
#[derive(Clone)]
pub struct Stores {
    /// Who is connected where.
    pub presence: Arc<dyn PresenceStore>,
    /// Messages, cursors and conversation lists, written by units of work.
    pub conversations: Arc<dyn ConversationStore>,
    /// The devices each user has.
    pub devices: Arc<dyn DeviceStore>,
    /// Groups and members.
    pub groups: Arc<dyn GroupStore>,
    /// Friends and blocks.
    pub contacts: Arc<dyn ContactStore>,
    /// Accounts and revoked tokens.
    pub accounts: Arc<dyn AccountStore>,
    /// Events waiting to be handed on (webhooks), written with the units
    /// that caused them.
    pub journal: Arc<dyn JournalStore>,
    /// Push tokens and notification preferences.
    pub push: Arc<dyn PushStore>,
}

impl Stores {
    /// Everything in memory: fast, and gone when the process ends.
    pub fn memory() -> Stores {
        let conversations = memory::MemoryConversations::default();
        Stores {
            presence: Arc::new(memory::MemoryPresence::default()),
            journal: conversations.journal(),
            push: Arc::new(memory::MemoryPush::default()),
            conversations: Arc::new(conversations),
            devices: Arc::new(memory::MemoryDevices::default()),
            groups: Arc::new(memory::MemoryGroups::default()),
            contacts: Arc::new(memory::MemoryContacts::default()),
            accounts: Arc::new(memory::MemoryAccounts::default()),
        }
    }
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores").finish_non_exhaustive()
    }
}
