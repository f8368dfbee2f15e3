//! The connection actor: one task owns the connection. It pairs responses
//! with requests by packet id, keeps every unacknowledged send in an outbox
//! that is replayed (same client message id) after a reconnect, runs the
//! catch-up protocol (sync rounds on notices, on unknown conversations and
//! after a quiet spell; gap fills; see [`crate::catch_up`]), acknowledges
//! delivery, sends heartbeats, and reconnects with exponential backoff and
//! jitter.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use imkit_proto::{ErrorCode, Packet, PacketId, pb};
use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};

use crate::catch_up::{AfterSync, Conversations, Need, SyncRound};
use crate::client::{Command, ConnectionState, MIN_HEARTBEAT_MS, Reply, refusal};
use crate::transport::{self, Reader, ServerAddr, Writer};
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
}

pub(crate) struct Actor {
    addr: ServerAddr,
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
        addr: ServerAddr,
        options: ClientOptions,
        reader: Reader,
        writer: Writer,
        events: mpsc::Sender<Event>,
        state: watch::Sender<ConnectionState>,
    ) -> Actor {
        Actor {
            addr,
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
        let to_send: Vec<(u64, pb::SendRequest)> = self
            .outbox
            .iter()
            .filter(|(_, i)| !i.in_flight)
            .take(room)
            .map(|(o, i)| (*o, i.req.clone()))
            .collect();
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

    async fn on_frame(&mut self, frame: imkit_proto::Frame) {
        let id = frame.header.packet_id;
        let packet = match Packet::from_frame(&frame) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "undecodable frame from server");
                return;
            }
        };
        if frame.header.flags.is_response() {
            if let Some(order) = self.outbox_by_packet.remove(&id) {
                self.on_send_answer(order, packet).await;
            } else if let Some(p) = self.pending.remove(&id) {
                self.on_answer(p, packet).await;
            } else if let Packet::Error(e) = packet {
                // Errors that answer nothing (a closed connection's reason).
                tracing::debug!(code = e.code, message = %e.message, "server error");
            }
            return;
        }
        match packet {
            Packet::MessagePush(p) => {
                if let Some(m) = p.message {
                    self.on_message(m).await;
                }
            }
            Packet::SyncNotice(n) => {
                tracing::debug!(
                    reason = n.reason,
                    behind = n.conversations.len(),
                    "sync notice"
                );
                self.want_sync().await;
            }
            Packet::ReceiptPush(r) => self.emit(Event::Receipt(r)).await,
            Packet::Typing(t) => self.emit(Event::Typing(t)).await,
            Packet::Notification(n) => self.emit(Event::Notification(n)).await,
            Packet::ContactEvent(c) => self.emit(Event::Contact(c)).await,
            Packet::Kicked(k) => {
                let reason =
                    pb::KickReason::try_from(k.reason).unwrap_or(pb::KickReason::Unspecified);
                // Another session took over, or an operator said so: do not
                // fight it by reconnecting.
                if matches!(
                    reason,
                    pb::KickReason::DuplicateLogin
                        | pb::KickReason::Admin
                        | pb::KickReason::TokenRevoked
                        | pb::KickReason::DeviceRemoved
                ) {
                    self.creds = None;
                }
                if reason == pb::KickReason::TokenExpired {
                    // Reconnect with a fresh token if the app can mint
                    // one, else stop: the old one is worthless.
                    if self.options.token_refresh.is_some() {
                        self.refresh_token = true;
                    } else {
                        self.creds = None;
                    }
                }
                self.emit(Event::Kicked {
                    reason,
                    message: k.message,
                })
                .await;
            }
            other => tracing::debug!(kind = ?other.kind(), "ignored push"),
        }
    }

    async fn on_send_answer(&mut self, order: u64, packet: Packet) {
        match packet {
            Packet::SendResponse(ack) => {
                if let Some(item) = self.outbox.remove(&order) {
                    // Our own message: we hold it now.
                    self.convs.sent(&ack.conversation_id, ack.seq);
                    for w in item.waiters {
                        let _ = w.send(Ok(ack.clone()));
                    }
                }
            }
            Packet::Error(e) if ErrorCode::from_u32(e.code).is_retryable() => {
                if let Some(item) = self.outbox.get_mut(&order) {
                    item.in_flight = false;
                }
                let at = Instant::now() + self.options.retry_delay;
                self.retry_at = Some(self.retry_at.map_or(at, |r| r.min(at)));
            }
            other => {
                let err = refusal(other);
                if let Some(item) = self.outbox.remove(&order) {
                    let mut waiters = item.waiters.into_iter();
                    if let Some(first) = waiters.next() {
                        for w in waiters {
                            let _ = w.send(Err(ClientError::Unexpected(err.to_string())));
                        }
                        let _ = first.send(Err(err));
                    }
                }
            }
        }
        self.pump_outbox().await;
    }

    async fn on_answer(&mut self, pending: Pending, packet: Packet) {
        match pending {
            Pending::User { reply, .. } => {
                let r = match packet {
                    Packet::Error(e) => Err(ClientError::Server {
                        code: ErrorCode::from_u32(e.code),
                        message: e.message,
                    }),
                    p => Ok(p),
                };
                let _ = reply.send(r);
            }
            Pending::Login { .. } => match packet {
                Packet::LoginResponse(r) => {
                    self.heartbeat = Duration::from_millis(u64::from(
                        r.heartbeat_interval_ms.max(MIN_HEARTBEAT_MS),
                    ));
                    self.heartbeat_at = Some(Instant::now() + self.heartbeat);
                    self.attempt = 0;
                    let _ = self.state.send(ConnectionState::Online {
                        user: r.user_id.clone(),
                    });
                    self.emit(Event::Connected {
                        user: r.user_id.clone(),
                        node: r.node_id.clone(),
                    })
                    .await;
                    if let Some(reply) = self.login_pending.take() {
                        let _ = reply.send(Ok(r));
                    }
                    // The server pushes what this device is owed, or says
                    // it will not (a notice); gaps left from before the
                    // reconnect are asked for again.
                    self.reset_idle_sync();
                    for need in self.convs.fills() {
                        self.act(need).await;
                    }
                    if self.convs.any_held() {
                        self.want_sync().await;
                    }
                    for item in self.outbox.values_mut() {
                        item.in_flight = false;
                    }
                    self.outbox_by_packet.clear();
                    self.pump_outbox().await;
                }
                other => {
                    let err = refusal(other);
                    let expired = err.code() == Some(ErrorCode::TokenExpired)
                        && self.options.token_refresh.is_some();
                    if expired {
                        self.refresh_token = true;
                    }
                    let retry = expired || err.code().is_some_and(ErrorCode::is_retryable);
                    if let Some(reply) = self.login_pending.take() {
                        let _ = reply.send(Err(err));
                    }
                    if !retry {
                        self.creds = None;
                    }
                }
            },
            Pending::Sync { .. } => {
                let Packet::SyncResponse(r) = packet else {
                    tracing::debug!(kind = ?packet.kind(), "sync failed; retrying after a pause");
                    self.retry_sync();
                    return;
                };
                let mut ready = Vec::new();
                let mut more = r.more;
                for conv in r.conversations {
                    more |= conv.has_more;
                    self.convs
                        .synced(&conv.conversation_id, conv.messages, &mut ready);
                }
                let after = self.sync.answered(more);
                if after == AfterSync::Done {
                    self.convs.round_done(&mut ready);
                    self.reset_idle_sync();
                }
                self.deliver(ready).await;
                if after == AfterSync::Next {
                    self.send_sync().await;
                }
            }
            Pending::Fill { conversation, .. } => {
                let messages = match packet {
                    Packet::HistoryResponse(r) => r.messages,
                    _ => Vec::new(),
                };
                let mut ready = Vec::new();
                let need = self.convs.filled(&conversation, messages, &mut ready);
                self.deliver(ready).await;
                self.act(need).await;
            }
            Pending::Ack {
                conversation, seq, ..
            } => {
                if let Packet::ReceiptResponse(_) = packet {
                    self.convs.acked(&conversation, seq);
                }
            }
            Pending::Ignore { .. } => {}
        }
    }

    async fn on_message(&mut self, m: pb::Message) {
        self.reset_idle_sync();
        let mut ready = Vec::new();
        let need = self.convs.pushed(m, &mut ready);
        self.deliver(ready).await;
        self.act(need).await;
    }

    /// Hands messages to the application, in order, and schedules their
    /// delivered receipts.
    async fn deliver(&mut self, ready: Vec<pb::Message>) {
        if ready.is_empty() {
            return;
        }
        self.schedule_ack();
        for m in ready {
            self.emit(Event::Message(m)).await;
        }
    }

    fn schedule_ack(&mut self) {
        if self.ack_at.is_none() {
            self.ack_at = Some(Instant::now() + self.options.ack_delay);
        }
    }

    /// The sync page out failed: ask again after the retry delay.
    fn retry_sync(&mut self) {
        self.sync.lost();
        self.sync_retry = true;
        let at = Instant::now() + self.options.retry_delay;
        self.retry_at = Some(self.retry_at.map_or(at, |r| r.min(at)));
    }

    fn reset_idle_sync(&mut self) {
        self.idle_sync_at = self.options.idle_sync.map(|every| {
            // ±20% so a fleet of clients started together does not pull
            // together.
            let jitter: f64 = rand::rng().random_range(0.8..1.2);
            Instant::now() + every.mul_f64(jitter)
        });
    }

    async fn act(&mut self, need: Need) {
        match need {
            Need::Nothing => {}
            Need::Sync => self.want_sync().await,
            Need::Fill { conversation, from } => self.fill(conversation, from).await,
        }
    }

    /// Asks for the messages after `from` in a conversation with a gap.
    async fn fill(&mut self, conversation: String, from: u64) {
        if !self.online() {
            return;
        }
        let id = PacketId::new();
        let req = Packet::History(pb::HistoryRequest {
            conversation_id: conversation.clone(),
            from_seq: from,
            backward: false,
            limit: 0,
        });
        self.pending.insert(
            id,
            Pending::Fill {
                conversation,
                deadline: Instant::now() + self.options.request_timeout,
            },
        );
        self.write(&req, id).await;
    }

    /// Starts a sync round, or asks the one under way for one more page.
    async fn want_sync(&mut self) {
        if self.online() && self.sync.want() {
            self.send_sync().await;
        }
    }

    /// Sends a page request of the sync round. Cursors name only the
    /// conversations where the application got further than the server
    /// has recorded; elsewhere the server resumes from its own.
    async fn send_sync(&mut self) {
        let id = PacketId::new();
        self.pending.insert(
            id,
            Pending::Sync {
                deadline: Instant::now() + self.options.request_timeout,
            },
        );
        let req = pb::SyncRequest {
            cursors: self.convs.cursors(),
            limit: 0,
        };
        self.write(&Packet::Sync(req), id).await;
    }

    async fn on_timers(&mut self) {
        let now = Instant::now();
        if self.ack_at.is_some_and(|t| t <= now) {
            self.ack_at = None;
            if self.online() {
                for (conversation, seq) in self.convs.unacked() {
                    let id = PacketId::new();
                    let receipt = Packet::Receipt(pb::ReceiptRequest {
                        conversation_id: conversation.clone(),
                        kind: pb::ReceiptKind::Delivered as i32,
                        seq,
                    });
                    self.pending.insert(
                        id,
                        Pending::Ack {
                            conversation,
                            seq,
                            deadline: now + self.options.request_timeout,
                        },
                    );
                    if !self.write(&receipt, id).await {
                        break;
                    }
                }
            }
        }
        if self.idle_sync_at.is_some_and(|t| t <= now) {
            // A quiet spell: pull, in case a wake-up was lost.
            self.reset_idle_sync();
            self.want_sync().await;
        }
        if self.retry_at.is_some_and(|t| t <= now) {
            self.retry_at = None;
            self.pump_outbox().await;
            if std::mem::take(&mut self.sync_retry) {
                // A sync page that failed is asked again.
                self.want_sync().await;
            }
        }
        if self.heartbeat_at.is_some_and(|t| t <= now) {
            self.heartbeat_at = Some(now + self.heartbeat);
            if self.online() {
                let id = PacketId::new();
                self.pending.insert(
                    id,
                    Pending::Ignore {
                        deadline: now + self.options.request_timeout,
                    },
                );
                let ping = Packet::Ping(pb::Ping {
                    client_time_ms: unix_ms(),
                });
                self.write(&ping, id).await;
            }
        }
        if self.reconnect_at.is_some_and(|t| t <= now) {
            self.reconnect_at = None;
            self.reconnect().await;
        }
    }

    fn expire_requests(&mut self) {
        let now = Instant::now();
        let expired: Vec<PacketId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline() <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            match self.pending.remove(&id) {
                Some(Pending::User { reply, .. }) => {
                    let _ = reply.send(Err(ClientError::Timeout(self.options.request_timeout)));
                }
                Some(Pending::Login { .. }) => {
                    if let Some(reply) = self.login_pending.take() {
                        let _ = reply.send(Err(ClientError::Timeout(self.options.request_timeout)));
                    }
                }
                Some(Pending::Sync { .. }) => self.retry_sync(),
                Some(Pending::Fill { conversation, .. }) => {
                    // Asked again when the conversation next moves.
                    let mut ready = Vec::new();
                    let _ = self.convs.filled(&conversation, Vec::new(), &mut ready);
                }
                _ => {}
            }
        }
    }

    /// The connection is gone: fail what cannot survive, keep the outbox,
    /// and schedule a reconnect if we were logged in.
    async fn lost(&mut self, why: &str) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        conn.writer.close().await;
        tracing::debug!(reason = why, "connection lost");
        for (_, p) in self.pending.drain() {
            match p {
                Pending::User { reply, .. } => {
                    let _ = reply.send(Err(ClientError::Disconnected));
                }
                Pending::Login { .. } => {
                    if let Some(reply) = self.login_pending.take() {
                        let _ = reply.send(Err(ClientError::Disconnected));
                    }
                }
                _ => {}
            }
        }
        for item in self.outbox.values_mut() {
            item.in_flight = false;
        }
        self.outbox_by_packet.clear();
        self.sync.lost();
        self.sync_retry = false;
        self.convs.disconnected();
        self.heartbeat_at = None;
        self.idle_sync_at = None;
        self.emit(Event::Disconnected {
            reason: why.to_owned(),
        })
        .await;
        if self.creds.is_some() && self.options.reconnect {
            self.schedule_reconnect();
        } else {
            self.fail_outbox(|| ClientError::NotLoggedIn);
            let _ = self.state.send(ConnectionState::Closed);
        }
    }

    fn schedule_reconnect(&mut self) {
        self.attempt += 1;
        let base = self.options.reconnect_min.as_millis() as f64
            * 2f64.powi(self.attempt.min(16) as i32 - 1);
        let capped = base.min(self.options.reconnect_max.as_millis() as f64);
        let jitter: f64 = rand::rng().random_range(0.5..1.5);
        let delay = Duration::from_millis((capped * jitter) as u64);
        let _ = self.state.send(ConnectionState::Reconnecting {
            attempt: self.attempt,
        });
        self.reconnect_at = Some(Instant::now() + delay);
    }

    async fn reconnect(&mut self) {
        if self.refresh_token {
            self.refresh_token = false;
            let fresh = match &self.options.token_refresh {
                Some(refresh) => tokio::time::timeout(self.options.request_timeout, refresh.mint())
                    .await
                    .ok()
                    .flatten(),
                None => None,
            };
            match (fresh, self.creds.as_mut()) {
                (Some(token), Some(creds)) => creds.token = token,
                _ => {
                    tracing::debug!("no fresh token; not reconnecting");
                    self.creds = None;
                    self.fail_outbox(|| ClientError::NotLoggedIn);
                    let _ = self.state.send(ConnectionState::Closed);
                    return;
                }
            }
        }
        if self.creds.is_none() {
            return;
        }
        self.emit(Event::Reconnecting {
            attempt: self.attempt,
        })
        .await;
        match transport::connect(&self.addr).await {
            Ok((reader, writer)) => {
                self.conn = Some(Conn { reader, writer });
                let _ = self.state.send(ConnectionState::Connected);
                self.send_login().await;
            }
            Err(e) => {
                tracing::debug!(error = %e, attempt = self.attempt, "reconnect failed");
                self.schedule_reconnect();
            }
        }
    }

    fn fail_outbox(&mut self, err: impl Fn() -> ClientError) {
        for (_, item) in std::mem::take(&mut self.outbox) {
            for w in item.waiters {
                let _ = w.send(Err(err()));
            }
        }
        self.outbox_by_packet.clear();
    }

    async fn shutdown(&mut self) {
        self.creds = None;
        if let Some(mut conn) = self.conn.take() {
            conn.writer.close().await;
        }
        for (_, p) in self.pending.drain() {
            if let Pending::User { reply, .. } = p {
                let _ = reply.send(Err(ClientError::Closed));
            }
        }
        self.fail_outbox(|| ClientError::Closed);
        let _ = self.state.send(ConnectionState::Closed);
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
