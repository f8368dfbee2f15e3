//! The messaging engine: every rule of the delivery contract, with no
//! sockets. A transport (the server, or a test) calls [`Engine::handle`]
//! with a caller and a request packet and gets back an [`Outcome`]: the
//! reply, and the [`Push`]es that must reach other devices. Pushes name each
//! target device and the node it is connected to; the transport delivers
//! them (the server in one place, `Router::exec`).
//!
//! Each operation first reads what it must check (membership, blocks,
//! the recall target), then writes everything as one
//! [`UnitOfWork`](crate::store::UnitOfWork) and fans out only what that
//! commit stored. Devices that are not connected get nothing written for
//! them: what a device has not received is its delivered cursor against the
//! conversation's highest seq, and it catches up from there when it returns
//! (see [`Engine::login`] and [`Engine::sync`]). Users with no device online
//! are handed to the [`PushNotifier`].
//!
//! Files: `send.rs` (sending, recall), `signal.rs` (typing and application
//! signals, relayed live and never stored), `receipts.rs` (cursors and
//! read counts), `batch.rs` (a connection's pipelined requests committed
//! together), `sync.rs` (catch-up, history, the conversation list),
//! `groups.rs` and `contacts.rs`.

mod audience;
mod batch;
mod contacts;
mod groups;
pub use groups::EVENT_MAX_NAMED_USERS;
mod push;
mod receipts;
mod send;
mod signal;
mod sync;

use std::sync::Arc;

use imkit_proto::{Packet, PacketId, pb};

use crate::model::*;
use crate::push::{LogPushNotifier, PushNotifier};
use crate::store::{DeviceInfo, Registered, Stores};
use crate::{Clock, Error, Result};

/// Limits and settings of the engine. Every field has a documented default.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This node's id (default `"node-1"`).
    pub node: NodeId,
    /// How long a sender may recall their own message (default 120 s).
    pub recall_window_ms: u64,
    /// Longest text, in bytes (default 16,384).
    pub max_text_bytes: usize,
    /// Longest custom payload, in bytes (default 65,536).
    pub max_custom_bytes: usize,
    /// Longest file name, in bytes (default 255).
    pub max_file_name_bytes: usize,
    /// Most bytes of a [`pb::Signal`]'s kind and data together (default
    /// 4,096). Signals are relayed, never stored: they are for small, live
    /// data.
    pub max_signal_bytes: usize,
    /// Messages per conversation in a sync answer when the client names no
    /// limit (default 100).
    pub sync_default_limit: usize,
    /// Cap on a client's sync limit (default 500).
    pub sync_max_limit: usize,
    /// History page size when the client names none (default 50).
    pub history_default_limit: usize,
    /// Cap on a client's history page size (default 500).
    pub history_max_limit: usize,
    /// Most members a group may have (default 10,000).
    pub max_group_members: usize,
    /// Most devices a user may have (default 32). A login from one more
    /// fails with [`Error::TooManyDevices`] until the user or an admin
    /// removes one ([`Engine::remove_device`]).
    pub max_devices_per_user: usize,
    /// Most bytes of one reply that lists messages, conversations or
    /// members (Sync, History, the conversation list, group members, group
    /// list; default 256 KiB). What does not fit is paged with a
    /// continuation, never refused; a single message larger than this still
    /// goes out alone.
    pub max_reply_bytes: usize,
    /// Most messages pushed at login (default 100, in all conversations).
    /// A device owed more gets a [`pb::SyncNotice`] instead and pulls what
    /// waits with Sync, a page at a time.
    pub login_push_max: u64,
    /// Most conversations a [`pb::SyncNotice`] lists (default 100; fewer if
    /// they do not fit in 64 KiB).
    pub notice_max_conversations: usize,
    /// Bounds on offline push work ([`crate::push`]).
    pub push: crate::push::PushOptions,
    /// Source of time.
    pub clock: Clock,
}

impl EngineConfig {
    /// The default [`EngineConfig::max_reply_bytes`]: 256 KiB.
    pub const DEFAULT_MAX_REPLY_BYTES: usize = 256 * 1024;
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            node: NodeId::from("node-1"),
            recall_window_ms: 120_000,
            max_text_bytes: 16 * 1024,
            max_custom_bytes: 64 * 1024,
            max_file_name_bytes: 255,
            max_signal_bytes: 4096,
            sync_default_limit: 100,
            sync_max_limit: 500,
            history_default_limit: 50,
            history_max_limit: 500,
            max_group_members: 10_000,
            max_devices_per_user: 32,
            max_reply_bytes: Self::DEFAULT_MAX_REPLY_BYTES,
            login_push_max: 100,
            notice_max_conversations: 100,
            push: crate::push::PushOptions::default(),
            clock: Clock::system(),
        }
    }
}

/// Who is making a request: the logged-in user and their device.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Caller {
    /// The user.
    pub user: UserId,
    /// The device of this session.
    pub device: DeviceId,
}

impl Caller {
    /// A caller from ids.
    pub fn new(user: impl Into<UserId>, device: impl Into<DeviceId>) -> Self {
        Caller {
            user: user.into(),
            device: device.into(),
        }
    }
}

/// A connected device that must receive a push.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The user.
    pub user: UserId,
    /// The device.
    pub device: DeviceId,
    /// The node holding its connection.
    pub node: NodeId,
}

/// One packet for many devices. A transport encodes it once and shares the
/// bytes among every target's queue.
#[derive(Debug, Clone)]
pub struct Push {
    /// The packet id every copy carries (the message id for messages).
    pub packet_id: PacketId,
    /// The packet.
    pub packet: Packet,
    /// Where it goes. Shared: a large group's list is kept between its
    /// messages (see `Engine::fan_out`), and a transport may key what it
    /// keeps on it too.
    pub targets: Arc<[Target]>,
}

/// What a request produced: the reply for the caller and pushes for others.
/// A transport must deliver the pushes; the server does it in one place.
#[derive(Debug, Clone)]
#[must_use = "the pushes of an outcome must be delivered"]
pub struct Outcome<T> {
    /// The answer to the request.
    pub reply: T,
    /// Packets for other devices.
    pub pushes: Vec<Push>,
}

impl<T> Outcome<T> {
    /// An outcome with pushes.
    pub fn new(reply: T, pushes: Vec<Push>) -> Self {
        Outcome { reply, pushes }
    }

    /// An outcome with no pushes.
    pub fn reply(reply: T) -> Self {
        Outcome {
            reply,
            pushes: Vec::new(),
        }
    }

    /// Changes the reply, keeping the pushes.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        Outcome {
            reply: f(self.reply),
            pushes: self.pushes,
        }
    }
}

/// What a login produced.
#[derive(Debug, Clone)]
pub struct LoginOutcome {
    /// The node the same device was connected to before, if any: that
    /// connection must be kicked.
    pub replaced: Option<NodeId>,
    /// Whether this device logged in for the first time.
    pub new_device: bool,
    /// What the device missed while offline, when it is a few messages
    /// (at most [`EngineConfig::login_push_max`]): pushed after the login
    /// answer.
    pub pushes: Vec<Push>,
    /// When more waits: the notice to send after the login answer; the
    /// device pulls with Sync.
    pub notice: Option<pb::SyncNotice>,
}

/// The messaging engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    stores: Stores,
    notifier: Arc<dyn PushNotifier>,
    config: EngineConfig,
    hooks: std::sync::OnceLock<crate::hooks::HookRunner>,
    journal: std::sync::OnceLock<crate::journal::EventKinds>,
    push_queue: std::sync::OnceLock<push::PushQueue>,
    /// Large groups' located devices, kept while presence is unchanged.
    audiences: audience::Audiences,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine over the given stores, with the logging push notifier.
    pub fn new(stores: Stores, config: EngineConfig) -> Self {
        Self::with_notifier(stores, config, Arc::new(LogPushNotifier))
    }

    /// An engine with a custom push notifier.
    pub fn with_notifier(
        stores: Stores,
        config: EngineConfig,
        notifier: Arc<dyn PushNotifier>,
    ) -> Self {
        Engine {
            inner: Arc::new(Inner {
                stores,
                notifier,
                config,
                hooks: std::sync::OnceLock::new(),
                journal: std::sync::OnceLock::new(),
                push_queue: std::sync::OnceLock::new(),
                audiences: audience::Audiences::default(),
            }),
        }
    }

    /// Installs an embedder's hooks (see [`crate::hooks`]); once per engine,
    /// inside a tokio runtime (the event lanes are tasks).
    pub fn install_hooks(
        &self,
        hooks: Arc<dyn crate::hooks::Hooks>,
        options: crate::hooks::HookOptions,
    ) -> Result<()> {
        let runner = crate::hooks::HookRunner::start(hooks, options);
        self.inner
            .hooks
            .set(runner)
            .map_err(|_| Error::Conflict("hooks are already installed on this engine".into()))
    }

    /// Records events of `kinds` in the durable journal from now on (see
    /// [`crate::journal`]); once per engine.
    pub fn record_journal(&self, kinds: crate::journal::EventKinds) -> Result<()> {
        self.inner
            .journal
            .set(kinds)
            .map_err(|_| Error::Conflict("the journal is already being recorded".into()))
    }

    /// The payload a unit records for an event of `kind`, if recorded.
    pub(crate) fn journal_payload<'a>(
        &self,
        kind: crate::journal::EventKind,
        recorded: impl FnOnce() -> crate::journal::Recorded<'a>,
    ) -> Option<Vec<u8>> {
        let kinds = self.inner.journal.get()?;
        kinds.contains(kind).then(|| recorded().encode(self.now()))
    }

    /// Records an event that is not a unit of work, keyed by `key`. The
    /// operation already happened: a failure is logged, not returned.
    pub(crate) async fn journal_put<'a>(
        &self,
        kind: crate::journal::EventKind,
        key: &str,
        recorded: impl FnOnce() -> crate::journal::Recorded<'a>,
    ) {
        let Some(payload) = self.journal_payload(kind, recorded) else {
            return;
        };
        if let Err(e) = self.inner.stores.journal.put(key, payload).await {
            tracing::error!(error = %e, kind = kind.name(), "an event could not be journaled");
        }
    }

    /// Hands an event to the hooks, if any (never waits).
    pub(crate) fn emit(&self, event: impl FnOnce() -> crate::hooks::Event) {
        if let Some(h) = self.inner.hooks.get() {
            h.emit(event());
        }
    }

    /// The installed hooks, if any.
    pub(crate) fn hooks(&self) -> Option<&crate::hooks::HookRunner> {
        self.inner.hooks.get()
    }

    /// The stores the engine runs on.
    pub fn stores(&self) -> &Stores {
        &self.inner.stores
    }

    /// The engine's settings.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    fn now(&self) -> u64 {
        self.inner.config.clock.now_ms()
    }

    /// Handles one request packet from a logged-in caller. Session packets
    /// (login, logout, ping) belong to the transport and are refused here.
    pub async fn handle(&self, caller: &Caller, packet: Packet) -> Result<Outcome<Packet>> {
        use Packet as P;
        Ok(match packet {
            P::Send(r) => self.send(caller, r).await?.map(P::SendResponse),
            P::Receipt(r) => self.receipt(caller, r).await?.map(P::ReceiptResponse),
            P::Recall(r) => self.recall(caller, r).await?.map(P::RecallResponse),
            P::ReadCount(r) => {
                Outcome::reply(P::ReadCountResponse(self.read_counts(caller, r).await?))
            }
            P::Sync(r) => Outcome::reply(P::SyncResponse(self.sync(caller, r).await?)),
            P::History(r) => Outcome::reply(P::HistoryResponse(self.history(caller, r).await?)),
            P::ConversationList(r) => Outcome::reply(P::ConversationListResponse(
                self.conversations(caller, r).await?,
            )),
            P::GroupCreate(r) => self
                .group_create(caller, r)
                .await?
                .map(P::GroupCreateResponse),
            P::GroupDismiss(r) => self
                .group_dismiss(caller, r)
                .await?
                .map(P::GroupDismissResponse),
            P::GroupAddMembers(r) => self
                .group_add(caller, r)
                .await?
                .map(P::GroupAddMembersResponse),
            P::GroupRemoveMembers(r) => self
                .group_remove(caller, r)
                .await?
                .map(P::GroupRemoveMembersResponse),
            P::GroupUpdate(r) => self
                .group_update(caller, r)
                .await?
                .map(P::GroupUpdateResponse),
            P::GroupMembers(r) => Outcome::reply(P::GroupMembersResponse(
                self.group_members(caller, r).await?,
            )),
            P::GroupList(r) => {
                Outcome::reply(P::GroupListResponse(self.group_list(caller, r).await?))
            }
            P::GroupSetRole(r) => self
                .group_set_role(caller, r)
                .await?
                .map(P::GroupSetRoleResponse),
            P::FriendList(_) => {
                Outcome::reply(P::FriendListResponse(self.friend_list(caller).await?))
            }
            P::FriendAdd(r) => self.friend_add(caller, r).await?.map(P::FriendAddResponse),
            P::FriendAccept(r) => self
                .friend_accept(caller, r)
                .await?
                .map(P::FriendAcceptResponse),
            P::FriendRemove(r) => self
                .friend_remove(caller, r)
                .await?
                .map(P::FriendRemoveResponse),
            P::Block(r) => self.block(caller, r).await?.map(P::BlockResponse),
            P::Unblock(r) => self.unblock(caller, r).await?.map(P::UnblockResponse),
            P::PushTokenSet(r) => Outcome::reply(P::PushTokenSetResponse(
                self.push_token_set(caller, r).await?,
            )),
            P::PushSettings(r) => Outcome::reply(P::PushSettingsResponse(
                self.push_settings(caller, r).await?,
            )),
            P::PrivacySet(r) => {
                Outcome::reply(P::PrivacySetResponse(self.privacy_set(caller, r).await?))
            }
            P::Typing(r) => {
                let pushes = self.typing(caller, r).await?;
                // Typing has no response; the transport drops this reply.
                Outcome::new(P::Typing(pb::Typing::default()), pushes)
            }
            P::Signal(r) => {
                let pushes = self.signal(caller, r).await?;
                // Signals have no response either.
                Outcome::new(P::Signal(pb::Signal::default()), pushes)
            }
            other => {
                return Err(Error::InvalidArgument(format!(
                    "{:?} is not a request the engine handles",
                    other.kind()
                )));
            }
        })
    }

    /// Records a device's login on this node and works out how it catches
    /// up. In each of the user's conversations the device is owed what lies
    /// past its delivered cursor, or past the user's read cursor where it
    /// never acknowledged anything. If that is at most
    /// [`EngineConfig::login_push_max`] messages in all, they are pushed
    /// after the login answer; otherwise a [`pb::SyncNotice`] says what
    /// waits and the device pulls it with [`Engine::sync`], a
    /// byte-bounded page at a time.
    pub async fn login(&self, user: &UserId, device: &DeviceId) -> Result<LoginOutcome> {
        if user.is_system() {
            return Err(Error::Forbidden(format!("{user} cannot log in")));
        }
        let s = &self.inner.stores;
        let node = &self.inner.config.node;
        let now = self.inner.config.clock.now_ms();
        let max = self.inner.config.max_devices_per_user;
        let new_device = match s.devices.register(user, device, now, max).await? {
            Registered::Known => false,
            Registered::New => true,
            Registered::Full => {
                return Err(Error::TooManyDevices {
                    user: user.to_string(),
                    max,
                });
            }
        };
        let replaced = s.presence.online(user, device, node).await?;
        let target = Target {
            user: user.clone(),
            device: device.clone(),
            node: node.clone(),
        };
        let (pushes, notice) = self.catch_up(user, device, target).await?;
        self.journal_put(crate::journal::EventKind::Login, user.as_str(), || {
            crate::journal::Recorded::Login { user, device }
        })
        .await;
        self.emit(|| crate::hooks::Event::Login {
            user: user.clone(),
            device: device.clone(),
        });
        Ok(LoginOutcome {
            replaced,
            new_device,
            pushes,
            notice,
        })
    }

    /// A user's devices, oldest first.
    pub async fn devices(&self, user: &UserId) -> Result<Vec<DeviceInfo>> {
        self.inner.stores.devices.devices(user).await
    }

    /// Forgets a user's device, making room under the device cap; returns
    /// whether the user had it. A connection of that device is not closed
    /// here: the server kicks it (`KickReason::DEVICE_REMOVED`). Should the
    /// device log in again it counts as new (it is owed what is unread).
    pub async fn remove_device(&self, user: &UserId, device: &DeviceId) -> Result<bool> {
        // Its push token goes with it.
        self.inner
            .stores
            .push
            .remove_token(user, device, None)
            .await?;
        self.inner.stores.devices.remove(user, device).await
    }

    /// Records that a device's connection on this node ended. Does nothing
    /// if the device has since logged in elsewhere.
    pub async fn logout(&self, user: &UserId, device: &DeviceId) -> Result<bool> {
        let was = self
            .inner
            .stores
            .presence
            .offline(user, device, &self.inner.config.node)
            .await?;
        if was {
            self.journal_put(crate::journal::EventKind::Logout, user.as_str(), || {
                crate::journal::Recorded::Logout { user, device }
            })
            .await;
            self.emit(|| crate::hooks::Event::Logout {
                user: user.clone(),
                device: device.clone(),
            });
        }
        Ok(was)
    }

    /// A business notification for users, pushed to their connected
    /// devices. Not stored. The reply is how many devices it is for.
    pub async fn notify(
        &self,
        users: &[UserId],
        notification: pb::Notification,
    ) -> Result<Outcome<usize>> {
        let targets = self.online_targets(users, None).await?;
        Ok(Outcome::new(
            targets.len(),
            vec![Push {
                packet_id: PacketId::new(),
                packet: Packet::Notification(notification),
                targets: targets.into(),
            }],
        ))
    }

    /// The connected devices of `users`, except the caller's own device.
    /// What these reach is live-only or already stored (receipts, typing,
    /// events), so a failing presence store means no live push, not a
    /// failed operation.
    async fn online_targets(&self, users: &[UserId], skip: Option<&Caller>) -> Result<Vec<Target>> {
        let located = match self.inner.stores.presence.locate_many(users).await {
            Ok(located) => located,
            Err(e) => {
                tracing::warn!(error = %e, "presence lookup failed; no live push");
                return Ok(Vec::new());
            }
        };
        let mut targets = Vec::with_capacity(located.len());
        for loc in located {
            let Some(user) = users.get(loc.user) else {
                continue;
            };
            if skip.is_some_and(|c| &c.user == user && c.device == loc.device) {
                continue;
            }
            targets.push(Target {
                user: user.clone(),
                device: loc.device,
                node: loc.node,
            });
        }
        Ok(targets)
    }

    /// Fans a stored message out to `users`: a push for their connected
    /// devices except the sender's own, and the push notifier for users
    /// (other than the sender) with no device online. Nothing is written
    /// for devices that are not connected: their delivered cursors already
    /// say what they lack.
    ///
    /// The message is stored by now, so a presence store that fails (Redis
    /// restarting under a cluster) does not fail the send: nobody is pushed
    /// to live, and receivers catch up from their cursors (the cluster asks
    /// every connection to sync once its bus is back).
    async fn fan_out(&self, message: &Message, users: &[UserId], sender: &Caller) -> Result<Push> {
        let reach = match self.reach(&message.conversation, users, sender).await {
            Ok(reach) => reach,
            Err(e) => {
                tracing::warn!(error = %e, conversation = %message.conversation, seq = message.seq,
                    "presence lookup failed after the commit; receivers will catch up");
                return Ok(message_push(message, Vec::new()));
            }
        };
        let targets = reach.targets().clone();
        self.notify_offline(message, reach.into_offline());
        Ok(message_push(message, targets))
    }

    /// Hands a stored message to the push notifier for members with no
    /// device connected.
    fn notify_offline(&self, message: &Message, offline: Vec<UserId>) {
        if !offline.is_empty() {
            crate::telemetry::delivered("offline", offline.len());
            self.queue_pushes(message, offline);
        }
    }
}

/// A `MessagePush` whose packet id is the message id, so every copy of one
/// message is byte-identical.
fn message_push(m: &Message, targets: impl Into<Arc<[Target]>>) -> Push {
    Push {
        packet_id: PacketId::from(m.id.0),
        packet: Packet::MessagePush(pb::MessagePush {
            message: Some(m.to_pb()),
        }),
        targets: targets.into(),
    }
}

/// A push with a fresh packet id.
pub(crate) fn push_of(packet: Packet, targets: impl Into<Arc<[Target]>>) -> Push {
    Push {
        packet_id: PacketId::new(),
        packet,
        targets: targets.into(),
    }
}
