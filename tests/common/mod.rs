//! Helpers for the end-to-end tests: a server on 127.0.0.1 with free
//! ports, tokens, clients, event waiting, and a TCP proxy that can cut
//! connections.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use imkit::client::{Client, ClientOptions, Event, Events};
use imkit::engine::auth::HmacAuthenticator;
use imkit::engine::model::UserId;
use imkit::proto::{Frame, Packet, PacketId, pb};
#[cfg(feature = "redis")]
use imkit::server::ClusterBus;
use imkit::server::{Limits, Server, ServerBuilder, ServerHandle};
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

#[cfg(feature = "http")]
pub mod api;
pub mod pki;

pub const SECRET: &str = "e2e-secret";
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub handle: ServerHandle,
    pub tcp: SocketAddr,
    pub ws: SocketAddr,
    task: JoinHandle<()>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::with_limits(Limits::default()).await
    }

    pub async fn with_limits(limits: Limits) -> TestServer {
        Self::custom(|b| b.limits(limits)).await
    }

    /// A server on free ports, configured by `configure` (stores, limits,
    /// engine settings).
    pub async fn custom(configure: impl FnOnce(ServerBuilder) -> ServerBuilder) -> TestServer {
        let server = configure(Server::builder().token_secret(SECRET))
            .tcp("127.0.0.1:0")
            .websocket("127.0.0.1:0")
            .bind()
            .await
            .expect("bind");
        let handle = server.handle();
        let tcp = server.tcp_addr().expect("tcp addr");
        let ws = server.ws_addr().expect("ws addr");
        let task = tokio::spawn(async move {
            server.run().await.expect("server run");
        });
        TestServer {
            handle,
            tcp,
            ws,
            task,
        }
    }

    /// A node of a cluster whose record is in PostgreSQL (`pg_url`, `schema`)
    /// and whose presence and bus are in the Redis at `url`.
    #[cfg(all(feature = "redis", feature = "postgres"))]
    pub async fn postgres_cluster_node(
        pg_url: &str,
        schema: &str,
        url: &str,
        namespace: &str,
        node: &str,
    ) -> TestServer {
        use imkit::engine::store::StoreConfig;
        use imkit::engine::store::postgres::PostgresOptions;
        let record = StoreConfig::Postgres {
            url: pg_url.to_owned(),
            options: PostgresOptions::default().in_schema(schema),
        };
        let options = test_cluster_options();
        Self::custom(|b| {
            b.store(record)
                .redis_cluster(url, namespace, options)
                .node(node)
        })
        .await
    }

    /// A node of a cluster on a shared Redis (the record in Redis too).
    #[cfg(feature = "redis")]
    pub async fn cluster_node(url: &str, namespace: &str, node: &str) -> TestServer {
        let options = test_cluster_options();
        Self::custom(|b| b.redis_cluster(url, namespace, options).node(node)).await
    }

    /// A cluster node whose bus is wrapped by `wrap` (to lose wake-ups on
    /// purpose, say).
    #[cfg(feature = "redis")]
    pub async fn cluster_node_with(
        url: &str,
        namespace: &str,
        node: &str,
        wrap: impl FnOnce(Arc<dyn ClusterBus>) -> Arc<dyn ClusterBus>,
    ) -> TestServer {
        use imkit::engine::EngineConfig;
        use imkit::engine::model::NodeId;
        use imkit::server::cluster::connect;
        let options = test_cluster_options();
        let (stores, bus) = connect(url, namespace, NodeId::from(node), options, None)
            .await
            .expect("cluster connect");
        let bus = wrap(bus);
        Self::custom(|b| {
            b.stores(stores)
                .cluster_bus(bus)
                .engine_config(EngineConfig {
                    node: NodeId::from(node),
                    ..EngineConfig::default()
                })
        })
        .await
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/", self.ws)
    }

    pub async fn stop(self) {
        self.handle.shutdown();
        let _ = tokio::time::timeout(WAIT, self.task).await;
    }
}

pub fn token(user: &str) -> String {
    HmacAuthenticator::new(SECRET).mint(&UserId::from(user), 3600)
}

pub async fn login(addr: &str, user: &str, device: &str) -> (Client, Events) {
    login_with(addr, user, device, ClientOptions::default()).await
}

pub async fn login_with(
    addr: &str,
    user: &str,
    device: &str,
    options: ClientOptions,
) -> (Client, Events) {
    let (client, events) = Client::connect(addr, options).await.expect("connect");
    client.login(&token(user), device).await.expect("login");
    (client, events)
}

/// Waits for the first event that `pick` accepts, skipping others.
pub async fn wait_for<T>(events: &mut Events, mut pick: impl FnMut(Event) -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("timed out waiting for an event")
            .expect("event stream ended");
        if let Some(t) = pick(ev) {
            return t;
        }
    }
}

/// Collects messages until `n` have arrived.
pub async fn messages(events: &mut Events, n: usize) -> Vec<imkit::proto::pb::Message> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        out.push(
            wait_for(events, |e| match e {
                Event::Message(m) => Some(m),
                _ => None,
            })
            .await,
        );
    }
    out
}

/// Messages that arrive within `quiet`, to check that nothing more comes.
pub async fn drain_messages(
    events: &mut Events,
    quiet: Duration,
) -> Vec<imkit::proto::pb::Message> {
    let mut out = Vec::new();
    while let Ok(Some(ev)) = tokio::time::timeout(quiet, events.recv()).await {
        if let Event::Message(m) = ev {
            out.push(m);
        }
    }
    out
}

pub fn text_of(m: &imkit::proto::pb::Message) -> &str {
    match m.content.as_ref().and_then(|c| c.body.as_ref()) {
        Some(imkit::proto::pb::content::Body::Text(t)) => &t.text,
        _ => "",
    }
}

/// A TCP proxy whose live connections can be cut, to simulate a network drop.
pub struct Proxy {
    pub addr: SocketAddr,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    blocked: Arc<std::sync::atomic::AtomicBool>,
    task: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let blocked = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (c, b) = (conns.clone(), blocked.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if b.load(std::sync::atomic::Ordering::SeqCst) {
                    // Cut off: the connection goes nowhere.
                    drop(inbound);
                    continue;
                }
                let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let h = tokio::spawn(async move {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
                c.lock().push(h);
            }
        });
        Proxy {
            addr,
            conns,
            blocked,
            task,
        }
    }

    /// Cuts every connection and refuses new ones until [`Proxy::heal`]:
    /// the far side is unreachable.
    pub fn block(&self) {
        self.blocked
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.cut();
    }

    /// Lets connections through again.
    pub fn heal(&self) {
        self.blocked
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Drops every connection through the proxy; new ones are accepted.
    pub fn cut(&self) {
        for h in self.conns.lock().drain(..) {
            h.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

/// This process's resident memory, in KiB.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A client speaking raw frames, for tests that must control reads and
/// writes (not reading at all, pipelining without waiting).
pub struct RawConn {
    pub stream: TcpStream,
    buf: bytes::BytesMut,
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> RawConn {
        RawConn {
            stream: TcpStream::connect(addr).await.expect("connect"),
            buf: bytes::BytesMut::new(),
        }
    }

    /// Connects and logs in; the next frame read follows the login answer.
    pub async fn login(addr: SocketAddr, user: &str, device: &str) -> RawConn {
        let mut c = RawConn::connect(addr).await;
        c.send(&Packet::Login(pb::LoginRequest {
            token: token(user),
            device_id: device.into(),
            ..Default::default()
        }))
        .await;
        let answer = c.next().await.expect("login answer");
        assert!(matches!(
            Packet::from_frame(&answer),
            Ok(Packet::LoginResponse(_))
        ));
        c
    }

    pub fn encode(packet: &Packet) -> bytes::Bytes {
        packet
            .to_frame(PacketId::new())
            .to_bytes(usize::MAX)
            .expect("encode")
    }

    pub async fn send(&mut self, packet: &Packet) {
        use tokio::io::AsyncWriteExt;
        self.stream
            .write_all(&Self::encode(packet))
            .await
            .expect("write");
    }

    pub async fn send_frame(&mut self, frame: &Frame) {
        use tokio::io::AsyncWriteExt;
        let bytes = frame.to_bytes(usize::MAX).expect("encode");
        self.stream.write_all(&bytes).await.expect("write");
    }

    /// The next frame, or `None` at the end of the stream or after `WAIT`.
    pub async fn next(&mut self) -> Option<Frame> {
        use tokio::io::AsyncReadExt;
        loop {
            if let Ok(Some(f)) = Frame::decode(&mut self.buf, 1 << 24) {
                return Some(f);
            }
            match tokio::time::timeout(WAIT, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(_)) => {}
            }
        }
    }

    /// The next packet.
    pub async fn packet(&mut self) -> Option<Packet> {
        let f = self.next().await?;
        Some(Packet::from_frame(&f).expect("decodes"))
    }
}

/// Cluster options for tests: a short liveness, and the test Redis (which
/// keeps nothing on disk) accepted as the record.
#[cfg(feature = "redis")]
pub fn test_cluster_options() -> imkit::server::cluster::ClusterOptions {
    let mut options = imkit::server::cluster::ClusterOptions::default();
    options.liveness_ttl = Duration::from_secs(2);
    options.accept_redis_data_loss = true;
    options
}
