//! The bound server: its accept loops, each connection's start, and
//! graceful shutdown. `ServerBuilder` (builder.rs) makes one.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use imkit_proto::{ErrorCode, Packet, PacketId};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::task::TaskTracker;

use crate::bus::LocalNode;
use crate::config::Limits;
use crate::handle::{ServerHandle, Shared};
use crate::session;
use crate::transport::Kind;
use crate::{ServerError, transport};

/// A bound server. [`Server::run`] serves until shutdown.
pub struct Server {
    pub(crate) listeners: Vec<(Kind, TcpListener)>,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) budget: crate::fds::ConnectionBudget,
    pub(crate) shared: Arc<Shared>,
    pub(crate) tracker: TaskTracker,
    #[cfg(feature = "http")]
    pub(crate) http: Option<crate::http::AppState>,
    #[cfg(feature = "metrics")]
    pub(crate) exporter: Option<crate::exporter::Exporter>,
    #[cfg(feature = "webhooks")]
    pub(crate) webhooks: Option<crate::webhooks::Dispatcher>,
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
        #[cfg_attr(not(feature = "http"), allow(unused_variables))]
        let Server {
            listeners,
            permits,
            budget,
            shared,
            tracker,
            #[cfg(feature = "http")]
            http,
            #[cfg(feature = "metrics")]
            exporter,
            #[cfg(feature = "webhooks")]
            webhooks,
        } = self;
        #[cfg(feature = "webhooks")]
        if let Some(dispatcher) = webhooks {
            tracker.spawn(dispatcher.run(shared.engine.clone(), shared.shutdown.clone()));
        }
        #[cfg(feature = "metrics")]
        if let Some(exporter) = exporter {
            tracker.spawn(exporter.serve(shared.clone(), shared.shutdown.clone()));
        }
        #[cfg(feature = "tls")]
        if let Some(tls) = shared.tls.clone() {
            tracker.spawn(tls.watch(shared.shutdown.clone()));
        }
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
                        #[cfg(feature = "tls")]
                        shared.tls.clone(),
                    ));
                }
                continue;
            }
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(kind = kind.name(), %addr, tls = shared.tls_on(), node = %shared.engine.config().node, "listening");
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

/// The TLS handshake, when TLS is on, within the login deadline; `None`
/// when it failed (a plain client on a TLS port, a bad certificate).
async fn accept_tls(
    shared: &Shared,
    stream: TcpStream,
    peer: &SocketAddr,
) -> Option<transport::Socket> {
    // The one place a chat connection gets TCP_NODELAY.
    let _ = stream.set_nodelay(true);
    #[cfg(feature = "tls")]
    if let Some(tls) = &shared.tls {
        let s = tls
            .accept(stream, shared.limits.login_deadline, peer)
            .await?;
        return Some(transport::Socket::Tls(Box::new(s)));
    }
    let _ = (shared, peer);
    Some(transport::Socket::Plain(stream))
}

async fn connection(
    kind: Kind,
    stream: TcpStream,
    peer: SocketAddr,
    _permit: OwnedSemaphorePermit,
    shared: Arc<Shared>,
) {
    let _open = crate::metrics::connection_opened(kind);
    // Until login succeeds only small frames are read (see `session`).
    let max = shared.limits.max_prelogin_frame;
    // Boxed: the handshake's state is short-lived and should not be part
    // of every idle connection's future.
    let socket = match Box::pin(accept_tls(&shared, stream, &peer)).await {
        Some(s) => s,
        None => return,
    };
    let (reader, writer) = match (kind, socket) {
        // HTTP listeners are served by axum, never through here.
        (Kind::Tcp | Kind::Http, transport::Socket::Plain(stream)) => transport::tcp(stream, max),
        #[cfg(feature = "tls")]
        (Kind::Tcp | Kind::Http, transport::Socket::Tls(stream)) => transport::tls(*stream, max),
        (Kind::Ws, socket) => {
            // Boxed so the connection's task does not keep room for the
            // handshake once it is done.
            let handshake = Box::pin(tokio_tungstenite::accept_async_with_config(
                socket,
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
    session::run(shared, reader, writer, peer.to_string(), kind).await;
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
        // Measured 1,288 and 384 bytes (rustc 1.95, debug build, all
        // features, with TLS and metrics).
        assert!(
            connection <= 1_300,
            "connection future is {connection} bytes"
        );
        assert!(writer <= 420, "writer future is {writer} bytes");
    }
}
