//! Results kept while what they were worked out from is unchanged.
//!
//! A large group's fan-out works out the same answers message after
//! message: the engine, where the members' devices are; the server, which
//! connections those are. Each keeps its answers in a [`GenerationMemo`]:
//! every entry is stamped with the generation of its source (a counter the
//! source bumps on every change), is found only at that generation, and is
//! dropped once an entry of a newer generation is kept, since it can never
//! match again. The memo is bounded by the entries' total [`Kept::weight`],
//! least recently used out first.

use std::sync::Arc;

use parking_lot::Mutex;

/// An entry of a [`GenerationMemo`].
pub trait Kept {
    /// The generation of the source it was worked out from.
    fn generation(&self) -> u64;
    /// What it counts against the memo's bound (ids it holds, say).
    fn weight(&self) -> usize;
}

/// A short list of entries, most recently used last, bounded in total
/// weight. The lock is held to pick or place an entry, never to compare one
/// at length.
#[derive(Debug)]
pub struct GenerationMemo<T> {
    entries: Mutex<Vec<Arc<T>>>,
    max_weight: usize,
}

impl<T: Kept> GenerationMemo<T> {
    /// An empty memo holding at most `max_weight` in all.
    pub fn new(max_weight: usize) -> Self {
        GenerationMemo {
            entries: Mutex::new(Vec::new()),
            max_weight,
        }
    }

    /// The most recently used entry of `generation` that `likely` picks
    /// (a cheap check, under the lock) and `exact` then confirms (outside
    /// it).
    pub fn find(
        &self,
        generation: u64,
        likely: impl Fn(&T) -> bool,
        exact: impl FnOnce(&T) -> bool,
    ) -> Option<Arc<T>> {
        let candidate = {
            let mut entries = self.entries.lock();
            let i = entries
                .iter()
                .rposition(|e| e.generation() == generation && likely(e))?;
            let e = entries.remove(i);
            entries.push(e.clone());
            e
        };
        exact(&candidate).then_some(candidate)
    }

    /// Keeps `entry`, unless it alone is over the bound; drops entries of
    /// older generations and, past the bound, the least recently used.
    pub fn keep(&self, entry: Arc<T>) {
        if entry.weight() > self.max_weight {
            return;
        }
        let mut entries = self.entries.lock();
        let generation = entry.generation();
        entries.retain(|e| e.generation() >= generation);
        entries.push(entry);
        let mut held: usize = entries.iter().map(|e| e.weight()).sum();
        while held > self.max_weight && entries.len() > 1 {
            held -= entries.remove(0).weight();
        }
    }

    /// The total weight held now.
    pub fn held(&self) -> usize {
        self.entries.lock().iter().map(|e| e.weight()).sum()
    }
}
