//! The connection actor: one task owns the connection. It pairs responses
//! with requests by packet id, keeps every unacknowledged send in an outbox
//! that is replayed (same client message id) after a reconnect, runs the
//! catch-up protocol (sync rounds on notices, on unknown conversations and
//! after a quiet spell; gap fills; see [`crate::catch_up`]), acknowledges
//! delivery, sends heartbeats, and reconnects with exponential backoff and
//! jitter. Frames from the server are handled in `inbound.rs`, timers and
//! reconnects in `connection.rs`.

mod connection;
mod inbound;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use imkit_proto::{Packet, PacketId, pb};
use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};

use crate::catch_up::{AfterSync, SyncRound};
use crate::command::{Command, ConnectionState, MIN_HEARTBEAT_MS, Reply, refusal};
use crate::ordering::{Conversations, Need};
use crate::transport::{self, Endpoint, Reader, Writer};
use crate::{ClientError, ClientOptions, Event};

struct Conn {
    reader: Reader,
    writer: Writer,
}

struct Creds {
    token: String,
    device: String,
    platform: pb::Platform,
}

enum Pending {
    User {
        reply: Reply<Packet>,
        deadline: Instant,
    },
    Login {
        deadline: Instant,
    },
    /// The client's own gap-filling history request.
    Fill {
        conversation: String,
        deadline: Instant,
    },
    /// A page of the client's sync round.
    Sync {
        deadline: Instant,
    },
    /// A delivered receipt: the server records the device's cursor.
    Ack {
        conversation: String,
        seq: u64,
        deadline: Instant,
    },
    /// Receipts and the like, whose answers are not needed.
    Ignore {
        deadline: Instant,
    },
}

impl Pending {
    fn deadline(&self) -> Instant {
        match self {
            Pending::User { deadline, .. }
            | Pending::Login { deadline }
            | Pending::Fill { deadline, .. }
            | Pending::Sync { deadline }
            | Pending::Ack { deadline, .. }
            | Pending::Ignore { deadline } => *deadline,
        }
    }
}

struct OutboxItem {
    req: pb::SendRequest,
    waiters: Vec<Reply<pb::SendResponse>>,
    in_flight: bool,
    /// Times the server asked to retry it.
    retries: u32,
    /// Not sent again before this (after a retryable refusal).
    not_before: Option<Instant>,
}

pub(crate) struct Actor {
    endpoint: Endpoint,
    options: ClientOptions,
    conn: Option<Conn>,
    creds: Option<Creds>,
    /// The token expired: mint a fresh one before the next login.
    refresh_token: bool,
    events: mpsc::Sender<Event>,
    state: watch::Sender<ConnectionState>,
    pending: HashMap<PacketId, Pending>,
    outbox: BTreeMap<u64, OutboxItem>,
    outbox_by_packet: HashMap<PacketId, u64>,
    next_order: u64,
    convs: Conversations,
    sync: SyncRound,
    /// When to pull on our own if nothing arrives (the timed pull).
    idle_sync_at: Option<Instant>,
    /// A sync page failed; the round restarts at `retry_at`.
    sync_retry: bool,
    ack_at: Option<Instant>,
    retry_at: Option<Instant>,
    reconnect_at: Option<Instant>,
    attempt: u32,
    heartbeat_at: Option<Instant>,
    heartbeat: Duration,
    login_pending: Option<Reply<pb::LoginResponse>>,
}

/// A far-away instant for timers that are off.
fn never() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

impl Actor {
    /// An actor for a fresh connection; [`Actor::run`] runs it.
    pub(crate) fn new(
        endpoint: Endpoint,
        options: ClientOptions,
        reader: Reader,
        writer: Writer,
        events: mpsc::Sender<Event>,
        state: watch::Sender<ConnectionState>,
    ) -> Actor {
        Actor {
            endpoint,
            options,
            conn: Some(Conn { reader, writer }),
            creds: None,
            refresh_token: false,
            events,
            state,
            pending: HashMap::new(),
            outbox: BTreeMap::new(),
            outbox_by_packet: HashMap::new(),
            next_order: 0,
            convs: Conversations::default(),
            sync: SyncRound::default(),
            idle_sync_at: None,
            sync_retry: false,
            ack_at: None,
            retry_at: None,
            reconnect_at: None,
            attempt: 0,
            heartbeat_at: None,
            heartbeat: Duration::from_secs(30),
            login_pending: None,
        }
    }

    fn online(&self) -> bool {
        matches!(*self.state.borrow(), ConnectionState::Online { .. })
    }

    pub(crate) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut sweep = tokio::time::interval(Duration::from_millis(250));
        loop {
            let next_timer = [
                self.ack_at,
                self.idle_sync_at,
                self.retry_at,
                self.reconnect_at,
                self.heartbeat_at,
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(never);
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(Command::Close { reply }) => {
                        self.shutdown().await;
                        let _ = reply.send(());
                        return;
                    }
                    Some(cmd) => self.on_command(cmd).await,
                    None => {
                        self.shutdown().await;
                        return;
                    }
                },
                frame = async {
                    match self.conn.as_mut() {
                        Some(c) => c.reader.next().await,
                        None => std::future::pending().await,
                    }
                } => match frame {
                    Some(Ok(frame)) => self.on_frame(frame).await,
                    Some(Err(e)) => self.lost(&e).await,
                    None => self.lost("connection closed by the server").await,
                },
                _ = sleep_until(next_timer) => self.on_timers().await,
                _ = sweep.tick() => self.expire_requests(),
            }
        }
    }

    async fn write(&mut self, packet: &Packet, id: PacketId) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        match conn.writer.send(packet.to_frame(id)).await {
            Ok(()) => true,
            Err(e) => {
                self.lost(&e).await;
                false
            }
        }
    }

    async fn emit(&mut self, event: Event) {
        // A full event queue applies backpressure; a dropped one is ignored.
        let _ = self.events.send(event).await;
    }

    async fn on_command(&mut self, cmd: Command) {
        let timeout = self.options.request_timeout;
        match cmd {
            Command::Login {
                token,
                device,
                platform,
                reply,
            } => {
                if self.conn.is_none() {
                    let _ = reply.send(Err(ClientError::Disconnected));
                    return;
                }
                self.creds = Some(Creds {
                    token,
                    device,
                    platform,
                });
                self.login_pending = Some(reply);
                self.send_login().await;
            }
            Command::Request { packet, reply } => {
                if !self.online() {
                    let _ = reply.send(Err(ClientError::NotLoggedIn));
                    return;
                }
                let id = PacketId::new();
                self.pending.insert(
                    id,
                    Pending::User {
                        reply,
                        deadline: Instant::now() + timeout,
                    },
                );
                self.write(&packet, id).await;
            }
            Command::Fire { packet } => {
                if self.online() {
                    self.write(&packet, PacketId::new()).await;
                }
            }
            Command::Send { req, reply } => {
                if self.creds.is_none() {
                    let _ = reply.send(Err(ClientError::NotLoggedIn));
                    return;
                }
                if let Some(item) = self
                    .outbox
                    .values_mut()
                    .find(|i| i.req.client_msg_id == req.client_msg_id)
                {
                    item.waiters.push(reply);
                    return;
                }
                if self.outbox.len() >= self.options.max_outbox {
                    let _ = reply.send(Err(ClientError::OutboxFull(self.outbox.len())));
                    return;
                }
                let order = self.next_order;
                self.next_order += 1;
                self.outbox.insert(
                    order,
                    OutboxItem {
                        req,
                        waiters: vec![reply],
                        in_flight: false,
                        retries: 0,
                        not_before: None,
                    },
                );
                self.pump_outbox().await;
            }
            Command::SetCursor { conversation, seq } => {
                self.convs.set_cursor(&conversation, seq);
                self.schedule_ack();
            }
            Command::Close { .. } => {}
        }
    }

    async fn send_login(&mut self) {
        let Some(c) = &self.creds else { return };
        let packet = Packet::Login(pb::LoginRequest {
            token: c.token.clone(),
            device_id: c.device.clone(),
            platform: c.platform as i32,
            client_version: concat!("imkit-client/", env!("CARGO_PKG_VERSION")).into(),
        });
        let id = PacketId::new();
        self.pending.insert(
            id,
            Pending::Login {
                deadline: Instant::now() + self.options.request_timeout,
            },
        );
        self.write(&packet, id).await;
    }

    /// Sends outbox items that are not in flight, up to the window.
    async fn pump_outbox(&mut self) {
        if !self.online() {
            return;
        }
        let in_flight = self.outbox.values().filter(|i| i.in_flight).count();
        let room = self.options.max_in_flight_sends.saturating_sub(in_flight);
        let now = Instant::now();
        let to_send: Vec<(u64, pb::SendRequest)> = self
            .outbox
            .iter()
            .filter(|(_, i)| !i.in_flight && i.not_before.is_none_or(|t| t <= now))
            .take(room)
            .map(|(o, i)| (*o, i.req.clone()))
            .collect();
        // Sends still waiting out a retry delay are pumped when it ends.
        if let Some(next) = self
            .outbox
            .values()
            .filter(|i| !i.in_flight)
            .filter_map(|i| i.not_before)
            .filter(|t| *t > now)
            .min()
        {
            self.retry_at = Some(self.retry_at.map_or(next, |r| r.min(next)));
        }
        for (order, req) in to_send {
            let id = PacketId::new();
            if let Some(item) = self.outbox.get_mut(&order) {
                item.in_flight = true;
            }
            self.outbox_by_packet.insert(id, order);
            if !self.write(&Packet::Send(req), id).await {
                return;
            }
        }
    }
}
