//! In-memory stores: the default backend, fast and correct under
//! concurrency, gone when the process ends.
//!
//! Locks are `parking_lot` mutexes, sharded where traffic is heavy, and are
//! never held across an `.await` (no method awaits while holding one).

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::model::*;
use crate::store::{
    Account, AccountStore, ContactStore, Direction, GroupStore, HistoryStore, InboxStore,
    PresenceStore, ReadStateStore,
};
use crate::{Error, Result};

const SHARDS: usize = 64;

/// Default cap on conversations pending in one device's inbox.
pub const DEFAULT_INBOX_CAP: usize = 10_000;

/// foldhash, randomly seeded per map: several times faster than SipHash
/// on the short string keys here, and still keyed against flooding.
type FastState = foldhash::fast::RandomState;
type FastMap<K, V> = HashMap<K, V, FastState>;

/// A map split over many mutexes by key hash.
struct Sharded<K, V> {
    shards: Box<[Mutex<FastMap<K, V>>]>,
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
    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> &Mutex<FastMap<K, V>> {
        let h = self.hasher.hash_one(key);
        // The high bits: the maps inside use the low ones.
        &self.shards[((h >> 32) as usize) % SHARDS]
    }
}

// ───────────────────────────── Presence ─────────────────────────────

/// In-memory [`PresenceStore`].
#[derive(Default)]
pub struct MemoryPresence {
    users: Sharded<UserId, HashMap<DeviceId, NodeId>>,
}

#[async_trait]
impl PresenceStore for MemoryPresence {
    async fn online(
        &self,
        user: &UserId,
        device: &DeviceId,
        node: &NodeId,
    ) -> Result<Option<NodeId>> {
        let mut shard = self.users.shard(user).lock();
        let devices = shard.entry(user.clone()).or_default();
        Ok(devices.insert(device.clone(), node.clone()))
    }

    async fn offline(&self, user: &UserId, device: &DeviceId, node: &NodeId) -> Result<bool> {
        let mut shard = self.users.shard(user).lock();
        let Some(devices) = shard.get_mut(user) else {
            return Ok(false);
        };
        if devices.get(device) != Some(node) {
            return Ok(false);
        }
        devices.remove(device);
        if devices.is_empty() {
            shard.remove(user);
        }
        Ok(true)
    }

    async fn locate(&self, user: &UserId) -> Result<Vec<DeviceLocation>> {
        let shard = self.users.shard(user).lock();
        Ok(shard
            .get(user)
            .map(|d| {
                d.iter()
                    .map(|(device, node)| DeviceLocation {
                        device: device.clone(),
                        node: node.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn users_on(&self, node: &NodeId) -> Result<Vec<UserId>> {
        let mut out = Vec::new();
        for shard in self.users.shards.iter() {
            let shard = shard.lock();
            out.extend(
                shard
                    .iter()
                    .filter(|(_, d)| d.values().any(|n| n == node))
                    .map(|(u, _)| u.clone()),
            );
        }
        Ok(out)
    }

    async fn clear_node(&self, node: &NodeId) -> Result<usize> {
        let mut removed = 0;
        for shard in self.users.shards.iter() {
            let mut shard = shard.lock();
            shard.retain(|_, devices| {
                let before = devices.len();
                devices.retain(|_, n| n != node);
                removed += before - devices.len();
                !devices.is_empty()
            });
        }
        Ok(removed)
    }
}

// ───────────────────────────── History ─────────────────────────────

type ClientKey = (UserId, String);

/// In-memory [`HistoryStore`].
#[derive(Default)]
pub struct MemoryHistory {
    /// Each message behind an `Arc`, so growing a long conversation's log
    /// moves pointers, not messages.
    conversations: Sharded<ConversationId, Vec<Arc<Message>>>,
    by_client: Sharded<ClientKey, (ConversationId, u64)>,
    by_id: Sharded<MessageId, (ConversationId, u64)>,
}

impl MemoryHistory {
    fn at(&self, conversation: &ConversationId, seq: u64) -> Option<Message> {
        let idx = usize::try_from(seq.checked_sub(1)?).ok()?;
        self.conversations
            .shard(conversation)
            .lock()
            .get(conversation)?
            .get(idx)
            .map(|m| Message::clone(m))
    }
}

#[async_trait]
impl HistoryStore for MemoryHistory {
    async fn append(&self, new: NewMessage) -> Result<Appended> {
        let key: ClientKey = (new.sender.clone(), new.client_msg_id.clone());
        // Lock order: client index shard, then conversation shard.
        let mut clients = self.by_client.shard(&key).lock();
        if let Some((conv, seq)) = clients.get(&key) {
            let message = self
                .at(conv, *seq)
                .ok_or_else(|| Error::store("memory", "client index points at nothing"))?;
            return Ok(Appended {
                message,
                duplicate: true,
            });
        }
        let message = {
            let mut convs = self.conversations.shard(&new.conversation).lock();
            let log = convs.entry(new.conversation.clone()).or_default();
            if let Some(target) = recall_target(&new.content) {
                let idx = usize::try_from(target.saturating_sub(1)).unwrap_or(usize::MAX);
                match log.get_mut(idx) {
                    Some(t) if target > 0 => {
                        let t = Arc::make_mut(t);
                        t.recalled = true;
                        t.content = Default::default();
                    }
                    _ => {
                        return Err(Error::NotFound(format!(
                            "message {target} in {}",
                            new.conversation
                        )));
                    }
                }
            }
            let message = Message::from_new(new, log.len() as u64 + 1);
            log.push(Arc::new(message.clone()));
            message
        };
        clients.insert(key, (message.conversation.clone(), message.seq));
        drop(clients);
        self.by_id
            .shard(&message.id)
            .lock()
            .insert(message.id, (message.conversation.clone(), message.seq));
        Ok(Appended {
            message,
            duplicate: false,
        })
    }

    async fn get(&self, conversation: &ConversationId, seq: u64) -> Result<Option<Message>> {
        Ok(self.at(conversation, seq))
    }

    async fn get_by_id(&self, id: &MessageId) -> Result<Option<Message>> {
        let found = self.by_id.shard(id).lock().get(id).cloned();
        Ok(found.and_then(|(c, s)| self.at(&c, s)))
    }

    async fn find_by_client_id(
        &self,
        sender: &UserId,
        client_msg_id: &str,
    ) -> Result<Option<Message>> {
        let key: ClientKey = (sender.clone(), client_msg_id.to_owned());
        let found = self.by_client.shard(&key).lock().get(&key).cloned();
        Ok(found.and_then(|(c, s)| self.at(&c, s)))
    }

    async fn range(
        &self,
        conversation: &ConversationId,
        from_seq: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let convs = self.conversations.shard(conversation).lock();
        let Some(log) = convs.get(conversation) else {
            return Ok(Vec::new());
        };
        let len = log.len();
        Ok(match direction {
            Direction::Forward => {
                let start = usize::try_from(from_seq).unwrap_or(usize::MAX).min(len);
                log[start..]
                    .iter()
                    .take(limit)
                    .map(|m| Message::clone(m))
                    .collect()
            }
            Direction::Backward => {
                let end = if from_seq == 0 {
                    len
                } else {
                    usize::try_from(from_seq - 1).unwrap_or(usize::MAX).min(len)
                };
                log[..end]
                    .iter()
                    .rev()
                    .take(limit)
                    .map(|m| Message::clone(m))
                    .collect()
            }
        })
    }

    async fn max_seq(&self, conversation: &ConversationId) -> Result<u64> {
        let convs = self.conversations.shard(conversation).lock();
        Ok(convs.get(conversation).map_or(0, |l| l.len() as u64))
    }

    async fn count_unread(
        &self,
        conversation: &ConversationId,
        after_seq: u64,
        reader: &UserId,
    ) -> Result<u64> {
        let convs = self.conversations.shard(conversation).lock();
        let Some(log) = convs.get(conversation) else {
            return Ok(0);
        };
        let start = usize::try_from(after_seq)
            .unwrap_or(usize::MAX)
            .min(log.len());
        Ok(log[start..]
            .iter()
            .filter(|m| &m.sender != reader && m.counts_as_unread())
            .count() as u64)
    }
}

// ───────────────────────────── Inbox ─────────────────────────────

/// In-memory [`InboxStore`]. Entries coalesce per conversation (the pointer
/// keeps the highest seq), so an inbox grows with conversations, not
/// messages; at most `cap` conversations are kept per device.
pub struct MemoryInbox {
    inboxes: Sharded<(UserId, DeviceId), Vec<InboxEntry>>,
    cap: usize,
}

impl Default for MemoryInbox {
    fn default() -> Self {
        MemoryInbox::with_cap(DEFAULT_INBOX_CAP)
    }
}

impl MemoryInbox {
    /// An inbox store keeping at most `cap` conversations per device.
    pub fn with_cap(cap: usize) -> Self {
        MemoryInbox {
            inboxes: Sharded::default(),
            cap: cap.max(1),
        }
    }
}

#[async_trait]
impl InboxStore for MemoryInbox {
    async fn push(&self, user: &UserId, device: &DeviceId, entry: InboxEntry) -> Result<()> {
        let key = (user.clone(), device.clone());
        let mut shard = self.inboxes.shard(&key).lock();
        let entries = shard.entry(key).or_default();
        if let Some(e) = entries
            .iter_mut()
            .find(|e| e.conversation == entry.conversation)
        {
            e.seq = e.seq.max(entry.seq);
            return Ok(());
        }
        if entries.len() >= self.cap {
            entries.remove(0);
        }
        entries.push(entry);
        Ok(())
    }

    async fn pending(
        &self,
        user: &UserId,
        device: &DeviceId,
        limit: usize,
    ) -> Result<Vec<InboxEntry>> {
        let key = (user.clone(), device.clone());
        let shard = self.inboxes.shard(&key).lock();
        Ok(shard
            .get(&key)
            .map(|e| e.iter().take(limit).cloned().collect())
            .unwrap_or_default())
    }

    async fn ack(
        &self,
        user: &UserId,
        device: &DeviceId,
        conversation: &ConversationId,
        up_to_seq: u64,
    ) -> Result<usize> {
        let key = (user.clone(), device.clone());
        let mut shard = self.inboxes.shard(&key).lock();
        let Some(entries) = shard.get_mut(&key) else {
            return Ok(0);
        };
        let before = entries.len();
        entries.retain(|e| !(&e.conversation == conversation && e.seq <= up_to_seq));
        let removed = before - entries.len();
        if entries.is_empty() {
            shard.remove(&key);
        }
        Ok(removed)
    }
}

// ───────────────────────────── Read state ─────────────────────────────

/// In-memory [`ReadStateStore`].
#[derive(Default)]
pub struct MemoryReadState {
    devices: Sharded<UserId, Vec<DeviceId>>,
    conversations: Sharded<UserId, Vec<ConversationId>>,
    delivered: Sharded<(UserId, DeviceId, ConversationId), u64>,
    read: Sharded<(UserId, ConversationId), u64>,
}

fn advance<K: Hash + Eq>(map: &Sharded<K, u64>, key: K, seq: u64) -> u64 {
    let mut shard = map.shard(&key).lock();
    let cursor = shard.entry(key).or_insert(0);
    *cursor = (*cursor).max(seq);
    *cursor
}

fn cursor<K: Hash + Eq>(map: &Sharded<K, u64>, key: &K) -> u64 {
    map.shard(key).lock().get(key).copied().unwrap_or(0)
}

#[async_trait]
impl ReadStateStore for MemoryReadState {
    async fn register_device(&self, user: &UserId, device: &DeviceId) -> Result<()> {
        let mut shard = self.devices.shard(user).lock();
        let devices = shard.entry(user.clone()).or_default();
        if !devices.contains(device) {
            devices.push(device.clone());
        }
        Ok(())
    }

    async fn devices(&self, user: &UserId) -> Result<Vec<DeviceId>> {
        Ok(self
            .devices
            .shard(user)
            .lock()
            .get(user)
            .cloned()
            .unwrap_or_default())
    }

    async fn add_conversation(&self, user: &UserId, conversation: &ConversationId) -> Result<()> {
        let mut shard = self.conversations.shard(user).lock();
        let list = shard.entry(user.clone()).or_default();
        if !list.contains(conversation) {
            list.push(conversation.clone());
        }
        Ok(())
    }

    async fn conversations(&self, user: &UserId) -> Result<Vec<ConversationId>> {
        Ok(self
            .conversations
            .shard(user)
            .lock()
            .get(user)
            .cloned()
            .unwrap_or_default())
    }

    async fn advance_delivered(
        &self,
        user: &UserId,
        device: &DeviceId,
        conversation: &ConversationId,
        seq: u64,
    ) -> Result<u64> {
        let key = (user.clone(), device.clone(), conversation.clone());
        Ok(advance(&self.delivered, key, seq))
    }

    async fn delivered(
        &self,
        user: &UserId,
        device: &DeviceId,
        conversation: &ConversationId,
    ) -> Result<u64> {
        let key = (user.clone(), device.clone(), conversation.clone());
        Ok(cursor(&self.delivered, &key))
    }

    async fn advance_read(
        &self,
        user: &UserId,
        conversation: &ConversationId,
        seq: u64,
    ) -> Result<u64> {
        Ok(advance(
            &self.read,
            (user.clone(), conversation.clone()),
            seq,
        ))
    }

    async fn read(&self, user: &UserId, conversation: &ConversationId) -> Result<u64> {
        Ok(cursor(&self.read, &(user.clone(), conversation.clone())))
    }
}

// ───────────────────────────── Groups ─────────────────────────────

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

// ───────────────────────────── Contacts ─────────────────────────────

#[derive(Default)]
struct UserContacts {
    friends: BTreeSet<UserId>,
    incoming: BTreeSet<UserId>,
    outgoing: BTreeSet<UserId>,
    blocked: BTreeSet<UserId>,
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
}

/// Accounts and revoked tokens in memory.
#[derive(Default)]
pub struct MemoryAccounts {
    accounts: Mutex<HashMap<UserId, Account>>,
    revoked: Mutex<HashMap<String, u64>>,
}

#[async_trait]
impl AccountStore for MemoryAccounts {
    async fn create(&self, account: Account) -> Result<bool> {
        match self.accounts.lock().entry(account.user.clone()) {
            Entry::Occupied(_) => Ok(false),
            Entry::Vacant(v) => {
                v.insert(account);
                Ok(true)
            }
        }
    }

    async fn get(&self, user: &UserId) -> Result<Option<Account>> {
        Ok(self.accounts.lock().get(user).cloned())
    }

    async fn set_disabled(&self, user: &UserId, disabled: bool) -> Result<Option<Account>> {
        let mut accounts = self.accounts.lock();
        Ok(accounts.get_mut(user).map(|a| {
            a.disabled = disabled;
            a.clone()
        }))
    }

    async fn revoke_token(&self, token_id: &str, expires_at: u64) -> Result<()> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut revoked = self.revoked.lock();
        // Forget records of tokens that have expired on their own.
        revoked.retain(|_, exp| *exp >= now);
        revoked.insert(token_id.to_owned(), expires_at);
        Ok(())
    }

    async fn is_revoked(&self, token_id: &str) -> Result<bool> {
        Ok(self.revoked.lock().contains_key(token_id))
    }
}
