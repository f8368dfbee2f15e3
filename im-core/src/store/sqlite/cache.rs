//! A write-through cache for values that one process owns, safe against
//! a reader racing a writer.

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A bounded map of values read from the database, dropped on every write
/// to them. A reader notes [`Cached::generation`] before it reads and
/// offers what it read with [`Cached::fill`]; writers call
/// [`Cached::invalidate`] before and after they write. The generation moves
/// with each invalidation, so a value read while a write was in flight is
/// never cached (it may be older than the write).
#[derive(Debug)]
pub(crate) struct Cached<K, V> {
    map: Mutex<FastMap<K, V>>,
    generation: AtomicU64,
    cap: usize,
}

impl<K: Hash + Eq, V: Clone> Cached<K, V> {
    /// A cache of at most `cap` entries (it starts over when full).
    pub(crate) fn new(cap: usize) -> Self {
        Cached {
            map: Mutex::default(),
            generation: AtomicU64::new(0),
            cap,
        }
    }

    pub(crate) fn get(&self, key: &K) -> Option<V> {
        self.map.lock().get(key).cloned()
    }

    /// Notes the moment before a read.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Caches what was read after [`Cached::generation`] returned `seen`,
    /// unless a write has happened since.
    pub(crate) fn fill(&self, key: K, value: V, seen: u64) {
        let mut map = self.map.lock();
        if self.generation.load(Ordering::Acquire) != seen {
            return;
        }
        if map.len() >= self.cap {
            map.clear();
        }
        map.insert(key, value);
    }

    /// Drops `key`; call it before and after writing it.
    pub(crate) fn invalidate(&self, key: &K) {
        let mut map = self.map.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        map.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::Cached;

    #[test]
    fn a_value_read_across_a_write_is_not_cached() {
        let c: Cached<&str, u32> = Cached::new(10);
        let seen = c.generation();
        c.invalidate(&"k"); // a write began (or ended) meanwhile
        c.fill("k", 1, seen);
        assert_eq!(c.get(&"k"), None);
        let seen = c.generation();
        c.fill("k", 2, seen);
        assert_eq!(c.get(&"k"), Some(2));
        c.invalidate(&"k");
        assert_eq!(c.get(&"k"), None);
    }

    #[test]
    fn a_full_cache_starts_over() {
        let c: Cached<u32, u32> = Cached::new(3);
        for k in 0..4 {
            let seen = c.generation();
            c.fill(k, k, seen);
        }
        assert_eq!(c.get(&3), Some(3));
        assert_eq!(c.get(&0), None);
    }
}
