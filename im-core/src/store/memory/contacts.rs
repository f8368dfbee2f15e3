//! In-memory [`ContactStore`].

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::Result;
use crate::model::*;
use crate::store::ContactStore;

#[derive(Default)]
struct UserContacts {
    friends: BTreeSet<UserId>,
    incoming: BTreeSet<UserId>,
    outgoing: BTreeSet<UserId>,
    blocked: BTreeSet<UserId>,
    group_adds: GroupAdds,
}

/// In-memory [`ContactStore`]. One lock, so two-sided changes are atomic.
#[derive(Default)]
pub struct MemoryContacts {
    users: Mutex<HashMap<UserId, UserContacts>>,
}

#[async_trait]
impl ContactStore for MemoryContacts {
    async fn request(&self, from: &UserId, to: &UserId) -> Result<FriendRequestOutcome> {
        let mut users = self.users.lock();
        let f = users.entry(from.clone()).or_default();
        if f.friends.contains(to) {
            return Ok(FriendRequestOutcome::AlreadyFriends);
        }
        if f.incoming.remove(to) {
            f.friends.insert(to.clone());
            let t = users.entry(to.clone()).or_default();
            t.outgoing.remove(from);
            t.friends.insert(from.clone());
            return Ok(FriendRequestOutcome::BecameFriends);
        }
        f.outgoing.insert(to.clone());
        users
            .entry(to.clone())
            .or_default()
            .incoming
            .insert(from.clone());
        Ok(FriendRequestOutcome::Pending)
    }

    async fn accept(&self, user: &UserId, from: &UserId) -> Result<bool> {
        let mut users = self.users.lock();
        let u = users.entry(user.clone()).or_default();
        if !u.incoming.remove(from) {
            return Ok(false);
        }
        u.friends.insert(from.clone());
        let f = users.entry(from.clone()).or_default();
        f.outgoing.remove(user);
        f.friends.insert(user.clone());
        Ok(true)
    }

    async fn remove(&self, user: &UserId, other: &UserId) -> Result<bool> {
        let mut users = self.users.lock();
        let mut changed = false;
        for (a, b) in [(user, other), (other, user)] {
            if let Some(c) = users.get_mut(a) {
                changed |= c.friends.remove(b);
                changed |= c.incoming.remove(b);
                changed |= c.outgoing.remove(b);
            }
        }
        Ok(changed)
    }

    async fn list(&self, user: &UserId) -> Result<ContactList> {
        let users = self.users.lock();
        Ok(users
            .get(user)
            .map(|c| ContactList {
                friends: c.friends.iter().cloned().collect(),
                incoming: c.incoming.iter().cloned().collect(),
                outgoing: c.outgoing.iter().cloned().collect(),
                blocked: c.blocked.iter().cloned().collect(),
            })
            .unwrap_or_default())
    }

    async fn block(&self, user: &UserId, other: &UserId) -> Result<()> {
        self.users
            .lock()
            .entry(user.clone())
            .or_default()
            .blocked
            .insert(other.clone());
        Ok(())
    }

    async fn unblock(&self, user: &UserId, other: &UserId) -> Result<bool> {
        Ok(self
            .users
            .lock()
            .get_mut(user)
            .is_some_and(|c| c.blocked.remove(other)))
    }

    async fn is_blocked(&self, user: &UserId, other: &UserId) -> Result<bool> {
        Ok(self
            .users
            .lock()
            .get(user)
            .is_some_and(|c| c.blocked.contains(other)))
    }

    async fn group_adds(&self, user: &UserId) -> Result<GroupAdds> {
        Ok(self
            .users
            .lock()
            .get(user)
            .map(|c| c.group_adds)
            .unwrap_or_default())
    }

    async fn set_group_adds(&self, user: &UserId, policy: GroupAdds) -> Result<()> {
        self.users
            .lock()
            .entry(user.clone())
            .or_default()
            .group_adds = policy;
        Ok(())
    }
}
