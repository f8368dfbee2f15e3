//! The connection registry: user → device → connection handle, sharded by
//! user. Map guards are plain mutexes held for a lookup or an insert, never
//! across an `.await`.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use imkit_core::model::{DeviceId, UserId};
use imkit_proto::pb::KickReason;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::outbox::Outbox;

const SHARDS: usize = 64;

/// A way to reach one connection: its outbound queue, its kick switch and
/// whether its live message pushes are paused.
#[derive(Clone, Debug)]
pub(crate) struct ConnHandle {
    /// Unique per server process.
    pub(crate) id: u64,
    /// The writer's queue of encoded frames.
    pub(crate) outbox: Arc<Outbox>,
    state: Arc<ConnState>,
}

#[derive(Debug, Default)]
struct ConnState {
    /// Live message pushes are paused until the device syncs: its queue
    /// passed the live-push limit (see [`crate::router`]).
    behind: AtomicBool,
    /// Set once; a flag and a `Notify` rather than a cancellation token,
    /// which allocates a tree node per connection.
    kicked: AtomicBool,
    wake: Notify,
    reason: Mutex<Option<(KickReason, String)>>,
    /// The id of the login token the session used ([`imkit_core::auth::token_id`]),
    /// so revoking a token can close exactly its sessions.
    login_token: Mutex<Option<u128>>,
}

fn parse_token_id(token_id: &str) -> Option<u128> {
    u128::from_str_radix(token_id, 16).ok()
}

impl ConnHandle {
    /// A handle for a new connection.
    pub(crate) fn new(outbox: Arc<Outbox>) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        ConnHandle {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            outbox,
            state: Arc::default(),
        }
    }

    /// Asks the connection to close with a reason. The first reason wins.
    pub(crate) fn kick(&self, reason: KickReason, message: impl Into<String>) {
        let mut r = self.state.reason.lock();
        if r.is_none() {
            crate::metrics::kick(reason);
            *r = Some((reason, message.into()));
        }
        drop(r);
        self.state.kicked.store(true, Ordering::Release);
        self.state.wake.notify_waiters();
    }

    /// Resolves when the connection has been kicked.
    pub(crate) async fn kicked(&self) {
        loop {
            // Created before the check: `notify_waiters` reaches a
            // `Notified` from the moment it exists, so no kick is missed.
            let woken = self.state.wake.notified();
            if self.state.kicked.load(Ordering::Acquire) {
                return;
            }
            woken.await;
        }
    }

    /// Records the id of the token this connection logged in with.
    pub(crate) fn set_token_id(&self, token_id: &str) {
        *self.state.login_token.lock() = parse_token_id(token_id);
    }

    /// Whether this connection logged in with the token of this id.
    pub(crate) fn logged_in_with(&self, token_id: &str) -> bool {
        let mine = *self.state.login_token.lock();
        mine.is_some() && mine == parse_token_id(token_id)
    }

    /// Pauses live message pushes; returns `true` if they were flowing (the
    /// caller then tells the device, once).
    pub(crate) fn fall_behind(&self) -> bool {
        !self.state.behind.swap(true, Ordering::AcqRel)
    }

    /// Whether live message pushes are paused.
    pub(crate) fn is_behind(&self) -> bool {
        self.state.behind.load(Ordering::Acquire)
    }

    /// Resumes live message pushes: the device is syncing, and the sync
    /// reads everything stored before this point.
    pub(crate) fn catch_up(&self) {
        self.state.behind.store(false, Ordering::Release);
    }

    /// Whether the connection has been kicked.
    pub(crate) fn is_kicked(&self) -> bool {
        self.state.kicked.load(Ordering::Acquire)
    }

    /// Why the connection was kicked, if it was.
    pub(crate) fn kick_reason(&self) -> Option<(KickReason, String)> {
        self.state.reason.lock().clone()
    }
}

type Devices = Vec<(DeviceId, ConnHandle)>;
/// foldhash, randomly seeded: the registry is hit once per delivery.
type UserMap = HashMap<UserId, Devices, foldhash::fast::RandomState>;

/// Every logged-in connection on this node.
pub(crate) struct Registry {
    shards: Box<[Mutex<UserMap>]>,
    hasher: foldhash::fast::RandomState,
    count: AtomicU64,
    /// Bumped by every registration and removal: what was resolved at one
    /// generation is still right while it holds (see [`crate::fanout`]).
    generation: AtomicU64,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(UserMap::default()))
                .collect(),
            hasher: foldhash::fast::RandomState::default(),
            count: AtomicU64::new(0),
            generation: AtomicU64::new(0),
        }
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Registry({} connections)", self.len())
    }
}

impl Registry {
    fn shard(&self, user: &UserId) -> &Mutex<UserMap> {
        // High bits pick the shard; the map inside uses the low ones.
        let h = self.hasher.hash_one(user);
        &self.shards[((h >> 32) as usize) % SHARDS]
    }

    /// Registers a connection; returns the handle it replaced, if the same
    /// device was already connected here.
    pub(crate) fn insert(
        &self,
        user: &UserId,
        device: &DeviceId,
        handle: ConnHandle,
    ) -> Option<ConnHandle> {
        let mut shard = self.shard(user).lock();
        self.bump();
        let devices = shard.entry(user.clone()).or_default();
        if let Some(slot) = devices.iter_mut().find(|(d, _)| d == device) {
            return Some(std::mem::replace(&mut slot.1, handle));
        }
        devices.push((device.clone(), handle));
        self.count.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Removes the entry if it is still connection `conn_id` (a newer login
    /// of the same device must stay). Returns whether it removed it.
    pub(crate) fn remove(&self, user: &UserId, device: &DeviceId, conn_id: u64) -> bool {
        let mut shard = self.shard(user).lock();
        let Some(devices) = shard.get_mut(user) else {
            return false;
        };
        let before = devices.len();
        devices.retain(|(d, h)| !(d == device && h.id == conn_id));
        let removed = devices.len() < before;
        if devices.is_empty() {
            shard.remove(user);
        }
        if removed {
            self.bump();
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
        removed
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The registry's generation, read as a read-modify-write so it is
    /// ordered with the registrations that bump it: whatever this caller
    /// stored before asking is visible to a session that registers after
    /// the generation it got. Once per large push, not per delivery.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.fetch_add(0, Ordering::AcqRel)
    }

    /// The connection of one device.
    pub(crate) fn get(&self, user: &UserId, device: &DeviceId) -> Option<ConnHandle> {
        let shard = self.shard(user).lock();
        shard
            .get(user)?
            .iter()
            .find(|(d, _)| d == device)
            .map(|(_, h)| h.clone())
    }

    /// Calls `f` with each of a user's connections, under the lookup's
    /// lock (`f` must not block or wait).
    pub(crate) fn with_devices(&self, user: &UserId, mut f: impl FnMut(&DeviceId, &ConnHandle)) {
        if let Some(devices) = self.shard(user).lock().get(user) {
            for (d, h) in devices {
                f(d, h);
            }
        }
    }

    /// Calls `f` with the index and connection of each of `targets`
    /// connected here. Consecutive targets of one user share one lookup.
    pub(crate) fn each_connection(
        &self,
        targets: &[imkit_core::Target],
        mut f: impl FnMut(usize, &ConnHandle),
    ) {
        let mut start = 0;
        while let Some(first) = targets.get(start) {
            let run = targets[start..]
                .iter()
                .take_while(|t| t.user == first.user)
                .count();
            let mine = &targets[start..start + run];
            self.with_devices(&first.user, |device, conn| {
                if let Some(i) = mine.iter().position(|t| &t.device == device) {
                    f(start + i, conn);
                }
            });
            start += run;
        }
    }

    /// The connections of a user.
    pub(crate) fn user(&self, user: &UserId) -> Vec<(DeviceId, ConnHandle)> {
        self.shard(user)
            .lock()
            .get(user)
            .cloned()
            .unwrap_or_default()
    }

    /// Every connection (for shutdown).
    pub(crate) fn all(&self) -> Vec<ConnHandle> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            out.extend(shard.lock().values().flatten().map(|(_, h)| h.clone()));
        }
        out
    }

    /// The user and device of every connection.
    pub(crate) fn devices(&self) -> Vec<(UserId, DeviceId)> {
        let mut out = Vec::with_capacity(self.len());
        for shard in self.shards.iter() {
            for (user, devices) in shard.lock().iter() {
                out.extend(devices.iter().map(|(d, _)| (user.clone(), d.clone())));
            }
        }
        out
    }

    /// How many connections are registered.
    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed) as usize
    }
}
