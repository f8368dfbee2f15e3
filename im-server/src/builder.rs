//! [`ServerBuilder`]: what a server runs with (stores, node, login tokens,
//! hooks, limits, listeners). Each call sets one thing, and nothing is
//! built before [`ServerBuilder::bind`], so the result does not depend on
//! the order of the calls: a token secret is checked on the engine's
//! clock whether it came before or after the engine settings, and the
//! node id set with [`ServerBuilder::node`] is the one the engine, the
//! presence records and the cluster bus all use.

use std::sync::Arc;

use imkit_core::auth::{AccountGuard, Authenticator, JwtAuthenticator};
use imkit_core::hooks::{HookOptions, Hooks};
use imkit_core::model::NodeId;
use imkit_core::push::{LogPushNotifier, PushNotifier};
use imkit_core::store::{StoreConfig, Stores};
use imkit_core::{Engine, EngineConfig};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ServerError;
use crate::bus::ClusterBus;
use crate::config::Limits;
use crate::handle::{Addrs, ServerHandle, Shared};
use crate::lifecycle::Lifecycle;
use crate::registry::Registry;
use crate::router::Router;
use crate::server::Server;
use crate::transport::{Kind, listen};

/// Where the stores come from.
enum StoreChoice {
    Open(StoreConfig),
    Ready(Stores),
}

/// The Redis a cluster's presence and bus live in.
#[cfg(feature = "redis")]
struct ClusterChoice {
    url: String,
    namespace: String,
    options: crate::cluster::ClusterOptions,
}

/// How logins are checked.
enum AuthChoice {
    Secret(Vec<u8>),
    Jwt(Box<JwtAuthenticator>),
    Custom(Arc<dyn Authenticator>),
}

/// Chooses everything a server runs with. Start with [`Server::builder`].
pub struct ServerBuilder {
    stores: Option<StoreChoice>,
    #[cfg(feature = "redis")]
    cluster: Option<ClusterChoice>,
    engine_config: EngineConfig,
    node: Option<NodeId>,
    auth: Option<AuthChoice>,
    notifier: Arc<dyn PushNotifier>,
    hooks: Option<(Arc<dyn Hooks>, HookOptions)>,
    bus: Option<Arc<dyn ClusterBus>>,
    limits: Limits,
    tcp: Vec<String>,
    ws: Vec<String>,
    #[cfg(feature = "http")]
    http: Option<(String, crate::http::HttpOptions)>,
    #[cfg(feature = "http")]
    blobs: Option<Arc<dyn imkit_core::blob::BlobStore>>,
    #[cfg(feature = "tls")]
    tls: Option<crate::TlsOptions>,
    #[cfg(feature = "metrics")]
    metrics: Option<String>,
    #[cfg(feature = "webhooks")]
    webhooks: Option<crate::webhooks::WebhookOptions>,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder {
            stores: None,
            #[cfg(feature = "redis")]
            cluster: None,
            engine_config: EngineConfig::default(),
            node: None,
            auth: None,
            notifier: Arc::new(LogPushNotifier),
            hooks: None,
            bus: None,
            limits: Limits::default(),
            tcp: Vec::new(),
            ws: Vec::new(),
            #[cfg(feature = "http")]
            http: None,
            #[cfg(feature = "http")]
            blobs: None,
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "metrics")]
            metrics: None,
            #[cfg(feature = "webhooks")]
            webhooks: None,
        }
    }
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

impl Server {
    /// A builder with default limits and in-memory stores.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }
}

impl ServerBuilder {
    /// Which stores to open at [`ServerBuilder::bind`] (default: memory),
    /// e.g. `StoreConfig::sqlite("imkit.db")`.
    pub fn store(mut self, config: StoreConfig) -> Self {
        self.stores = Some(StoreChoice::Open(config));
        self
    }

    /// Stores already open (for tests and custom backends).
    pub fn stores(mut self, stores: Stores) -> Self {
        self.stores = Some(StoreChoice::Ready(stores));
        self
    }

    /// Joins a cluster of nodes sharing the Redis at `url` (feature
    /// `redis`) for presence with node liveness and the pub/sub bus, all for
    /// this builder's node id.
    ///
    /// The record (messages, cursors, groups, accounts) is what
    /// [`ServerBuilder::store`] names, which must be one every node shares:
    /// `StoreConfig::postgres(…)` (the recommended topology: a Redis restart
    /// then loses only presence and wake-ups, which clients recover by
    /// catching up) or `StoreConfig::redis(…)`. With no store named, the
    /// record is this same Redis, which must then keep what it
    /// acknowledged (`appendonly yes`, `appendfsync always`) unless
    /// [`ClusterOptions::accept_redis_data_loss`](crate::cluster::ClusterOptions::accept_redis_data_loss)
    /// says otherwise. Memory or SQLite with a cluster is refused at bind.
    #[cfg(feature = "redis")]
    pub fn redis_cluster(
        mut self,
        url: impl Into<String>,
        namespace: impl Into<String>,
        options: crate::cluster::ClusterOptions,
    ) -> Self {
        self.cluster = Some(ClusterChoice {
            url: url.into(),
            namespace: namespace.into(),
            options,
        });
        self
    }

    /// Engine settings: recall window, content limits, clock. Its `node`
    /// is used unless [`ServerBuilder::node`] sets one.
    pub fn engine_config(mut self, config: EngineConfig) -> Self {
        self.engine_config = config;
        self
    }

    /// This node's id (default `node-1`): set once, used by the engine,
    /// presence and the cluster bus.
    pub fn node(mut self, node: impl Into<NodeId>) -> Self {
        self.node = Some(node.into());
        self
    }

    /// How login tokens are checked (required, or use
    /// [`ServerBuilder::token_secret`] or [`ServerBuilder::jwt`]).
    pub fn authenticator(mut self, auth: Arc<dyn Authenticator>) -> Self {
        self.auth = Some(AuthChoice::Custom(auth));
        self
    }

    /// Checks login tokens as HS256 JWTs signed with this secret (and
    /// imkit's older `v1.` tokens) on the engine's clock, and lets
    /// [`ServerHandle::mint_token`] and the HTTP admin API issue and revoke
    /// them. The secret must not be empty.
    pub fn token_secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.auth = Some(AuthChoice::Secret(secret.into()));
        self
    }

    /// Checks login tokens as JWTs with `jwt` (a shared secret or a public
    /// key); the HTTP admin API revokes them, and issues them when `jwt`
    /// holds the secret.
    pub fn jwt(mut self, jwt: JwtAuthenticator) -> Self {
        self.auth = Some(AuthChoice::Jwt(Box::new(jwt)));
        self
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

    /// An embedder's hooks: decide sends before they are stored, observe
    /// what happened after (see [`imkit_core::hooks`]).
    pub fn hooks(mut self, hooks: Arc<dyn Hooks>, options: HookOptions) -> Self {
        self.hooks = Some((hooks, options));
        self
    }

    /// Posts events to webhooks and asks a before-send webhook about each
    /// send (feature `webhooks`; see [`crate::webhooks`]). The journal then
    /// records the events the endpoints want, in the stores' transactions.
    /// With [`ServerBuilder::hooks`] too, the before-send webhook decides
    /// first and your hook sees what it let through.
    #[cfg(feature = "webhooks")]
    pub fn webhooks(mut self, options: crate::webhooks::WebhookOptions) -> Self {
        self.webhooks = Some(options);
        self
    }

    /// How this node reaches other nodes (default: none, a single node).
    /// [`ServerBuilder::redis_cluster`] sets one up; this is for your own.
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

    /// Serves every listener (TCP, WebSocket, HTTP) over TLS with this
    /// certificate and key (feature `tls`). Plain connections are then
    /// refused at the handshake.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, options: crate::TlsOptions) -> Self {
        self.tls = Some(options);
        self
    }

    /// Serves Prometheus metrics at `http://addr/metrics` (feature
    /// `metrics`; plain HTTP, for a private network). Installs the
    /// process's metrics recorder; see [`crate::metrics`].
    #[cfg(feature = "metrics")]
    pub fn metrics(mut self, addr: impl Into<String>) -> Self {
        self.metrics = Some(addr.into());
        self
    }

    /// Adds a WebSocket listener.
    pub fn websocket(mut self, addr: impl Into<String>) -> Self {
        self.ws.push(addr.into());
        self
    }

    /// Binds (see [`ServerBuilder::bind`]) and serves in a task of its
    /// own; the handle has the bound addresses, mints tokens and shuts the
    /// server down. For an embedder that does not need to await the
    /// server's end.
    pub async fn start(self) -> Result<ServerHandle, ServerError> {
        let server = self.bind().await?;
        let handle = server.handle();
        tokio::spawn(async move {
            if let Err(e) = server.run().await {
                tracing::error!(error = %e, "server stopped with an error");
            }
        });
        Ok(handle)
    }

    /// Opens the stores and binds the listeners. Nothing is accepted until
    /// [`Server::run`].
    pub async fn bind(mut self) -> Result<Server, ServerError> {
        self.limits.validate()?;
        if let Some(node) = self.node.take() {
            self.engine_config.node = node;
        }
        let node = self.engine_config.node.clone();
        let (auth, minter): (Arc<dyn Authenticator>, Option<JwtAuthenticator>) =
            match self.auth.take() {
                None => {
                    return Err(ServerError::Config(
                        "an authenticator (or token secret) is required".into(),
                    ));
                }
                Some(AuthChoice::Custom(a)) => (a, None),
                Some(AuthChoice::Jwt(j)) => (Arc::new((*j).clone()), Some(*j)),
                Some(AuthChoice::Secret(secret)) => {
                    let j = JwtAuthenticator::hs256(secret, self.engine_config.clock.clone())
                        .map_err(|e| {
                            ServerError::Config(format!("the token secret cannot be used: {e}"))
                        })?;
                    (Arc::new(j.clone()), Some(j))
                }
            };
        #[cfg(feature = "tls")]
        let tls = self.tls.take().map(crate::tls::Tls::new).transpose()?;
        let (listeners, budget) = self.listen().await?;
        #[cfg(feature = "metrics")]
        let exporter = match self.metrics.take() {
            Some(addr) => Some(crate::exporter::Exporter::bind(&addr).await?),
            None => None,
        };
        let (stores, cluster_bus) = self.open_stores(&node).await?;
        let bus = cluster_bus.or(self.bus);
        if let Some(theirs) = bus.as_ref().and_then(|b| b.node())
            && *theirs != node
        {
            return Err(ServerError::Config(format!(
                "the cluster bus speaks for node {theirs} but this server is node {node}; \
                 give both the same node id"
            )));
        }
        // Revoked tokens, disabled accounts and the system user are refused
        // whatever checks the token itself.
        let auth: Arc<dyn Authenticator> =
            Arc::new(AccountGuard::new(auth, stores.accounts.clone()));
        let engine = Engine::with_notifier(stores, self.engine_config, self.notifier);
        #[cfg(feature = "http")]
        let blobs = self
            .blobs
            .take()
            .unwrap_or_else(|| Arc::new(imkit_core::blob::MemoryBlobStore::default()));
        #[cfg(feature = "webhooks")]
        let webhooks = match self.webhooks.take() {
            Some(options) => Some(install_webhooks(&mut self.hooks, &engine, options, &blobs)?),
            None => None,
        };
        if let Some((hooks, options)) = self.hooks.take() {
            engine.install_hooks(hooks, options)?;
        }
        // A node that restarts may have left presence entries behind.
        let stale = engine.stores().presence.clear_node(&node).await?;
        if stale > 0 {
            tracing::info!(%node, stale, "cleared presence left by a previous run");
        }
        let first = |kind| {
            listeners
                .iter()
                .find(|(k, _)| *k == kind)
                .and_then(|(_, l): &(Kind, tokio::net::TcpListener)| l.local_addr().ok())
        };
        let addrs = Addrs {
            tcp: first(Kind::Tcp),
            ws: first(Kind::Ws),
            http: first(Kind::Http),
            #[cfg(feature = "metrics")]
            metrics: exporter.as_ref().and_then(|e| e.local_addr()),
        };
        let registry = Arc::new(Registry::default());
        let router = Router::new(engine.clone(), registry, bus, &self.limits);
        let lifecycle = Lifecycle::new(router.clone());
        let shared = Arc::new(Shared {
            engine,
            router,
            lifecycle,
            auth,
            minter,
            limits: self.limits.clone(),
            queries: Arc::new(Semaphore::new(self.limits.max_concurrent_queries)),
            shutdown: CancellationToken::new(),
            addrs,
            #[cfg(feature = "tls")]
            tls,
        });
        #[cfg(feature = "http")]
        let http = self.http.map(|(_, options)| crate::http::AppState {
            server: ServerHandle {
                shared: shared.clone(),
            },
            auth: shared.auth.clone(),
            minter: shared.minter.clone(),
            blobs,
            document: crate::http::document_for(&options).into(),
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
            #[cfg(feature = "metrics")]
            exporter,
            #[cfg(feature = "webhooks")]
            webhooks,
        })
    }

    /// Binds every listener and splits the open-file budget among them.
    async fn listen(
        &self,
    ) -> Result<
        (
            Vec<(Kind, tokio::net::TcpListener)>,
            crate::fds::ConnectionBudget,
        ),
        ServerError,
    > {
        #[cfg(feature = "http")]
        let http_addrs: Vec<String> = self.http.iter().map(|(a, _)| a.clone()).collect();
        #[cfg(not(feature = "http"))]
        let http_addrs: Vec<String> = Vec::new();
        if self.tcp.is_empty() && self.ws.is_empty() && http_addrs.is_empty() {
            return Err(ServerError::Config("no listener configured".into()));
        }
        let mut listeners = Vec::new();
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
        Ok((listeners, budget))
    }

    /// The stores, and in cluster mode the bus that comes with them.
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    async fn open_stores(
        &mut self,
        node: &NodeId,
    ) -> Result<(Stores, Option<Arc<dyn ClusterBus>>), ServerError> {
        let stores = self.stores.take();
        #[cfg(feature = "redis")]
        if let Some(ClusterChoice {
            url,
            namespace,
            options,
        }) = self.cluster.take()
        {
            let record = match stores {
                None => None,
                Some(StoreChoice::Ready(stores)) => Some(stores),
                Some(StoreChoice::Open(config)) if config.is_shared() => {
                    tracing::info!(record = %config, "opening the cluster's record");
                    Some(config.open().await?)
                }
                Some(StoreChoice::Open(config)) => {
                    return Err(ServerError::Config(format!(
                        "a cluster's nodes must share their record, and {config} cannot be \
                         shared: use postgres (or redis)"
                    )));
                }
            };
            tracing::info!(%url, %namespace, %node, record = if record.is_some() { "separate" } else { "redis" }, "cluster mode");
            let (stores, bus) =
                crate::cluster::connect(&url, &namespace, node.clone(), options, record).await?;
            return Ok((stores, Some(bus as Arc<dyn ClusterBus>)));
        }
        match stores.unwrap_or(StoreChoice::Open(StoreConfig::Memory)) {
            StoreChoice::Ready(stores) => Ok((stores, None)),
            StoreChoice::Open(config) => {
                if !config.is_durable() {
                    tracing::warn!("in-memory store: messages are lost when the server stops");
                }
                tracing::info!(store = %config, "opening stores");
                Ok((config.open().await?, None))
            }
        }
    }
}

/// Turns the journal on for the webhooks' events and installs the
/// before-send webhook (ahead of the embedder's hooks, if any).
#[cfg(feature = "webhooks")]
fn install_webhooks(
    hooks: &mut Option<(Arc<dyn Hooks>, HookOptions)>,
    engine: &Engine,
    options: crate::webhooks::WebhookOptions,
    blobs: &Arc<dyn imkit_core::blob::BlobStore>,
) -> Result<crate::webhooks::Dispatcher, ServerError> {
    options.validate().map_err(ServerError::Config)?;
    let recorded = options.recorded();
    if !recorded.is_empty() {
        engine.record_journal(recorded)?;
    }
    if let Some(config) = options.before_send.clone() {
        let poster =
            crate::webhooks::Poster::new(config.timeout, options.extra_roots_pem.as_deref())
                .map_err(ServerError::Config)?;
        let mut hook_options = HookOptions::default().on_failure(config.on_failure);
        // The request's own timeout answers first: the hook then says
        // why it could not decide.
        hook_options.before_send_timeout = config.timeout + std::time::Duration::from_millis(250);
        let moderation: Arc<dyn Hooks> = Arc::new(crate::webhooks::moderation::Moderation {
            config,
            poster,
            blobs: blobs.clone(),
        });
        *hooks = Some(match hooks.take() {
            Some((theirs, options)) => (
                Arc::new(crate::webhooks::moderation::Chain {
                    first: moderation,
                    second: theirs,
                }) as Arc<dyn Hooks>,
                options,
            ),
            None => (moderation, hook_options),
        });
    }
    crate::webhooks::Dispatcher::new(options, &engine.config().node).map_err(ServerError::Config)
}
