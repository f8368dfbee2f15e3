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
use std::hash::{BuildHasher, Hash, Hasher};

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

impl<K: Hash + Eq, V> Sharded<Prehashed<K>, V> {
    /// `key` with its hash, ready to look up or insert.
    pub(crate) fn prehash(&self, key: K) -> Prehashed<K> {
        Prehashed {
            hash: self.hasher.hash_one(&key),
            key,
        }
    }
}

/// A key stored with its hash. A map of keys that live on the heap (a
/// sender and a client message id) re-hashes every key each time it grows,
/// and reading them all back is most of that cost; this one re-hashes the
/// `u64` kept beside each. Equal keys have equal hashes (one hasher per
/// map, see [`Sharded::prehash`]), and the hash is compared first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Prehashed<K> {
    hash: u64,
    key: K,
}

impl<K> Hash for Prehashed<K> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prehashed_keys_find_equal_keys_and_only_those_as_the_map_grows() {
        let map: Sharded<Prehashed<(String, String)>, usize> = Sharded::default();
        let key = |i: usize| (format!("user{}", i % 97), format!("client-{i}"));
        for i in 0..20_000 {
            let k = map.prehash(key(i));
            assert!(
                map.shard(&k).lock().insert(k, i).is_none(),
                "key {i} is new"
            );
        }
        for i in 0..20_000 {
            let k = map.prehash(key(i));
            assert_eq!(map.shard(&k).lock().get(&k), Some(&i), "key {i}");
        }
        // The same client id from another sender is another key.
        let other = map.prehash(("someone else".to_owned(), "client-5".to_owned()));
        assert_eq!(map.shard(&other).lock().get(&other), None);
        let total: usize = map.shards.iter().map(|s| s.lock().len()).sum();
        assert_eq!(total, 20_000);
    }
}
