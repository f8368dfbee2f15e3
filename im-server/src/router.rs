//! The router: takes the engine's pushes and gets each one to its targets.
//! A push is encoded once; every target's queue gets a clone of the same
//! bytes. Targets on this node go to their connection's queue, targets on
//! other nodes go to the cluster bus, and targets that cannot be reached
//! get an offline inbox entry (for messages), so nothing is lost.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use imkit_core::model::{InboxEntry, NodeId, UserId};
use imkit_core::{Engine, Push, Target};
use imkit_proto::pb::KickReason;

use crate::outbox::PushError;
use crate::registry::Registry;

/// How a node reaches the others. [`crate::cluster::RedisCluster`] is the
/// Redis implementation (feature `redis`); a single node has none.
#[async_trait]
pub trait ClusterBus: Send + Sync + 'static {
    /// Hands an encoded frame to `node` for delivery to `targets`. A lost
    /// hand-off is recovered by the client's gap check and sync.
    async fn forward(
        &self,
        node: &NodeId,
        frame: Bytes,
        targets: Vec<Target>,
        entry: Option<InboxEntry>,
    );

    /// Asks `node` to kick a device's connection (a newer login elsewhere).
    async fn kick(&self, node: &NodeId, target: Target, reason: KickReason);

    /// Asks `node` to close `user`'s connections that logged in with the
    /// token of this id (it was revoked).
    async fn revoke(&self, node: &NodeId, user: &UserId, token_id: &str);

    /// Receives what other nodes send this one and hands it to `local`,
    /// until `shutdown`. The server runs this for as long as it serves.
    async fn serve(&self, local: LocalNode, shutdown: tokio_util::sync::CancellationToken);
}

/// What a bus needs to act on this node: local delivery and kicks.
#[derive(Clone, Debug)]
pub struct LocalNode {
    router: Router,
    registry: Arc<Registry>,
}

impl LocalNode {
    pub(crate) fn new(router: Router, registry: Arc<Registry>) -> Self {
        LocalNode { router, registry }
    }

    /// This node's id.
    pub fn node(&self) -> &NodeId {
        self.router.node()
    }

    /// Delivers an encoded frame to local connections (or their inboxes).
    pub async fn deliver(&self, targets: &[Target], frame: Bytes, entry: Option<&InboxEntry>) {
        for t in targets {
            self.router.deliver_local(t, frame.clone(), entry).await;
        }
    }

    /// Kicks a local device's connection; returns whether it was here.
    pub fn kick(
        &self,
        user: &imkit_core::model::UserId,
        device: &imkit_core::model::DeviceId,
        reason: KickReason,
    ) -> bool {
        crate::session::kick_local(&self.registry, user, device, reason)
    }

    /// Closes a user's local connections that logged in with the token of
    /// this id; returns how many.
    pub fn revoke(&self, user: &UserId, token_id: &str) -> usize {
        crate::session::kick_token_local(&self.registry, user, token_id)
    }
}

/// Delivers pushes. Cheap to clone.
#[derive(Clone)]
pub struct Router {
    engine: Engine,
    registry: Arc<Registry>,
    bus: Option<Arc<dyn ClusterBus>>,
    max_outbound_frame: usize,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl Router {
    /// A router for this node.
    pub fn new(
        engine: Engine,
        registry: Arc<Registry>,
        bus: Option<Arc<dyn ClusterBus>>,
        max_outbound_frame: usize,
    ) -> Self {
        Router {
            engine,
            registry,
            bus,
            max_outbound_frame,
        }
    }

    /// This node's id.
    pub fn node(&self) -> &NodeId {
        &self.engine.config().node
    }

    /// Delivers every push.
    pub async fn deliver_all(&self, pushes: Vec<Push>) -> usize {
        let mut n = 0;
        for push in pushes {
            n += push.targets.len();
            self.deliver(push).await;
        }
        n
    }

    /// Delivers one push: encoded once, shared by every target.
    pub async fn deliver(&self, push: Push) {
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
        let mut remote: Vec<(NodeId, Vec<Target>)> = Vec::new();
        for target in push.targets {
            if &target.node == self.node() {
                self.deliver_local(&target, bytes.clone(), push.inbox_entry.as_ref())
                    .await;
            } else {
                match remote.iter_mut().find(|(n, _)| *n == target.node) {
                    Some((_, ts)) => ts.push(target),
                    None => remote.push((target.node.clone(), vec![target])),
                }
            }
        }
        for (node, targets) in remote {
            match &self.bus {
                Some(bus) => {
                    bus.forward(&node, bytes.clone(), targets, push.inbox_entry.clone())
                        .await
                }
                None => {
                    for t in targets {
                        self.offline(&t, push.inbox_entry.as_ref()).await;
                    }
                }
            }
        }
    }

    /// Puts encoded bytes in a local connection's queue, or falls back to
    /// the offline inbox.
    pub async fn deliver_local(&self, target: &Target, bytes: Bytes, entry: Option<&InboxEntry>) {
        let Some(conn) = self.registry.get(&target.user, &target.device) else {
            self.offline(target, entry).await;
            return;
        };
        match conn.outbox.try_push(bytes) {
            Ok(()) => {}
            Err(PushError::Full(_)) => {
                tracing::warn!(user = %target.user, device = %target.device, "slow consumer: queue full, closing");
                conn.kick(KickReason::SlowConsumer, "outbound queue full");
                self.offline(target, entry).await;
            }
            Err(PushError::Closed) => self.offline(target, entry).await,
        }
    }

    async fn offline(&self, target: &Target, entry: Option<&InboxEntry>) {
        let Some(entry) = entry else { return };
        if let Err(e) = self.engine.deliver_offline(target, entry.clone()).await {
            // The delivery cursor still records what the device lacks; it
            // catches up through sync.
            tracing::warn!(error = %e, user = %target.user, "offline inbox write failed");
        }
    }
}
