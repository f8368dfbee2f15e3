//! The connection lifecycle, in one place: a logged-in connection is
//! registered here ([`Lifecycle::login`]), leaves here
//! ([`Lifecycle::logout`]), and is kicked or revoked here, on this node or,
//! through the cluster bus, on whichever node holds it. Sessions, the HTTP
//! API ([`crate::ServerHandle`]) and the bus ([`crate::LocalNode`]) all
//! call this module; nothing else kicks a connection except the router's
//! slow-consumer rule and a session's own token expiry.

use std::sync::Arc;

use bytes::Bytes;
use imkit_core::model::{DeviceId, NodeId, UserId};
use imkit_core::{LoginOutcome, Target};
use imkit_proto::pb::KickReason;

use crate::ServerError;
use crate::bus::NodeOps;
use crate::registry::ConnHandle;
use crate::router::Router;

/// Registers, kicks and revokes connections (see the module docs).
#[derive(Clone, Debug)]
pub(crate) struct Lifecycle {
    router: Router,
}

impl Lifecycle {
    pub(crate) fn new(router: Router) -> Self {
        Lifecycle { router }
    }

    fn node(&self) -> &NodeId {
        self.router.node()
    }

    /// Registers a connection that logged in as `user` on `device` and
    /// records its presence. The device's older connection is kicked
    /// (`DUPLICATE_LOGIN`), here or on its node. Registered before the
    /// engine's login, so pushes routed meanwhile reach it; on an error it
    /// is unregistered again.
    pub(crate) async fn login(
        &self,
        user: &UserId,
        device: &DeviceId,
        conn: &ConnHandle,
    ) -> imkit_core::Result<LoginOutcome> {
        let registry = self.router.registry();
        if let Some(old) = registry.insert(user, device, conn.clone()) {
            old.kick(
                KickReason::DuplicateLogin,
                kick_message(KickReason::DuplicateLogin),
            );
        }
        let outcome = match self.router.engine().login(user, device).await {
            Ok(o) => o,
            Err(e) => {
                registry.remove(user, device, conn.id);
                return Err(e);
            }
        };
        if let (Some(prev), Some(bus)) = (&outcome.replaced, self.router.bus())
            && prev != self.node()
        {
            let target = Target {
                user: user.clone(),
                device: device.clone(),
                node: prev.clone(),
            };
            bus.kick(prev, target, KickReason::DuplicateLogin).await;
        }
        Ok(outcome)
    }

    /// Unregisters a connection and, if it was still the device's current
    /// one, marks the device offline.
    pub(crate) async fn logout(&self, user: &UserId, device: &DeviceId, conn: &ConnHandle) {
        if self.router.registry().remove(user, device, conn.id)
            && let Err(e) = self.router.engine().logout(user, device).await
        {
            tracing::warn!(error = %e, %user, "presence removal failed");
        }
    }

    /// Kicks a device's connection on this node; returns whether it was here.
    pub(crate) fn kick_here(&self, user: &UserId, device: &DeviceId, reason: KickReason) -> bool {
        match self.router.registry().get(user, device) {
            Some(h) => {
                h.kick(reason, kick_message(reason));
                true
            }
            None => false,
        }
    }

    /// Closes `user`'s connections on this node that logged in with the
    /// token of this id; returns how many.
    pub(crate) fn revoke_here(&self, user: &UserId, token_id: &str) -> usize {
        let mut n = 0;
        for (_, h) in self.router.registry().user(user) {
            if h.logged_in_with(token_id) {
                h.kick(
                    KickReason::TokenRevoked,
                    kick_message(KickReason::TokenRevoked),
                );
                n += 1;
            }
        }
        n
    }

    /// Closes a user's connections on every node (or only `device`'s) with
    /// `reason`; returns how many were asked to close.
    pub(crate) async fn kick(
        &self,
        user: &UserId,
        device: Option<&DeviceId>,
        reason: KickReason,
    ) -> Result<usize, ServerError> {
        let mut n = 0;
        for (d, h) in self.router.registry().user(user) {
            if device.is_none_or(|want| *want == d) {
                h.kick(reason, kick_message(reason));
                n += 1;
            }
        }
        if let Some(bus) = self.router.bus() {
            let presence = &self.router.engine().stores().presence;
            for loc in presence.locate(user).await? {
                if &loc.node != self.node() && device.is_none_or(|want| *want == loc.device) {
                    let target = Target {
                        user: user.clone(),
                        device: loc.device,
                        node: loc.node.clone(),
                    };
                    bus.kick(&loc.node, target, reason).await;
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// Closes the connections that logged in with the token of this id, on
    /// every node; returns how many closed here plus how many other nodes
    /// were asked.
    pub(crate) async fn revoke(&self, user: &UserId, token_id: &str) -> Result<usize, ServerError> {
        let mut n = self.revoke_here(user, token_id);
        if let Some(bus) = self.router.bus() {
            let presence = &self.router.engine().stores().presence;
            let mut nodes: Vec<_> = presence
                .locate(user)
                .await?
                .into_iter()
                .map(|l| l.node)
                .filter(|node| node != self.node())
                .collect();
            nodes.sort();
            nodes.dedup();
            for node in nodes {
                bus.revoke(&node, user, token_id).await;
                n += 1;
            }
        }
        Ok(n)
    }

    /// What a cluster bus needs of this node.
    pub(crate) fn node_ops(&self) -> Arc<dyn NodeOps> {
        Arc::new(self.clone())
    }
}

impl NodeOps for Lifecycle {
    fn node(&self) -> &NodeId {
        self.router.node()
    }

    fn deliver(&self, targets: &[Target], frame: &Bytes) -> usize {
        self.router.deliver_local(targets, frame)
    }

    fn check_all(&self) -> usize {
        self.router.check_all()
    }

    fn connected(&self) -> Vec<(UserId, DeviceId)> {
        self.router.connected()
    }

    fn kick(&self, user: &UserId, device: &DeviceId, reason: KickReason) -> bool {
        self.kick_here(user, device, reason)
    }

    fn revoke(&self, user: &UserId, token_id: &str) -> usize {
        self.revoke_here(user, token_id)
    }
}

/// The text a `Kicked` packet carries for a reason.
pub(crate) fn kick_message(reason: KickReason) -> &'static str {
    match reason {
        KickReason::DuplicateLogin => "logged in again on another connection",
        KickReason::Admin => "logged out by an administrator",
        KickReason::TokenRevoked => "the login token was revoked",
        KickReason::SlowConsumer => "the connection could not keep up",
        KickReason::ServerShutdown => "the server is shutting down",
        KickReason::DeviceRemoved => "this device was removed from the account",
        KickReason::TokenExpired => "the login token expired; log in with a fresh one",
        KickReason::Unspecified => "closed by the server",
    }
}
