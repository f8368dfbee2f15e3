//! [`ServerHandle`]: what an embedder, the HTTP API and tests use to act
//! on a running server (server-side sends, kicks, revocations, sync
//! requests), and [`Shared`], what every task of one server shares.

use std::sync::Arc;

use imkit_core::Engine;
use imkit_core::auth::{Authenticator, JwtAuthenticator};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::ServerError;
use crate::config::Limits;
use crate::lifecycle::Lifecycle;
use crate::router::Router;

/// What every task of one server shares.
pub(crate) struct Shared {
    pub(crate) engine: Engine,
    pub(crate) router: Router,
    pub(crate) lifecycle: Lifecycle,
    pub(crate) auth: Arc<dyn Authenticator>,
    /// Mints and checks the built-in JWTs, when the server has them.
    pub(crate) minter: Option<JwtAuthenticator>,
    pub(crate) limits: Limits,
    /// Turns for queries, server-wide ([`Limits::max_concurrent_queries`]).
    pub(crate) queries: Arc<Semaphore>,
    pub(crate) shutdown: CancellationToken,
    /// Where the listeners are bound.
    pub(crate) addrs: Addrs,
    /// The certificate every listener presents, when TLS is on.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::Tls>,
}

impl Shared {
    /// Whether the listeners speak TLS.
    pub(crate) fn tls_on(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }
}

/// The bound addresses, first of each kind.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Addrs {
    pub(crate) tcp: Option<std::net::SocketAddr>,
    pub(crate) ws: Option<std::net::SocketAddr>,
    pub(crate) http: Option<std::net::SocketAddr>,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Option<std::net::SocketAddr>,
}

/// Controls a running server from elsewhere. Cheap to clone.
#[derive(Clone)]
pub struct ServerHandle {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("connections", &self.connections())
            .finish()
    }
}

impl ServerHandle {
    /// A login token for `user`, valid for `ttl`, when the server holds
    /// the signing secret ([`crate::ServerBuilder::token_secret`]):
    ///
    /// ```ignore
    /// let token = handle.mint_token("alice", Duration::from_secs(3600))?;
    /// ```
    pub fn mint_token(
        &self,
        user: impl AsRef<str>,
        ttl: std::time::Duration,
    ) -> Result<String, ServerError> {
        let minter = self
            .shared
            .minter
            .as_ref()
            .filter(|m| m.can_mint())
            .ok_or_else(|| {
                ServerError::Config(
                    "this server does not hold a token secret (a custom authenticator or a \
                 public key); tokens are minted where the key is"
                        .into(),
                )
            })?;
        Ok(minter.mint(user, ttl.as_secs().max(1))?)
    }

    /// The first TCP listener's address.
    pub fn tcp_addr(&self) -> Option<std::net::SocketAddr> {
        self.shared.addrs.tcp
    }

    /// The first WebSocket listener's address.
    pub fn ws_addr(&self) -> Option<std::net::SocketAddr> {
        self.shared.addrs.ws
    }

    /// The HTTP API's address (feature `http`).
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        self.shared.addrs.http
    }

    /// Reads the TLS certificate and key files again (the binary does this
    /// on SIGHUP). New handshakes present the new certificate; open
    /// connections keep theirs. Returns `Ok(false)` when TLS is off; on
    /// an error the old certificate stays.
    #[cfg(feature = "tls")]
    pub fn reload_tls(&self) -> Result<bool, ServerError> {
        match &self.shared.tls {
            Some(tls) => tls.reload().map(|()| true),
            None => Ok(false),
        }
    }

    /// The Prometheus endpoint's address (feature `metrics`).
    #[cfg(feature = "metrics")]
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.shared.addrs.metrics
    }

    /// Whether a graceful shutdown has started.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutdown.is_cancelled()
    }

    /// Starts a graceful shutdown.
    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
    }

    /// Logged-in connections on this node.
    pub fn connections(&self) -> usize {
        self.shared.router.registry().len()
    }

    /// The engine, for server-side sends and notifications.
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// The router, to deliver pushes the engine returns.
    pub fn router(&self) -> &Router {
        &self.shared.router
    }

    /// Runs an engine operation and delivers what it produced (see
    /// [`Router::exec`]):
    ///
    /// ```ignore
    /// let sent = handle.exec(handle.engine().send_as_system(request)).await?;
    /// ```
    pub async fn exec<T>(
        &self,
        op: impl std::future::Future<Output = imkit_core::Result<imkit_core::Outcome<T>>>,
    ) -> imkit_core::Result<T> {
        self.shared.router.exec(op).await
    }

    /// Closes a user's connections on every node (or only `device`'s) with
    /// `reason`; returns how many were asked to close.
    pub async fn kick_user(
        &self,
        user: &imkit_core::model::UserId,
        device: Option<&imkit_core::model::DeviceId>,
        reason: imkit_proto::pb::KickReason,
    ) -> Result<usize, ServerError> {
        self.shared.lifecycle.kick(user, device, reason).await
    }

    /// Closes the connections that logged in with the token of this id, on
    /// every node; returns how many closed on this node plus how many other
    /// nodes were asked.
    pub async fn revoke_sessions(
        &self,
        user: &imkit_core::model::UserId,
        token_id: &str,
    ) -> Result<usize, ServerError> {
        self.shared.lifecycle.revoke(user, token_id).await
    }

    /// Asks a user's connected devices (or only `device`), on every node,
    /// to sync now: each gets a `SyncNotice { CHECK }` naming the
    /// conversations where it is behind. For a back end that changed what
    /// a device is owed, or suspects a lost wake-up. Returns how many
    /// devices were asked.
    pub async fn request_sync(
        &self,
        user: &imkit_core::model::UserId,
        device: Option<&imkit_core::model::DeviceId>,
    ) -> Result<usize, ServerError> {
        let engine = &self.shared.engine;
        let mut pushes = Vec::new();
        for loc in engine.stores().presence.locate(user).await? {
            if device.is_some_and(|want| *want != loc.device) {
                continue;
            }
            let notice = engine
                .sync_notice(user, &loc.device, imkit_proto::pb::SyncReason::Check)
                .await?;
            pushes.push(imkit_core::Push {
                packet: imkit_proto::Packet::SyncNotice(notice),
                packet_id: imkit_proto::PacketId::new(),
                targets: std::sync::Arc::from([imkit_core::Target {
                    user: user.clone(),
                    device: loc.device,
                    node: loc.node,
                }]),
            });
        }
        let asked = pushes.len();
        self.shared.router.deliver_all(pushes).await;
        Ok(asked)
    }

    /// The most bytes ever queued at once for a device's connection on this
    /// node (for tests and diagnostics), if it is connected here.
    pub fn peak_queued_bytes(
        &self,
        user: &imkit_core::model::UserId,
        device: &imkit_core::model::DeviceId,
    ) -> Option<usize> {
        self.shared
            .router
            .registry()
            .get(user, device)
            .map(|h| h.outbox.peak_bytes())
    }

    /// Forgets a user's device (making room under the device cap) and
    /// closes its connection, on whichever node, with
    /// `Kicked { DEVICE_REMOVED }`. Returns whether the user had the device
    /// and how many connections were asked to close.
    pub async fn remove_device(
        &self,
        user: &imkit_core::model::UserId,
        device: &imkit_core::model::DeviceId,
    ) -> Result<(bool, usize), ServerError> {
        let removed = self.shared.engine.remove_device(user, device).await?;
        let closed = self
            .kick_user(
                user,
                Some(device),
                imkit_proto::pb::KickReason::DeviceRemoved,
            )
            .await?;
        Ok((removed, closed))
    }

    /// Kicks a user's device off this node; returns whether it was here.
    pub fn kick(
        &self,
        user: &imkit_core::model::UserId,
        device: &imkit_core::model::DeviceId,
        reason: imkit_proto::pb::KickReason,
    ) -> bool {
        self.shared.lifecycle.kick_here(user, device, reason)
    }
}
