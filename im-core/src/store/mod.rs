//! Store traits, one per concern, and their backends.
//!
//! Stores are held as `Arc<dyn …>` so a server chooses backends at run time.
//! Every backend passes the same conformance suite ([`crate::testing`]).
//! [`Stores`] bundles one of each.

mod accounts;
mod contacts;
mod groups;
mod history;
mod inbox;
pub mod memory;
mod presence;
mod read_state;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "sqlite")]
pub mod sqlite;

use std::sync::Arc;

pub use accounts::{Account, AccountStore};
pub use contacts::ContactStore;
pub use groups::GroupStore;
pub use history::{Direction, HistoryStore};
pub use inbox::InboxStore;
pub use presence::PresenceStore;
pub use read_state::ReadStateStore;

/// One store of each kind: what the engine needs.
#[derive(Clone)]
pub struct Stores {
    /// Who is connected where.
    pub presence: Arc<dyn PresenceStore>,
    /// Messages, numbered per conversation.
    pub history: Arc<dyn HistoryStore>,
    /// Offline pointers per device.
    pub inbox: Arc<dyn InboxStore>,
    /// Cursors, devices and conversation lists.
    pub read_state: Arc<dyn ReadStateStore>,
    /// Groups and members.
    pub groups: Arc<dyn GroupStore>,
    /// Friends and blocks.
    pub contacts: Arc<dyn ContactStore>,
    /// Accounts and revoked tokens.
    pub accounts: Arc<dyn AccountStore>,
}

impl Stores {
    /// Everything in memory: fast, and gone when the process ends.
    pub fn memory() -> Stores {
        Stores {
            presence: Arc::new(memory::MemoryPresence::default()),
            history: Arc::new(memory::MemoryHistory::default()),
            inbox: Arc::new(memory::MemoryInbox::default()),
            read_state: Arc::new(memory::MemoryReadState::default()),
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
