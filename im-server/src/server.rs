//! The server: a builder to choose stores, hooks, limits and listeners; the
//! accept loops; graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use imkit_core::auth::{AccountGuard, Authenticator, JwtAuthenticator};
use imkit_core::push::{LogPushNotifier, PushNotifier};
use imkit_core::store::Stores;
use imkit_core::{Engine, EngineConfig};
use imkit_proto::{ErrorCode, Packet, PacketId};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::{ClusterBus, LocalNode};
use crate::config::Limits;
use crate::handle::{ServerHandle, Shared};
use crate::lifecycle::Lifecycle;
use crate::registry::Registry;
use crate::router::Router;
use crate::session;
use crate::{ServerError, transport};

/// Chooses everything a server runs with. Start with [`Server::builder`].
pub struct ServerBuilder {
    stores: Option<Stores>,
    engine_config: EngineConfig,
    auth: Option<Arc<dyn Authenticator>>,
    notifier: Arc<dyn PushNotifier>,
    bus: Option<Arc<dyn ClusterBus>>,
    limits: Limits,
    tcp: Vec<String>,
    ws: Vec<String>,
    minter: Option<JwtAuthenticator>,
    /// Why the configured token secret cannot be used, reported at bind.
    auth_error: Option<String>,
    #[cfg(feature = "http")]
    http: Option<(String, crate::http::HttpOptions)>,
    #[cfg(feature = "http")]
    blobs: Option<Arc<dyn imkit_core::blob::BlobStore>>,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("limits", &self.limits)
            .field("tcp", &self.tcp)
            .field("ws", &self.ws)
            .finish_non_exhaustive()
    }
}

impl ServerBuilder {
    /// The stores (default: in memory).
    pub fn stores(mut self, stores: Stores) -> Self {
        self.stores = Some(stores);
        self
    }

    /// Engine settings: node id, recall window, content limits.
    pub fn engine_config(mut self, config: EngineConfig) -> Self {
        self.engine_config = config;
        self
    }

    /// How login tokens are checked (required, or use [`ServerBuilder::token_secret`]).
    pub fn authenticator(mut self, auth: Arc<dyn Authenticator>) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Checks login tokens as HS256 JWTs signed with this secret (and
    /// imkit's older `v1.` tokens), and lets the HTTP admin API issue and
    /// revoke them. The secret must not be empty.
    pub fn token_secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        let clock = self.engine_config.clock.clone();
        match JwtAuthenticator::hs256(secret, clock) {
            Ok(jwt) => self.jwt(jwt),
            Err(e) => {
                self.auth_error = Some(format!("the token secret cannot be used: {e}"));
                self
            }
        }
    }

    /// Checks login tokens as JWTs with `jwt` (a shared secret or a public
    /// key); the HTTP admin API revokes them, and issues them when `jwt`
    /// holds the secret.
    pub fn jwt(mut self, jwt: JwtAuthenticator) -> Self {
        self.minter = Some(jwt.clone());
        self.authenticator(Arc::new(jwt))
    }

    /// Serves the HTTP API on `addr` with these options (feature `http`).
    #[cfg(feature = "http")]
    pub fn http(mut self, addr: impl Into<String>, options: crate::http::HttpOptions) -> Self {
        self.http = Some((addr.into(), options));
        self
    }

    /// Where uploaded files live (default: in memory; the binary uses a
    /// directory).
    #[cfg(feature = "http")]
    pub fn blob_store(mut self, blobs: Arc<dyn imkit_core::blob::BlobStore>) -> Self {
        self.blobs = Some(blobs);
        self
    }

    /// Who is told about messages for users with no device online
    /// (default: a log line).
    pub fn push_notifier(mut self, notifier: Arc<dyn PushNotifier>) -> Self {
        self.notifier = notifier;
        self
    }

    /// How this node reaches other nodes (default: none, a single node).
    pub fn cluster_bus(mut self, bus: Arc<dyn ClusterBus>) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Connection limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Adds a TCP listener, e.g. `"0.0.0.0:7400"` (`:0` picks a free port).
    pub fn tcp(mut self, addr: impl Into<String>) -> Self {
        self.tcp.push(addr.into());
        self
    }

    /// Adds a WebSocket listener.
    pub fn websocket(mut self, addr: impl Into<String>) -> Self {
        self.ws.push(addr.into());
        self
    }

    /// Binds the listeners. Nothing is accepted until [`Server::run`].
    pub async fn bind(self) -> Result<Server, ServerError> {
        self.limits.validate()?;
        if let Some(why) = self.auth_error {
            return Err(ServerError::Config(why));
        }
        let auth = self.auth.ok_or_else(|| {
            ServerError::Config("an authenticator (or token secret) is required".into())
        })?;
        #[cfg(feature = "http")]
        let no_http = self.http.is_none();
        #[cfg(not(feature = "http"))]
        let no_http = true;
        if self.tcp.is_empty() && self.ws.is_empty() && no_http {
            return Err(ServerError::Config("no listener configured".into()));
        }
        let mut listeners = Vec::new();
        #[cfg(feature = "http")]
        let http_addrs: Vec<String> = self.http.iter().map(|(a, _)| a.clone()).collect();
        #[cfg(not(feature = "http"))]
        let http_addrs: Vec<String> = Vec::new();
        for (addrs, kind) in [
            (&self.tcp, Kind::Tcp),
            (&self.ws, Kind::Ws),
            (&http_addrs, Kind::Http),
        ] {
            for addr in addrs {
                let l = listen(addr, self.limits.listen_backlog)
                    .await
                    .map_err(|source| ServerError::Bind {
                        what: kind.name(),
                        addr: addr.clone(),
                        source,
                    })?;
                listeners.push((kind, l));
            }
        }
        #[cfg(feature = "http")]
        let http_max = self.http.as_ref().and_then(|(_, o)| o.max_connections);
        #[cfg(not(feature = "http"))]
        let http_max = None;
        let fd_limit = crate::fds::raise_fd_limit()
            .map_err(|e| ServerError::Config(format!("cannot read the open-file limit: {e}")))?;
        let budget = crate::fds::budget(
            fd_limit,
            self.limits.max_connections,
            http_max,
            !http_addrs.is_empty(),
        )?;
        tracing::debug!(
            fd_limit,
            chat = budget.chat,
            http = budget.http,
            "connection budget"
        );
        let stores = self.stores.unwrap_or_else(Stores::memory);
        // Revoked tokens, disabled accounts and the system user are refused
        // whatever checks the token itself.
        let auth: Arc<dyn Authenticator> =
            Arc::new(AccountGuard::new(auth, stores.accounts.clone()));
        let engine = Engine::with_notifier(stores, self.engine_config, self.notifier);
        // A node that restarts may have left presence entries behind.
        let node = engine.config().node.clone();
        let stale = engine.stores().presence.clear_node(&node).await?;
        if stale > 0 {
            tracing::info!(%node, stale, "cleared presence left by a previous run");
        }
        if let Some(theirs) = self.bus.as_ref().and_then(|b| b.node())
            && *theirs != node
        {
            return Err(ServerError::Config(format!(
                "the cluster bus speaks for node {theirs} but the engine is node {node}; \
                 give both the same node id"
            )));
        }
        let registry = Arc::new(Registry::default());
        let router = Router::new(engine.clone(), registry, self.bus, &self.limits);
        let lifecycle = Lifecycle::new(router.clone());
        let shared = Arc::new(Shared {
            engine,
            router,
            lifecycle,
            auth,
            limits: self.limits.clone(),
            queries: Arc::new(Semaphore::new(self.limits.max_concurrent_queries)),
            shutdown: CancellationToken::new(),
        });
        #[cfg(feature = "http")]
        let http = self.http.map(|(_, options)| crate::http::AppState {
            server: ServerHandle {
                shared: shared.clone(),
            },
            auth: shared.auth.clone(),
            minter: self.minter.clone(),
            blobs: self
                .blobs
                .unwrap_or_else(|| Arc::new(imkit_core::blob::MemoryBlobStore::default())),
            options: Arc::new(options),
            clock: shared.engine.config().clock.clone(),
        });
        Ok(Server {
            listeners,
            permits: Arc::new(Semaphore::new(budget.chat)),
            budget,
            shared,
            tracker: TaskTracker::new(),
            #[cfg(feature = "http")]
            http,
        })
    }
}

/// Binds `addr` (the first address it resolves to) with `backlog`.
async fn listen(addr: &str, backlog: u32) -> std::io::Result<TcpListener> {
    let resolved = tokio::net::lookup_host(addr).await?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "address resolves to nothing")
    })?;
    let socket = if resolved.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(resolved)?;
    socket.listen(backlog)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tcp,
    Ws,
    Http,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::Ws => "websocket",
            Kind::Http => "http",
        }
    }
}

/// A bound server. [`Server::run`] serves until shutdown.
pub struct Server {
    listeners: Vec<(Kind, TcpListener)>,
    permits: Arc<Semaphore>,
    budget: crate::fds::ConnectionBudget,
    shared: Arc<Shared>,
    tracker: TaskTracker,
    #[cfg(feature = "http")]
    http: Option<crate::http::AppState>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("tcp", &self.tcp_addr())
            .field("ws", &self.ws_addr())
            .field("http", &self.http_addr())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A builder with default limits and in-memory stores.
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            stores: None,
            engine_config: EngineConfig::default(),
            auth: None,
            notifier: Arc::new(LogPushNotifier),
            bus: None,
            limits: Limits::default(),
            tcp: Vec::new(),
            ws: Vec::new(),
            minter: None,
            auth_error: None,
            #[cfg(feature = "http")]
            http: None,
            #[cfg(feature = "http")]
            blobs: None,
        }
    }

    fn addr(&self, kind: Kind) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(k, _)| *k == kind)
            .and_then(|(_, l)| l.local_addr().ok())
    }

    /// How many chat and HTTP connections this server takes at once, as
    /// derived from the open-file limit (see [`crate::fds`]).
    pub fn connection_budget(&self) -> crate::fds::ConnectionBudget {
        self.budget
    }

    /// The first TCP listener's address.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.addr(Kind::Tcp)
    }

    /// The first WebSocket listener's address.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.addr(Kind::Ws)
    }

    /// The HTTP API's address (feature `http`).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.addr(Kind::Http)
    }

    /// A handle to shut the server down or reach its engine.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            shared: self.shared.clone(),
        }
    }

    /// Serves until `signal` resolves, then shuts down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> Result<(), ServerError> {
        let token = self.shared.shutdown.clone();
        tokio::select! {
            r = self.run() => r,
            _ = async { signal.await; token.cancel(); std::future::pending::<()>().await } => Ok(()),
        }
    }

    /// Serves until [`ServerHandle::shutdown`]; then stops accepting, tells
    /// every connection the server is going away, flushes their queues,
    /// waits up to the grace period, and clears this node's presence.
    pub async fn run(self) -> Result<(), ServerError> {
        let Server {
            listeners,
            permits,
            budget,
            shared,
            tracker,
            #[cfg(feature = "http")]
            http,
        } = self;
        if let Some(bus) = shared.router.bus().cloned() {
            let local = LocalNode::new(shared.lifecycle.node_ops());
            let token = shared.shutdown.clone();
            tracker.spawn(async move { bus.serve(local, token).await });
        }
        for (kind, listener) in listeners {
            if kind == Kind::Http {
                #[cfg(feature = "http")]
                if let Some(state) = http.clone() {
                    tracker.spawn(crate::http::serve(
                        listener,
                        state,
                        budget.http,
                        shared.shutdown.clone(),
                    ));
                }
                continue;
            }
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(kind = kind.name(), %addr, node = %shared.engine.config().node, "listening");
            }
            tracker.spawn(accept_loop(
                kind,
                listener,
                permits.clone(),
                shared.clone(),
                tracker.clone(),
            ));
        }
        shared.shutdown.cancelled().await;
        tracker.close();
        if tokio::time::timeout(shared.limits.shutdown_grace, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not finish within the shutdown grace period");
        }
        let node = &shared.engine.config().node;
        shared.engine.stores().presence.clear_node(node).await?;
        tracing::info!(%node, "server stopped");
        Ok(())
    }
}

async fn accept_loop(
    kind: Kind,
    listener: TcpListener,
    permits: Arc<Semaphore>,
    shared: Arc<Shared>,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracker.spawn(refuse(stream));
            continue;
        };
        tracker.spawn(connection(kind, stream, peer, permit, shared.clone()));
    }
}

/// Over the connection limit: say so and close.
async fn refuse(mut stream: TcpStream) {
    let packet = Packet::error(ErrorCode::Overloaded, "connection limit reached");
    if let Ok(bytes) = packet.to_frame(PacketId::NIL).to_bytes(usize::MAX) {
        let _ = stream.write_all(&bytes).await;
    }
    let _ = stream.shutdown().await;
}

/// WebSocket buffers sized for chat frames, not tungstenite's 128 KiB
/// default: reads go through 1 KiB (larger messages still arrive whole;
/// the buffer is a read chunk, not a limit), writes are not buffered. This
/// is 3 KiB of the server's memory per idle WebSocket connection.
pub(crate) fn ws_config(limits: &Limits) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .max_write_buffer_size(limits.max_outbound_frame * 2)
        .max_message_size(Some(limits.max_inbound_frame))
        .max_frame_size(Some(limits.max_inbound_frame))
}

async fn connection(
    kind: Kind,
    stream: TcpStream,
    peer: SocketAddr,
    _permit: OwnedSemaphorePermit,
    shared: Arc<Shared>,
) {
    // Until login succeeds only small frames are read (see `session`).
    let max = shared.limits.max_prelogin_frame;
    let (reader, writer) = match kind {
        // HTTP listeners are served by axum, never through here.
        Kind::Tcp | Kind::Http => transport::tcp(stream, max),
        Kind::Ws => {
            let _ = stream.set_nodelay(true);
            // Boxed so the connection's task does not keep room for the
            // handshake once it is done.
            let handshake = Box::pin(tokio_tungstenite::accept_async_with_config(
                stream,
                Some(ws_config(&shared.limits)),
            ));
            match tokio::time::timeout(shared.limits.login_deadline, handshake).await {
                Ok(Ok(ws)) => transport::websocket(ws, max),
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "websocket handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "websocket handshake timed out");
                    return;
                }
            }
        }
    };
    session::run(shared, reader, writer, peer.to_string()).await;
}
#[cfg(test)]
mod footprint {
    //! Each idle connection keeps its two tasks' futures for its whole life,
    //! so their sizes are most of its memory. These budgets catch a change
    //! that makes every connection carry room for some rare path (box that
    //! path instead; see `Session::close_with`).

    fn size5<A, B, C, D, E, F>(_: impl FnOnce(A, B, C, D, E) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    fn size4<A, B, C, D, F>(_: impl FnOnce(A, B, C, D) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn an_idle_connection_s_futures_stay_small() {
        let connection = size5(super::connection);
        let writer = size4(crate::session::write_loop);
        eprintln!("connection future {connection} B, writer future {writer} B");
        // Measured 1,088 and 344 bytes (rustc 1.95, debug build).
        assert!(
            connection <= 1_300,
            "connection future is {connection} bytes"
        );
        assert!(writer <= 420, "writer future is {writer} bytes");
    }
}
