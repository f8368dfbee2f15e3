//! In-memory [`GroupStore`].

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::model::*;
use crate::store::GroupStore;
use crate::{Error, Result};

#[derive(Default)]
struct GroupsInner {
    groups: HashMap<GroupId, (Group, Vec<Member>)>,
    by_user: HashMap<UserId, BTreeSet<GroupId>>,
}

/// In-memory [`GroupStore`].
#[derive(Default)]
pub struct MemoryGroups {
    inner: Mutex<GroupsInner>,
}

#[async_trait]
impl GroupStore for MemoryGroups {
    async fn create(&self, group: Group, members: Vec<Member>) -> Result<()> {
        let mut inner = self.inner.lock();
        let id = group.id.clone();
        let Entry::Vacant(slot) = inner.groups.entry(id.clone()) else {
            return Err(Error::Conflict(format!("group {id} exists")));
        };
        let mut unique: Vec<Member> = Vec::with_capacity(members.len());
        for m in members {
            if !unique.iter().any(|u| u.user == m.user) {
                unique.push(m);
            }
        }
        let users: Vec<UserId> = unique.iter().map(|m| m.user.clone()).collect();
        slot.insert((group, unique));
        for u in users {
            inner.by_user.entry(u).or_default().insert(id.clone());
        }
        Ok(())
    }

    async fn dismiss(&self, group: &GroupId) -> Result<bool> {
        let mut inner = self.inner.lock();
        let Some((_, members)) = inner.groups.remove(group) else {
            return Ok(false);
        };
        for m in members {
            if let Some(set) = inner.by_user.get_mut(&m.user) {
                set.remove(group);
            }
        }
        Ok(true)
    }

    async fn get(&self, group: &GroupId) -> Result<Option<Group>> {
        Ok(self.inner.lock().groups.get(group).map(|(g, _)| g.clone()))
    }

    async fn update(
        &self,
        group: &GroupId,
        name: Option<String>,
        avatar: Option<String>,
    ) -> Result<Option<Group>> {
        let mut inner = self.inner.lock();
        let Some((g, _)) = inner.groups.get_mut(group) else {
            return Ok(None);
        };
        if let Some(name) = name {
            g.name = name;
        }
        if let Some(avatar) = avatar {
            g.avatar = avatar;
        }
        Ok(Some(g.clone()))
    }

    async fn add_members(&self, group: &GroupId, members: Vec<Member>) -> Result<Vec<UserId>> {
        let mut inner = self.inner.lock();
        let Some((_, list)) = inner.groups.get_mut(group) else {
            return Err(Error::NotFound(format!("group {group}")));
        };
        let mut added = Vec::new();
        for m in members {
            if !list.iter().any(|x| x.user == m.user) {
                added.push(m.user.clone());
                list.push(m);
            }
        }
        for u in &added {
            inner
                .by_user
                .entry(u.clone())
                .or_default()
                .insert(group.clone());
        }
        Ok(added)
    }

    async fn remove_members(&self, group: &GroupId, users: &[UserId]) -> Result<Vec<UserId>> {
        let mut inner = self.inner.lock();
        let Some((_, list)) = inner.groups.get_mut(group) else {
            return Err(Error::NotFound(format!("group {group}")));
        };
        let mut removed = Vec::new();
        list.retain(|m| {
            let gone = users.contains(&m.user);
            if gone {
                removed.push(m.user.clone());
            }
            !gone
        });
        for u in &removed {
            if let Some(set) = inner.by_user.get_mut(u) {
                set.remove(group);
            }
        }
        Ok(removed)
    }

    async fn set_role(&self, group: &GroupId, user: &UserId, role: Role) -> Result<bool> {
        let mut inner = self.inner.lock();
        let Some((_, list)) = inner.groups.get_mut(group) else {
            return Ok(false);
        };
        match list.iter_mut().find(|m| &m.user == user) {
            Some(m) => {
                m.role = role;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn members(&self, group: &GroupId) -> Result<Vec<Member>> {
        Ok(self
            .inner
            .lock()
            .groups
            .get(group)
            .map(|(_, m)| m.clone())
            .unwrap_or_default())
    }

    async fn member(&self, group: &GroupId, user: &UserId) -> Result<Option<Member>> {
        Ok(self
            .inner
            .lock()
            .groups
            .get(group)
            .and_then(|(_, m)| m.iter().find(|m| &m.user == user).cloned()))
    }

    async fn groups_of(&self, user: &UserId) -> Result<Vec<GroupId>> {
        Ok(self
            .inner
            .lock()
            .by_user
            .get(user)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default())
    }
}
