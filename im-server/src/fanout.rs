//! A node's memo of where the devices of a large push are connected.
//!
//! A message to a group of thousands goes to the same devices message after
//! message, and finding each device's connection is a registry lookup per
//! member (a hash, a probe, a key comparison, all on memory the last
//! message left cold). For a push of at least [`MIN_TARGETS`] targets the
//! router keeps the connections it found, keyed by the target list, and the
//! next push to the same list reuses them for as long as the registry's
//! generation is unchanged: every login and logout on this node bumps it.
//! When the engine kept the list too (its own memo of a group's located
//! devices), the two lists are one allocation and match by pointer.
//!
//! Why a reused entry cannot miss a device: the router reads the
//! generation after the message is stored (the read is ordered with the
//! bumps, see [`Registry::generation`]). A device that registered before
//! that read bumped the generation, so the entry is not used; one that
//! registers after it syncs after registering, and its sync reads the
//! message. This is the same argument the registry lookup relies on.
//!
//! Bounded: entries together hold at most [`MAX_TARGETS`] targets, the
//! least recently used go first, and entries of an older generation are
//! dropped as soon as a newer one is stored (they can never match again).
//! On a node where logins are constant, large pushes mostly rebuild their
//! entry, which costs about what the lookups cost without the memo.

use std::sync::Arc;

use imkit_core::Target;
use imkit_core::memo::{GenerationMemo, Kept};

use crate::registry::{ConnHandle, Registry};

/// The fewest targets a push needs for its connections to be kept.
pub(crate) const MIN_TARGETS: usize = 256;

/// The most targets all entries hold together (about 15 MiB).
pub(crate) const MAX_TARGETS: usize = 1 << 18;

/// The connections of one target list, found at one registry generation.
#[derive(Debug)]
pub(crate) struct Resolved {
    generation: u64,
    targets: Arc<[Target]>,
    /// One per target, in the same order: `None` for a device that had no
    /// connection here.
    conns: Vec<Option<ConnHandle>>,
}

impl Resolved {
    /// Finds the connection of each target in `registry`, as of
    /// `generation` (read before the lookups).
    pub(crate) fn resolve(registry: &Registry, generation: u64, targets: &Arc<[Target]>) -> Self {
        let mut conns = vec![None; targets.len()];
        registry.each_connection(targets, |i, conn| conns[i] = Some(conn.clone()));
        Resolved {
            generation,
            targets: targets.clone(),
            conns,
        }
    }

    /// The connections, one per target (`None`: not connected here).
    pub(crate) fn conns(&self) -> &[Option<ConnHandle>] {
        &self.conns
    }

    /// Whether this was resolved for exactly `targets`: the same list, or
    /// one of the same devices in the same order (ids shared with the last
    /// push compare by pointer, so that is a pass over two lists).
    fn is_for(&self, targets: &Arc<[Target]>) -> bool {
        Arc::ptr_eq(&self.targets, targets)
            || (self.targets.len() == targets.len()
                && self
                    .targets
                    .iter()
                    .zip(targets.iter())
                    .all(|(a, t)| a.user == t.user && a.device == t.device))
    }

    /// A cheap first check before [`Resolved::is_for`]: same length, same
    /// first and last target.
    fn may_be_for(&self, targets: &[Target]) -> bool {
        let same = |a: Option<&Target>, b: Option<&Target>| match (a, b) {
            (Some(a), Some(t)) => a.user == t.user && a.device == t.device,
            _ => false,
        };
        self.targets.len() == targets.len()
            && same(self.targets.first(), targets.first())
            && same(self.targets.last(), targets.last())
    }
}

impl Kept for Resolved {
    fn generation(&self) -> u64 {
        self.generation
    }

    fn weight(&self) -> usize {
        self.targets.len()
    }
}

/// The memo of [`Resolved`] lists.
#[derive(Debug)]
pub(crate) struct FanoutMemo(GenerationMemo<Resolved>);

impl Default for FanoutMemo {
    fn default() -> Self {
        FanoutMemo(GenerationMemo::new(MAX_TARGETS))
    }
}

impl FanoutMemo {
    /// The connections of `targets` at `generation`: the stored entry if
    /// one matches, else a fresh resolution (stored when the list is large
    /// enough to be worth it).
    pub(crate) fn connections(
        &self,
        registry: &Registry,
        generation: u64,
        targets: &Arc<[Target]>,
    ) -> Arc<Resolved> {
        if let Some(hit) = self
            .0
            .find(generation, |e| e.may_be_for(targets), |e| e.is_for(targets))
        {
            return hit;
        }
        let fresh = Arc::new(Resolved::resolve(registry, generation, targets));
        if targets.len() >= MIN_TARGETS {
            self.0.keep(fresh.clone());
        }
        fresh
    }

    /// Targets held by all entries (for tests).
    #[cfg(test)]
    fn held(&self) -> usize {
        self.0.held()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use imkit_core::Target;
    use imkit_core::model::{DeviceId, NodeId, UserId};

    use super::{FanoutMemo, MAX_TARGETS, MIN_TARGETS};
    use crate::outbox::Outbox;
    use crate::registry::{ConnHandle, Registry};

    fn conn() -> ConnHandle {
        ConnHandle::new(Arc::new(Outbox::new(16, 1 << 16)))
    }

    /// `n` users with one device each, all connected to `registry`.
    fn members(registry: &Registry, prefix: &str, n: usize) -> Arc<[Target]> {
        let node = NodeId::from("n1");
        (0..n)
            .map(|i| {
                let (user, device) = (
                    UserId::from(format!("{prefix}{i}").as_str()),
                    DeviceId::from("d"),
                );
                registry.insert(&user, &device, conn());
                Target {
                    user,
                    device,
                    node: node.clone(),
                }
            })
            .collect()
    }

    /// A registry of [`MIN_TARGETS`] connected users, an empty memo, and
    /// those users as targets.
    fn setup() -> (Registry, FanoutMemo, Arc<[Target]>) {
        let registry = Registry::default();
        let targets = members(&registry, "u", MIN_TARGETS);
        (registry, FanoutMemo::default(), targets)
    }

    fn ids(conns: &[Option<ConnHandle>]) -> Vec<Option<u64>> {
        conns.iter().map(|c| c.as_ref().map(|c| c.id)).collect()
    }

    #[test]
    fn a_large_list_is_resolved_once_per_generation() {
        let (registry, memo, targets) = setup();
        let g = registry.generation();
        let first = memo.connections(&registry, g, &targets);
        assert!(first.conns().iter().all(Option::is_some));
        let again = memo.connections(&registry, registry.generation(), &targets);
        assert!(
            Arc::ptr_eq(&first, &again),
            "the same list at the same generation reuses the entry"
        );

        // A login anywhere on the node: the entry is not used again.
        registry.insert(&UserId::from("late"), &DeviceId::from("d"), conn());
        let after = memo.connections(&registry, registry.generation(), &targets);
        assert!(!Arc::ptr_eq(&first, &after));
        assert_eq!(ids(first.conns()), ids(after.conns()));
        assert_eq!(
            memo.held(),
            MIN_TARGETS,
            "the older generation's entry is dropped"
        );
    }

    #[test]
    fn a_reconnected_device_is_found_at_the_next_generation() {
        let (registry, memo, targets) = setup();
        let before = memo.connections(&registry, registry.generation(), &targets);
        let fresh = conn();
        registry.insert(&targets[7].user, &targets[7].device, fresh.clone());
        let after = memo.connections(&registry, registry.generation(), &targets);
        assert_eq!(after.conns()[7].as_ref().map(|c| c.id), Some(fresh.id));
        assert_ne!(before.conns()[7].as_ref().map(|c| c.id), Some(fresh.id));
    }

    #[test]
    fn a_different_list_of_the_same_ends_is_not_taken_for_another() {
        let (registry, memo, targets) = setup();
        let g = registry.generation();
        memo.connections(&registry, g, &targets);
        let mut other = targets.to_vec();
        other[100] = Target {
            user: UserId::from("stranger"),
            ..other[100].clone()
        };
        let got = memo.connections(&registry, g, &other.into());
        assert!(
            got.conns()[100].is_none(),
            "a user with no connection here has none"
        );
        assert_eq!(
            got.conns().iter().filter(|c| c.is_some()).count(),
            MIN_TARGETS - 1
        );
    }

    #[test]
    fn small_lists_are_not_kept_and_the_memo_is_bounded() {
        let registry = Registry::default();
        let memo = FanoutMemo::default();
        let small = members(&registry, "s", MIN_TARGETS - 1);
        let g = registry.generation();
        let a = memo.connections(&registry, g, &small);
        let b = memo.connections(&registry, g, &small);
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(memo.held(), 0);

        // Lists of a quarter of the bound each: the oldest goes once a
        // fifth arrives.
        let quarter = MAX_TARGETS / 4;
        let node = NodeId::from("n1");
        let lists: Vec<Arc<[Target]>> = (0..5)
            .map(|k| {
                (0..quarter)
                    .map(|i| Target {
                        user: UserId::from(format!("g{k}-{i}").as_str()),
                        device: DeviceId::from("d"),
                        node: node.clone(),
                    })
                    .collect()
            })
            .collect();
        let first = memo.connections(&registry, g, &lists[0]);
        for list in &lists[1..] {
            memo.connections(&registry, g, list);
        }
        assert_eq!(memo.held(), MAX_TARGETS);
        assert!(!Arc::ptr_eq(
            &first,
            &memo.connections(&registry, g, &lists[0])
        ));
    }
}
