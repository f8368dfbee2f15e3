//! In-memory stores: the default backend, fast and correct under
//! concurrency, gone when the process ends.
//!
//! Locks are `parking_lot` mutexes, sharded where traffic is heavy, and are
//! never held across an `.await` (no method awaits while holding one).
//! [`MemoryConversations`] applies a unit of work under its conversation's
//! lock (after the sender's de-duplication slot, always in that order).

mod accounts;
mod contacts;
mod conversations;
mod devices;
mod groups;
mod journal;
mod presence;
mod push;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

use parking_lot::Mutex;

pub use accounts::MemoryAccounts;
pub use contacts::MemoryContacts;
pub use conversations::MemoryConversations;
pub use devices::MemoryDevices;
pub use groups::MemoryGroups;
pub use journal::MemoryJournal;
pub use presence::MemoryPresence;
pub use push::MemoryPush;

const SHARDS: usize = 64;

/// foldhash, randomly seeded per map: several times faster than SipHash
/// on the short string keys here, and still keyed against flooding.
pub(crate) type FastState = foldhash::fast::RandomState;
pub(crate) type FastMap<K, V> = HashMap<K, V, FastState>;

/// A map split over many mutexes by key hash.
pub(crate) struct Sharded<K, V> {
    pub(crate) shards: Box<[Mutex<FastMap<K, V>>]>,
    hasher: FastState,
}

impl<K: Hash + Eq, V> Default for Sharded<K, V> {
    fn default() -> Self {
        Sharded {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(FastMap::default()))
                .collect(),
            hasher: FastState::default(),
        }
    }
}

impl<K: Hash + Eq, V> Sharded<K, V> {
    pub(crate) fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> &Mutex<FastMap<K, V>> {
        let h = self.hasher.hash_one(key);
        // The high bits: the maps inside use the low ones.
        &self.shards[((h >> 32) as usize) % SHARDS]
    }
}
