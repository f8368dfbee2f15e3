//! How nodes of a cluster reach each other. A [`ClusterBus`] carries
//! pushes, kicks and revocations to other nodes and hands what arrives for
//! this node to a [`LocalNode`]. [`crate::cluster::RedisCluster`] is the
//! Redis implementation (feature `redis`); a single node has none.
//!
//! This module depends on nothing else in the server: the router holds a
//! bus to forward pushes, and [`LocalNode`] reaches back into the node
//! through [`NodeOps`], which [`crate::lifecycle`] implements.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use imkit_core::Target;
use imkit_core::model::{DeviceId, NodeId, UserId};
use imkit_proto::pb::KickReason;

/// How a node reaches the others.
#[async_trait]
pub trait ClusterBus: Send + Sync + 'static {
    /// Hands an encoded frame to `node` for delivery to `targets`. A lost
    /// hand-off is recovered by the client's gap check and sync.
    async fn forward(&self, node: &NodeId, frame: Bytes, targets: Vec<Target>);

    /// Asks `node` to kick a device's connection (a newer login elsewhere).
    async fn kick(&self, node: &NodeId, target: Target, reason: KickReason);

    /// Asks `node` to close `user`'s connections that logged in with the
    /// token of this id (it was revoked).
    async fn revoke(&self, node: &NodeId, user: &UserId, token_id: &str);

    /// Receives what other nodes send this one and hands it to `local`,
    /// until `shutdown`. The server runs this for as long as it serves.
    async fn serve(&self, local: LocalNode, shutdown: tokio_util::sync::CancellationToken);

    /// The node this bus speaks for, when it knows: the server refuses to
    /// start if it is not the engine's node.
    fn node(&self) -> Option<&NodeId> {
        None
    }
}

/// What this node does for a bus: implemented by the connection lifecycle.
pub(crate) trait NodeOps: Send + Sync + 'static {
    fn node(&self) -> &NodeId;
    fn deliver(&self, targets: &[Target], frame: &Bytes) -> usize;
    fn check_all(&self) -> usize;
    fn connected(&self) -> Vec<(UserId, DeviceId)>;
    fn kick(&self, user: &UserId, device: &DeviceId, reason: KickReason) -> bool;
    fn revoke(&self, user: &UserId, token_id: &str) -> usize;
}

/// What a bus needs to act on this node: local delivery and kicks.
#[derive(Clone)]
pub struct LocalNode {
    ops: Arc<dyn NodeOps>,
}

impl std::fmt::Debug for LocalNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalNode")
            .field("node", self.ops.node())
            .finish()
    }
}

impl LocalNode {
    pub(crate) fn new(ops: Arc<dyn NodeOps>) -> Self {
        LocalNode { ops }
    }

    /// This node's id.
    pub fn node(&self) -> &NodeId {
        self.ops.node()
    }

    /// Delivers an encoded frame to local connections; returns how many
    /// took it.
    pub fn deliver(&self, targets: &[Target], frame: Bytes) -> usize {
        self.ops.deliver(targets, &frame)
    }

    /// Asks every local connection to sync (`SyncNotice { CHECK }`): the
    /// bus may have lost wake-ups for them while it was disconnected.
    /// Returns how many were asked.
    pub fn check_all(&self) -> usize {
        self.ops.check_all()
    }

    /// The user and device of every local connection (to record their
    /// presence again after the presence store lost it).
    pub fn connected(&self) -> Vec<(UserId, DeviceId)> {
        self.ops.connected()
    }

    /// Kicks a local device's connection; returns whether it was here.
    pub fn kick(&self, user: &UserId, device: &DeviceId, reason: KickReason) -> bool {
        self.ops.kick(user, device, reason)
    }

    /// Closes a user's local connections that logged in with the token of
    /// this id; returns how many.
    pub fn revoke(&self, user: &UserId, token_id: &str) -> usize {
        self.ops.revoke(user, token_id)
    }
}
