//! The devices a message or a live-only relay reaches ([`Engine::reach`]),
//! and for a large group that answer kept between messages.
//!
//! Fanning a message out to a group of thousands asks presence where each
//! member's devices are ([`PresenceStore::locate_many`]) and builds a target
//! per device: for a group whose members sit still, the same answer message
//! after message. When the presence store can say that nothing changed
//! ([`PresenceStore::generation`]; the memory store can, Redis cannot), the
//! engine keeps that answer for a group of at least [`MIN_MEMBERS`] and
//! reuses it while the generation, the member list and the sender's device
//! are the same. The targets are shared ([`Push::targets`] is an `Arc`), so
//! reusing them copies nothing. Typing and signals to the group reuse the
//! same answer, less the sender's other devices.
//!
//! Why a device cannot be missed: the generation is read after the message
//! is stored. A device that came online before that read changed it; one
//! that comes online after it syncs after coming online, and its sync reads
//! the message. That is the argument the presence lookup itself relies on.
//!
//! Bounded: entries together hold at most [`MAX_TARGETS`] targets, least
//! recently used first out, and entries of an older generation are dropped
//! when a newer one is kept.
//!
//! [`PresenceStore::locate_many`]: crate::store::PresenceStore::locate_many
//! [`PresenceStore::generation`]: crate::store::PresenceStore::generation
//! [`Push::targets`]: crate::Push::targets

use std::sync::Arc;

use super::{Caller, Engine, Target};
use crate::Result;
use crate::memo::{GenerationMemo, Kept};
use crate::model::{ConversationId, DeviceId, UserId};

/// The fewest members a send needs for its audience to be kept.
pub(crate) const MIN_MEMBERS: usize = 256;

/// The most targets and members all entries hold together.
pub(crate) const MAX_TARGETS: usize = 1 << 18;

/// Who one sender's message to one member list reaches, at one presence
/// generation.
#[derive(Debug)]
pub(crate) struct Audience {
    generation: u64,
    conversation: ConversationId,
    sender: (UserId, DeviceId),
    members: Vec<UserId>,
    /// The connected devices, the sender's own excepted.
    pub(crate) targets: Arc<[Target]>,
    /// Members other than the sender with no device connected.
    pub(crate) offline: Vec<UserId>,
}

impl Audience {
    /// An audience found at `generation` for a message from `sender`.
    pub(crate) fn new(
        generation: u64,
        conversation: ConversationId,
        sender: &Caller,
        members: &[UserId],
        targets: Arc<[Target]>,
        offline: Vec<UserId>,
    ) -> Self {
        Audience {
            generation,
            conversation,
            sender: (sender.user.clone(), sender.device.clone()),
            members: members.to_vec(),
            targets,
            offline,
        }
    }

    fn may_be(
        &self,
        generation: u64,
        conversation: &ConversationId,
        sender: &Caller,
        n: usize,
    ) -> bool {
        self.generation == generation
            && self.members.len() == n
            && self.conversation == *conversation
            && self.sender.0 == sender.user
            && self.sender.1 == sender.device
    }
}

impl Kept for Audience {
    fn generation(&self) -> u64 {
        self.generation
    }

    fn weight(&self) -> usize {
        self.members.len() + self.targets.len()
    }
}

/// Who something from one sender to a member list reaches now.
pub(crate) enum Reach {
    /// A large group's answer, kept from an earlier lookup.
    Kept(Arc<Audience>),
    /// Looked up now.
    Found {
        targets: Arc<[Target]>,
        offline: Vec<UserId>,
    },
}

impl Reach {
    /// The connected devices, the sender's own excepted.
    pub(crate) fn targets(&self) -> &Arc<[Target]> {
        match self {
            Reach::Kept(a) => &a.targets,
            Reach::Found { targets, .. } => targets,
        }
    }

    /// The members other than the sender with no device connected.
    pub(crate) fn into_offline(self) -> Vec<UserId> {
        match self {
            Reach::Kept(a) => a.offline.clone(),
            Reach::Found { offline, .. } => offline,
        }
    }

    /// The targets without any device of `user`, as a live-only relay
    /// wants them; shared, not copied, when `user` has no other device
    /// connected.
    pub(crate) fn targets_without(&self, user: &UserId) -> Arc<[Target]> {
        let all = self.targets();
        if all.iter().any(|t| t.user == *user) {
            all.iter().filter(|t| t.user != *user).cloned().collect()
        } else {
            all.clone()
        }
    }
}

impl Engine {
    /// Where `users` are connected, for something `sender` sends to
    /// `conversation`: every connected device but the sender's own, and the
    /// members other than the sender with none. A large group's answer is
    /// kept and reused while presence reports no change (see the module).
    pub(super) async fn reach(
        &self,
        conversation: &ConversationId,
        users: &[UserId],
        sender: &Caller,
    ) -> Result<Reach> {
        // Read after the commit, for a message (see the module).
        let generation = if users.len() >= MIN_MEMBERS {
            self.inner.stores.presence.generation()
        } else {
            None
        };
        if let Some(g) = generation
            && let Some(kept) = self.inner.audiences.find(g, conversation, sender, users)
        {
            return Ok(Reach::Kept(kept));
        }
        let located = self.inner.stores.presence.locate_many(users).await?;
        let mut targets = Vec::with_capacity(located.len());
        let mut offline = Vec::new();
        // Entries come in the order of `users`: who has none is offline.
        let mut next = 0;
        for loc in located {
            let Some(user) = users.get(loc.user) else {
                continue;
            };
            offline.extend(
                users[next.min(loc.user)..loc.user]
                    .iter()
                    .filter(|u| **u != sender.user)
                    .cloned(),
            );
            next = loc.user + 1;
            if user == &sender.user && loc.device == sender.device {
                continue;
            }
            targets.push(Target {
                user: user.clone(),
                device: loc.device,
                node: loc.node,
            });
        }
        offline.extend(
            users[next.min(users.len())..]
                .iter()
                .filter(|u| **u != sender.user)
                .cloned(),
        );
        let targets: Arc<[Target]> = targets.into();
        if let Some(g) = generation {
            self.inner.audiences.keep(Audience::new(
                g,
                conversation.clone(),
                sender,
                users,
                targets.clone(),
                offline.clone(),
            ));
        }
        Ok(Reach::Found { targets, offline })
    }
}

/// The kept audiences.
#[derive(Debug)]
pub(crate) struct Audiences(GenerationMemo<Audience>);

impl Default for Audiences {
    fn default() -> Self {
        Audiences(GenerationMemo::new(MAX_TARGETS))
    }
}

impl Audiences {
    /// The kept audience of a message from `sender` to `members` in
    /// `conversation`, if presence is still at `generation`.
    pub(crate) fn find(
        &self,
        generation: u64,
        conversation: &ConversationId,
        sender: &Caller,
        members: &[UserId],
    ) -> Option<Arc<Audience>> {
        // Member ids shared with the last send compare by pointer.
        self.0.find(
            generation,
            |e| e.may_be(generation, conversation, sender, members.len()),
            |e| e.members == members,
        )
    }

    /// Keeps `audience` if its group is large enough to be worth it.
    pub(crate) fn keep(&self, audience: Audience) {
        if audience.members.len() >= MIN_MEMBERS {
            self.0.keep(Arc::new(audience));
        }
    }

    /// Targets and members held (for tests).
    #[cfg(test)]
    fn held(&self) -> usize {
        self.0.held()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{Audience, Audiences, MAX_TARGETS, MIN_MEMBERS};
    use crate::engine::{Caller, Target};
    use crate::model::{ConversationId, DeviceId, NodeId, UserId};

    fn members(prefix: &str, n: usize) -> Vec<UserId> {
        (0..n)
            .map(|i| UserId::from(format!("{prefix}{i}").as_str()))
            .collect()
    }

    fn audience(g: u64, conv: &ConversationId, sender: &Caller, members: &[UserId]) -> Audience {
        let node = NodeId::from("n1");
        let targets: Arc<[Target]> = members
            .iter()
            .map(|u| Target {
                user: u.clone(),
                device: DeviceId::from("d"),
                node: node.clone(),
            })
            .collect();
        Audience::new(g, conv.clone(), sender, members, targets, Vec::new())
    }

    fn caller(user: &str, device: &str) -> Caller {
        Caller {
            user: UserId::from(user),
            device: DeviceId::from(device),
        }
    }

    #[test]
    fn kept_for_the_same_generation_members_and_sender_only() {
        let memo = Audiences::default();
        let conv = ConversationId::new("g:big");
        let alice = caller("alice", "phone");
        let list = members("m", MIN_MEMBERS);
        memo.keep(audience(7, &conv, &alice, &list));
        assert!(memo.find(7, &conv, &alice, &list).is_some());
        assert!(
            memo.find(8, &conv, &alice, &list).is_none(),
            "presence changed"
        );
        assert!(
            memo.find(7, &conv, &caller("alice", "tablet"), &list)
                .is_none(),
            "another device of the sender"
        );
        assert!(
            memo.find(7, &ConversationId::new("g:other"), &alice, &list)
                .is_none()
        );
        let mut changed = list.clone();
        changed[100] = UserId::from("newcomer");
        assert!(
            memo.find(7, &conv, &alice, &changed).is_none(),
            "the members changed"
        );
        // A newer generation drops the older entries.
        memo.keep(audience(8, &conv, &alice, &list));
        assert_eq!(memo.held(), 2 * MIN_MEMBERS);
        assert!(memo.find(7, &conv, &alice, &list).is_none());
    }

    #[test]
    fn small_groups_are_not_kept_and_the_whole_is_bounded() {
        let memo = Audiences::default();
        let alice = caller("alice", "phone");
        let small = members("s", MIN_MEMBERS - 1);
        memo.keep(audience(1, &ConversationId::new("g:small"), &alice, &small));
        assert_eq!(memo.held(), 0);
        // Each weighs a quarter of the bound (members and targets): the
        // fifth pushes out the first.
        let n = MAX_TARGETS / 8;
        let convs: Vec<ConversationId> = (0..5)
            .map(|k| ConversationId::new(format!("g:{k}")))
            .collect();
        let lists: Vec<Vec<UserId>> = (0..5).map(|k| members(&format!("g{k}-"), n)).collect();
        for (conv, list) in convs.iter().zip(&lists) {
            memo.keep(audience(1, conv, &alice, list));
        }
        assert_eq!(memo.held(), MAX_TARGETS);
        assert!(memo.find(1, &convs[0], &alice, &lists[0]).is_none());
        assert!(memo.find(1, &convs[4], &alice, &lists[4]).is_some());
    }
}
