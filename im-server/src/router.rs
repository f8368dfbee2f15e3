//! The router: the one place where an engine operation runs and what it
//! produced is delivered ([`Router::exec`]). Sessions, the HTTP API and
//! server-side sends all go through it.
//!
//! A push is encoded once; every target's queue gets a clone of the same
//! bytes. Targets on this node are handed to their connections' queues
//! without waiting (a user's devices in one registry lookup), targets on
//! other nodes go to the cluster bus, one hand-off per node. A device that
//! cannot be reached loses nothing: the message is stored, and the device
//! catches up from its delivered cursor when it next syncs or logs in.
//!
//! Live message pushes are paced by the receiver: while more than
//! [`Limits::live_push_bytes`] wait in a connection's queue, message pushes
//! to it stop and it gets one `SyncNotice { BEHIND }`; it pulls what it
//! missed with `Sync`, which resumes them ([`ConnHandle::catch_up`]). So a
//! device that reads slowly is never kicked for it, and its queue never
//! holds more than the limit in pushes. Typing and application signals
//! are dropped meanwhile (they are live-only); other pushes (receipts, contact events, notifications) are
//! queued within the queue's whole bound, and a connection whose queue is
//! full even for those is kicked as a slow consumer.
//!
//! [`Limits::live_push_bytes`]: crate::Limits::live_push_bytes
//! [`ConnHandle::catch_up`]: crate::registry::ConnHandle

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use imkit_core::model::NodeId;
use imkit_core::{Engine, Outcome, Push, Target};
use imkit_proto::pb::{KickReason, SyncNotice, SyncReason};
use imkit_proto::{Packet, PacketId, PacketKind};

use crate::bus::ClusterBus;
use crate::config::Limits;
use crate::fanout::{self, FanoutMemo};
use crate::outbox::PushError;
use crate::registry::{ConnHandle, Registry};

/// Deliveries a task may queue for other connections before it yields to
/// let their writers run. Small enough that one message to a large group,
/// or a few hundred 1:1 messages, is a slice.
pub(crate) const FANOUT_SLICE: usize = 256;

tokio::task_local! {
    /// Deliveries queued by this task since it last yielded (see [`paced`]).
    static SINCE_YIELD: Cell<usize>;
}

/// Runs `f` (a session) with fan-out pacing: [`Router::exec`] yields once
/// the task has queued [`FANOUT_SLICE`] deliveries. A sender whose frames
/// are already buffered never waits on its socket, so without this one task
/// could fan out message after message to a large group while the writers
/// that empty those queues starve, and the queues would only grow. With it,
/// overload slows the sender (its socket backs up) instead, and each writer
/// finds several frames to write in one call. Outside a paced task (an HTTP
/// request), a single large fan-out yields.
pub(crate) fn paced<F: Future>(f: F) -> impl Future<Output = F::Output> {
    SINCE_YIELD.scope(Cell::new(0), f)
}

async fn pace(delivered: usize) {
    let due = SINCE_YIELD
        .try_with(|since| {
            let n = since.get() + delivered;
            since.set(if n >= FANOUT_SLICE { 0 } else { n });
            n >= FANOUT_SLICE
        })
        .unwrap_or(delivered >= FANOUT_SLICE);
    if due {
        tokio::task::yield_now().await;
    }
}

/// Runs engine operations and delivers their pushes. Cheap to clone.
#[derive(Clone)]
pub struct Router {
    engine: Engine,
    registry: Arc<Registry>,
    /// Where the devices of recent large pushes are connected.
    fanout: Arc<FanoutMemo>,
    bus: Option<Arc<dyn ClusterBus>>,
    max_outbound_frame: usize,
    live_push_bytes: usize,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl Router {
    /// A router for this node, pushing within `limits`.
    pub(crate) fn new(
        engine: Engine,
        registry: Arc<Registry>,
        bus: Option<Arc<dyn ClusterBus>>,
        limits: &Limits,
    ) -> Self {
        Router {
            engine,
            registry,
            fanout: Arc::default(),
            bus,
            max_outbound_frame: limits.max_outbound_frame,
            live_push_bytes: limits.live_push_bytes,
        }
    }

    /// This node's id.
    pub fn node(&self) -> &NodeId {
        &self.engine.config().node
    }

    /// The engine the operations run on.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// This node's connections.
    pub(crate) fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// How this node reaches the others, in cluster mode.
    pub(crate) fn bus(&self) -> Option<&Arc<dyn ClusterBus>> {
        self.bus.as_ref()
    }

    /// Runs an engine operation and delivers the pushes it produced, then
    /// returns its reply. Every front end calls this, so no caller can
    /// forget a delivery:
    ///
    /// ```ignore
    /// let sent = router.exec(router.engine().send(&caller, request)).await?;
    /// ```
    pub async fn exec<T>(
        &self,
        op: impl Future<Output = imkit_core::Result<Outcome<T>>>,
    ) -> imkit_core::Result<T> {
        let outcome = op.await?;
        let delivered = self.deliver_all(outcome.pushes).await;
        pace(delivered).await;
        Ok(outcome.reply)
    }

    /// [`Router::exec`] for many operations at once (a connection's
    /// pipelined requests, [`Engine::handle_many`]): every push of every
    /// operation is delivered, then each reply or error is returned in
    /// order.
    pub async fn exec_many<T>(
        &self,
        ops: impl Future<Output = Vec<imkit_core::Result<Outcome<T>>>>,
    ) -> Vec<imkit_core::Result<T>> {
        let outcomes = ops.await;
        let mut replies = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            replies.push(match outcome {
                Ok(o) => {
                    let delivered = self.deliver_all(o.pushes).await;
                    pace(delivered).await;
                    Ok(o.reply)
                }
                Err(e) => Err(e),
            });
        }
        replies
    }

    /// Delivers every push; returns how many targets they had.
    pub(crate) async fn deliver_all(&self, pushes: Vec<Push>) -> usize {
        let mut n = 0;
        for push in pushes {
            n += push.targets.len();
            self.deliver(push).await;
        }
        n
    }

    /// Delivers one push: encoded once, shared by every target.
    async fn deliver(&self, push: Push) {
        if push.targets.is_empty() {
            return;
        }
        let bytes = match push
            .packet
            .to_frame(push.packet_id)
            .to_bytes(self.max_outbound_frame)
        {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, kind = ?push.packet.kind(), "push too large to send; receivers will sync");
                return;
            }
        };
        let here = self.node();
        if push.targets.iter().all(|t| &t.node == here) {
            // One node, or every target here: no split, no copies.
            self.deliver_shared(&push.targets, &bytes);
            return;
        }
        let (local, remote): (Vec<Target>, Vec<Target>) =
            push.targets.iter().cloned().partition(|t| &t.node == here);
        self.deliver_local(&local, &bytes);
        if remote.is_empty() {
            return;
        }
        let Some(bus) = &self.bus else {
            // Presence names a node this one cannot reach: those devices
            // catch up from their cursors.
            return;
        };
        let mut by_node: Vec<(NodeId, Vec<Target>)> = Vec::new();
        for t in remote {
            match by_node.iter_mut().find(|(n, _)| *n == t.node) {
                Some((_, ts)) => ts.push(t),
                None => by_node.push((t.node.clone(), vec![t])),
            }
        }
        for (node, targets) in by_node {
            bus.forward(&node, bytes.clone(), targets).await;
        }
    }

    /// Asks every connection on this node to sync (`SyncNotice { CHECK }`);
    /// returns how many were asked.
    /// The user and device of every local connection.
    pub(crate) fn connected(
        &self,
    ) -> Vec<(imkit_core::model::UserId, imkit_core::model::DeviceId)> {
        self.registry.devices()
    }

    pub(crate) fn check_all(&self) -> usize {
        let Some(bytes) = bare_notice(SyncReason::Check) else {
            return 0;
        };
        let mut n = 0;
        for conn in self.registry.all() {
            if conn.outbox.push_control(bytes.clone()).is_ok() {
                n += 1;
            }
        }
        n
    }

    /// Queues encoded bytes for local connections, without waiting (see
    /// [`Router::deliver_shared`]). Returns how many connections took the
    /// frame.
    pub(crate) fn deliver_local(&self, targets: &[Target], bytes: &Bytes) -> usize {
        if targets.len() >= fanout::MIN_TARGETS {
            return self.deliver_shared(&targets.into(), bytes);
        }
        self.deliver_each(targets, PacketKind::of_frame(bytes), bytes)
    }

    /// Queues encoded bytes for local connections, without waiting: a large
    /// push's connections come from the [`FanoutMemo`] while the registry
    /// is unchanged; a small one's from the registry, a user's devices in
    /// one lookup. Message pushes are paced (see the module docs). Returns
    /// how many connections took the frame.
    fn deliver_shared(&self, targets: &Arc<[Target]>, bytes: &Bytes) -> usize {
        let kind = PacketKind::of_frame(bytes);
        if targets.len() < fanout::MIN_TARGETS {
            return self.deliver_each(targets, kind, bytes);
        }
        let generation = self.registry.generation();
        let resolved = self.fanout.connections(&self.registry, generation, targets);
        let mut queued = 0;
        for conn in resolved.conns().iter().flatten() {
            if self.push(conn, kind, bytes) {
                queued += 1;
            }
        }
        count_live(kind, queued);
        queued
    }

    /// [`Router::deliver_local`] through the registry, target by target.
    fn deliver_each(&self, targets: &[Target], kind: Option<PacketKind>, bytes: &Bytes) -> usize {
        let mut queued = 0;
        self.registry.each_connection(targets, |_, conn| {
            if self.push(conn, kind, bytes) {
                queued += 1;
            }
        });
        count_live(kind, queued);
        queued
    }

    /// Queues one push for one connection; returns whether it was queued.
    fn push(&self, conn: &ConnHandle, kind: Option<PacketKind>, bytes: &Bytes) -> bool {
        let outbox = &conn.outbox;
        let result = match kind {
            Some(PacketKind::MessagePush) => {
                if conn.is_behind() {
                    return false;
                }
                outbox.try_push_under(bytes.clone(), self.live_push_bytes)
            }
            Some(PacketKind::Typing | PacketKind::Signal) => {
                // Live-only: a device that is behind does not get it.
                return !conn.is_behind()
                    && outbox
                        .try_push_under(bytes.clone(), self.live_push_bytes)
                        .is_ok();
            }
            _ => outbox.try_push(bytes.clone()),
        };
        match result {
            Ok(()) => true,
            Err(PushError::Full(_)) if kind == Some(PacketKind::MessagePush) => {
                if conn.fall_behind() {
                    tell_behind(conn);
                }
                false
            }
            Err(PushError::Full(_)) => {
                tracing::warn!(conn = conn.id, ?kind, "slow consumer: queue full, kicking");
                conn.kick(KickReason::SlowConsumer, "outbound queue full");
                false
            }
            Err(PushError::Closed) => false,
        }
    }
}

/// Counts live message deliveries for the metrics.
fn count_live(kind: Option<PacketKind>, queued: usize) {
    if kind == Some(PacketKind::MessagePush) {
        crate::metrics::live_deliveries(queued);
    }
}

/// Tells a device its message pushes are paused until it syncs.
fn tell_behind(conn: &ConnHandle) {
    if let Some(bytes) = bare_notice(SyncReason::Behind) {
        // Past the bounds: the queue keeps room for control frames.
        let _ = conn.outbox.push_control(bytes);
    }
}

/// A [`SyncNotice`] that lists no conversations (finding them needs the
/// store, and the paths that send it never wait): the device's `Sync` finds
/// them.
fn bare_notice(reason: SyncReason) -> Option<Bytes> {
    let notice = Packet::SyncNotice(SyncNotice {
        reason: reason as i32,
        conversations: Vec::new(),
        more: true,
    });
    match notice.to_frame(PacketId::new()).to_bytes(usize::MAX) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a sync notice");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use imkit_core::model::{DeviceId, NodeId, UserId};
    use imkit_core::store::Stores;
    use imkit_core::{Engine, EngineConfig, Target};
    use imkit_proto::pb::{self, SyncReason};
    use imkit_proto::{Packet, PacketId, PacketKind};

    use super::Router;
    use crate::config::Limits;
    use crate::outbox::Outbox;
    use crate::registry::{ConnHandle, Registry};

    struct Setup {
        router: Router,
        conn: ConnHandle,
        target: Vec<Target>,
    }

    /// A router with one connection, live-push limit 1 KiB, queue 4 KiB.
    fn setup() -> Setup {
        let limits = Limits {
            live_push_bytes: 1024,
            queue_bytes: 4096,
            ..Limits::default()
        };
        let engine = Engine::new(Stores::memory(), EngineConfig::default());
        let registry = Arc::new(Registry::default());
        let conn = ConnHandle::new(Arc::new(Outbox::new(1_000, limits.queue_bytes)));
        let (user, device) = (UserId::from("u"), DeviceId::from("d"));
        registry.insert(&user, &device, conn.clone());
        let router = Router::new(engine, registry, None, &limits);
        let target = vec![Target {
            user,
            device,
            node: NodeId::from("node-1"),
        }];
        Setup {
            router,
            conn,
            target,
        }
    }

    fn frame(packet: Packet, padding: usize) -> Bytes {
        let packet = match packet {
            Packet::MessagePush(_) => Packet::MessagePush(pb::MessagePush {
                message: Some(pb::Message {
                    client_msg_id: "x".repeat(padding),
                    ..Default::default()
                }),
            }),
            other => other,
        };
        packet
            .to_frame(PacketId::new())
            .to_bytes(usize::MAX)
            .expect("encodes")
    }

    async fn drain_kinds(conn: &ConnHandle) -> Vec<PacketKind> {
        let mut batch = Vec::new();
        if conn.outbox.len() > 0 {
            conn.outbox.pop_batch(&mut batch, usize::MAX).await;
        }
        batch
            .iter()
            .filter_map(|f| PacketKind::of_frame(f))
            .collect()
    }

    #[tokio::test]
    async fn message_pushes_pause_past_the_live_limit_with_one_notice() {
        let s = setup();
        let push = frame(Packet::MessagePush(pb::MessagePush::default()), 400);
        let typing = frame(Packet::Typing(pb::Typing::default()), 0);
        for _ in 0..5 {
            s.router.deliver_local(&s.target, &push);
        }
        assert!(s.conn.is_behind());
        assert_eq!(
            s.router.deliver_local(&s.target, &typing),
            0,
            "typing dropped"
        );
        let kinds = drain_kinds(&s.conn).await;
        let notices = kinds
            .iter()
            .filter(|k| **k == PacketKind::SyncNotice)
            .count();
        let pushes = kinds
            .iter()
            .filter(|k| **k == PacketKind::MessagePush)
            .count();
        assert_eq!(
            (pushes, notices),
            (2, 1),
            "two fit under 1 KiB, then one notice: {kinds:?}"
        );
        // While behind, nothing more is pushed, however empty the queue.
        assert_eq!(s.router.deliver_local(&s.target, &push), 0);
        // The device syncs: pushes flow again.
        s.conn.catch_up();
        assert_eq!(s.router.deliver_local(&s.target, &push), 1);
        assert_eq!(s.router.deliver_local(&s.target, &typing), 1);
        assert!(!s.conn.is_kicked());
    }

    #[tokio::test]
    async fn other_pushes_fill_the_whole_queue_then_kick() {
        let s = setup();
        let receipt = frame(
            Packet::ReceiptPush(pb::ReceiptPush {
                conversation_id: "c".repeat(900),
                ..Default::default()
            }),
            0,
        );
        let mut queued = 0;
        while !s.conn.is_kicked() && queued < 100 {
            queued += s.router.deliver_local(&s.target, &receipt);
        }
        assert_eq!(
            queued, 4,
            "receipts use the whole 4 KiB, not the live limit"
        );
        assert!(s.conn.is_kicked(), "a full queue kicks");
        assert_eq!(
            s.conn.kick_reason().map(|(r, _)| r),
            Some(pb::KickReason::SlowConsumer)
        );
    }

    #[tokio::test]
    async fn a_node_back_on_its_bus_asks_every_connection_to_check() {
        let s = setup();
        assert_eq!(s.router.check_all(), 1);
        let mut batch = Vec::new();
        s.conn.outbox.pop_batch(&mut batch, usize::MAX).await;
        match Packet::from_frame(
            &imkit_proto::Frame::decode(&mut bytes::BytesMut::from(&batch[0][..]), usize::MAX)
                .expect("decodes")
                .expect("a frame"),
        ) {
            Ok(Packet::SyncNotice(n)) => assert_eq!(n.reason, SyncReason::Check as i32),
            other => panic!("{other:?}"),
        }
    }
}
