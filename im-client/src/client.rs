//! The [`Client`] handle and the connection actor behind it.
//!
//! One task owns the connection. It pairs responses with requests by packet
//! id, keeps every unacknowledged send in an outbox that is replayed (same
//! client message id) after a reconnect, tracks the highest seq seen per
//! conversation to drop duplicates and fill gaps, acknowledges delivery,
//! sends heartbeats, and reconnects with exponential backoff and jitter.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use imkit_proto::{ErrorCode, Packet, PacketId, pb};
use rand::Rng;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until};

use crate::transport::{self, Reader, ServerAddr, Writer};
use crate::{ClientError, ClientOptions, Event};

/// The shortest heartbeat the client accepts from a server (50 ms), so a
/// misconfigured server cannot make it ping in a busy loop. The server's
/// interval is otherwise followed exactly: it closes a connection after two
/// silent intervals, so pinging less often than it asks would be cut off.
pub const MIN_HEARTBEAT_MS: u32 = 50;

type Reply<T> = oneshot::Sender<Result<T, ClientError>>;

/// Who a message or typing signal is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A user (1:1).
    User(String),
    /// A group.
    Group(String),
}

impl Peer {
    /// A user.
    pub fn user(id: impl Into<String>) -> Peer {
        Peer::User(id.into())
    }

    /// A group.
    pub fn group(id: impl Into<String>) -> Peer {
        Peer::Group(id.into())
    }
}

/// The connection's state, as seen by [`Client::state`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// Connected, not logged in.
    Connected,
    /// Logged in and serving.
    Online {
        /// The user.
        user: String,
    },
    /// Lost the connection; reconnecting.
    Reconnecting {
        /// Attempts so far.
        attempt: u32,
    },
    /// Closed for good (logout, kick, or the client was dropped).
    Closed,
}

enum Command {
    Login {
        token: String,
        device: String,
        platform: pb::Platform,
        reply: Reply<pb::LoginResponse>,
    },
    Request {
        packet: Packet,
        reply: Reply<Packet>,
    },
    Send {
        req: pb::SendRequest,
        reply: Reply<pb::SendResponse>,
    },
    Fire {
        packet: Packet,
    },
    SetCursor {
        conversation: String,
        seq: u64,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
}

/// A handle to a connection. Cheap to clone; the connection closes when
/// the last handle is dropped or [`Client::close`] is called.
#[derive(Clone, Debug)]
pub struct Client {
    tx: mpsc::Sender<Command>,
    state: watch::Receiver<ConnectionState>,
}

/// The stream of [`Event`]s from the server.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event; `None` once the client has closed.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

impl futures::Stream for Events {
    type Item = Event;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

impl Client {
    /// Connects to a server (`host:port`, `tcp://host:port` or
    /// `ws://host:port/`). Log in next with [`Client::login`].
    pub async fn connect(
        addr: &str,
        options: ClientOptions,
    ) -> Result<(Client, Events), ClientError> {
        let addr = ServerAddr::parse(addr)?;
        let (reader, writer) = transport::connect(&addr).await?;
        let (tx, rx) = mpsc::channel(256);
        let (events_tx, events_rx) = mpsc::channel(options.event_capacity.max(1));
        let (state_tx, state_rx) = watch::channel(ConnectionState::Connected);
        let actor = Actor {
            addr,
            options,
            conn: Some(Conn { reader, writer }),
            creds: None,
            events: events_tx,
            state: state_tx,
            pending: HashMap::new(),
            outbox: BTreeMap::new(),
            outbox_by_packet: HashMap::new(),
            next_order: 0,
            convs: HashMap::new(),
            ack_dirty: HashSet::new(),
            ack_at: None,
            retry_at: None,
            reconnect_at: None,
            attempt: 0,
            heartbeat_at: None,
            heartbeat: Duration::from_secs(30),
            login_pending: None,
            syncing: false,
        };
        tokio::spawn(actor.run(rx));
        Ok((
            Client {
                tx,
                state: state_rx,
            },
            Events { rx: events_rx },
        ))
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, ClientError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| ClientError::Closed)?;
        rx.await.map_err(|_| ClientError::Closed)?
    }

    /// Logs in. After a reconnect the client logs in again by itself with
    /// the same token and device.
    pub async fn login(&self, token: &str, device: &str) -> Result<pb::LoginResponse, ClientError> {
        self.login_as(token, device, pb::Platform::Unspecified)
            .await
    }

    /// Logs in, naming the platform.
    pub async fn login_as(
        &self,
        token: &str,
        device: &str,
        platform: pb::Platform,
    ) -> Result<pb::LoginResponse, ClientError> {
        let (token, device) = (token.to_owned(), device.to_owned());
        self.call(|reply| Command::Login {
            token,
            device,
            platform,
            reply,
        })
        .await
    }

    /// The current connection state.
    pub fn state(&self) -> ConnectionState {
        self.state.borrow().clone()
    }

    /// A receiver that changes with the connection state.
    pub fn watch_state(&self) -> watch::Receiver<ConnectionState> {
        self.state.clone()
    }

    /// Sends any request packet and returns the server's answer (an error
    /// answer becomes [`ClientError::Server`]).
    pub async fn request(&self, packet: impl Into<Packet>) -> Result<Packet, ClientError> {
        let packet = packet.into();
        self.call(|reply| Command::Request { packet, reply }).await
    }

    /// Sends a message and resolves when it is stored (SENT). The send
    /// survives reconnects: it stays in the outbox and is resent with the
    /// same client message id until the server acknowledges it.
    pub async fn send(
        &self,
        to: Peer,
        content: pb::Content,
    ) -> Result<pb::SendResponse, ClientError> {
        self.send_with_id(to, content, uuid::Uuid::now_v7().to_string())
            .await
    }

    /// [`Client::send`] with a client message id of your choosing (it must
    /// be unique per sender; a repeat returns the original acknowledgement).
    pub async fn send_with_id(
        &self,
        to: Peer,
        content: pb::Content,
        client_msg_id: String,
    ) -> Result<pb::SendResponse, ClientError> {
        use pb::send_request::To;
        let to = match to {
            Peer::User(u) => To::UserId(u),
            Peer::Group(g) => To::GroupId(g),
        };
        let req = pb::SendRequest {
            client_msg_id,
            to: Some(to),
            content: Some(content),
        };
        self.call(|reply| Command::Send { req, reply }).await
    }

    /// Sends text.
    pub async fn send_text(
        &self,
        to: Peer,
        text: impl Into<String>,
    ) -> Result<pb::SendResponse, ClientError> {
        let content = pb::Content {
            body: Some(pb::content::Body::Text(pb::Text {
                text: text.into(),
                mentions: Vec::new(),
            })),
        };
        self.send(to, content).await
    }

    /// Sends a file message (metadata; the bytes live at a URL or blob id).
    pub async fn send_file(
        &self,
        to: Peer,
        file: pb::File,
    ) -> Result<pb::SendResponse, ClientError> {
        let content = pb::Content {
            body: Some(pb::content::Body::File(file)),
        };
        self.send(to, content).await
    }

    /// Sends a message to a group.
    pub async fn send_to_group(
        &self,
        group: &str,
        text: impl Into<String>,
    ) -> Result<pb::SendResponse, ClientError> {
        self.send_text(Peer::group(group), text).await
    }

    /// Marks a conversation read up to `seq`; returns the read cursor.
    pub async fn mark_read(&self, conversation: &str, seq: u64) -> Result<u64, ClientError> {
        let req = pb::ReceiptRequest {
            conversation_id: conversation.to_owned(),
            kind: pb::ReceiptKind::Read as i32,
            seq,
        };
        match self.request(req).await? {
            Packet::ReceiptResponse(r) => Ok(r.seq),
            other => Err(unexpected(&other)),
        }
    }

    /// A page of history: older than `from_seq` when `backward` (0 = the
    /// newest), newer otherwise.
    pub async fn history(
        &self,
        conversation: &str,
        from_seq: u64,
        backward: bool,
        limit: u32,
    ) -> Result<pb::HistoryResponse, ClientError> {
        let req = pb::HistoryRequest {
            conversation_id: conversation.to_owned(),
            from_seq,
            backward,
            limit,
        };
        match self.request(req).await? {
            Packet::HistoryResponse(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }

    /// The conversation list with unread counts.
    pub async fn conversations(&self) -> Result<pb::ConversationListResponse, ClientError> {
        match self
            .request(pb::ConversationListRequest { limit: 0 })
            .await?
        {
            Packet::ConversationListResponse(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }

    /// Recalls a message; returns the recall event.
    pub async fn recall(
        &self,
        conversation: &str,
        message_id: &str,
    ) -> Result<pb::Message, ClientError> {
        let req = pb::RecallRequest {
            conversation_id: conversation.to_owned(),
            message_id: message_id.to_owned(),
        };
        match self.request(req).await? {
            Packet::RecallResponse(pb::RecallResponse { event: Some(e) }) => Ok(e),
            other => Err(unexpected(&other)),
        }
    }

    /// Tells the peer or group that you are (or stopped) typing.
    pub async fn typing(&self, to: Peer, active: bool) -> Result<(), ClientError> {
        use pb::typing::To;
        let to = match to {
            Peer::User(u) => To::ToUserId(u),
            Peer::Group(g) => To::ToGroupId(g),
        };
        let packet = Packet::Typing(pb::Typing {
            to: Some(to),
            active,
            ..Default::default()
        });
        self.tx
            .send(Command::Fire { packet })
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// How many members have read each message of a group conversation.
    pub async fn read_counts(
        &self,
        conversation: &str,
        seqs: Vec<u64>,
    ) -> Result<pb::ReadCountResponse, ClientError> {
        let req = pb::ReadCountRequest {
            conversation_id: conversation.to_owned(),
            seqs,
        };
        match self.request(req).await? {
            Packet::ReadCountResponse(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }

    /// Creates a group; returns its profile.
    pub async fn create_group(
        &self,
        name: &str,
        members: &[&str],
    ) -> Result<pb::GroupInfo, ClientError> {
        let req = pb::GroupCreateRequest {
            name: name.to_owned(),
            avatar: String::new(),
            member_ids: members.iter().map(|m| m.to_string()).collect(),
        };
        match self.request(req).await? {
            Packet::GroupCreateResponse(pb::GroupCreateResponse { group: Some(g) }) => Ok(g),
            other => Err(unexpected(&other)),
        }
    }

    /// The caller's groups.
    pub async fn groups(&self) -> Result<Vec<pb::GroupInfo>, ClientError> {
        match self.request(pb::GroupListRequest {}).await? {
            Packet::GroupListResponse(r) => Ok(r.groups),
            other => Err(unexpected(&other)),
        }
    }

    /// A group's members.
    pub async fn group_members(
        &self,
        group: &str,
    ) -> Result<pb::GroupMembersResponse, ClientError> {
        match self
            .request(pb::GroupMembersRequest {
                group_id: group.to_owned(),
            })
            .await?
        {
            Packet::GroupMembersResponse(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }

    /// Adds members to a group; returns those added.
    pub async fn add_members(
        &self,
        group: &str,
        users: &[&str],
    ) -> Result<Vec<String>, ClientError> {
        let req = pb::GroupAddMembersRequest {
            group_id: group.to_owned(),
            user_ids: users.iter().map(|u| u.to_string()).collect(),
        };
        match self.request(req).await? {
            Packet::GroupAddMembersResponse(r) => Ok(r.added),
            other => Err(unexpected(&other)),
        }
    }

    /// Removes members from a group (or leaves it); returns those removed.
    pub async fn remove_members(
        &self,
        group: &str,
        users: &[&str],
    ) -> Result<Vec<String>, ClientError> {
        let req = pb::GroupRemoveMembersRequest {
            group_id: group.to_owned(),
            user_ids: users.iter().map(|u| u.to_string()).collect(),
        };
        match self.request(req).await? {
            Packet::GroupRemoveMembersResponse(r) => Ok(r.removed),
            other => Err(unexpected(&other)),
        }
    }

    /// Dismisses a group.
    pub async fn dismiss_group(&self, group: &str) -> Result<(), ClientError> {
        self.request(pb::GroupDismissRequest {
            group_id: group.to_owned(),
        })
        .await
        .map(drop)
    }

    /// The caller's friends, requests and block list.
    pub async fn friends(&self) -> Result<pb::FriendListResponse, ClientError> {
        match self.request(pb::FriendListRequest {}).await? {
            Packet::FriendListResponse(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }

    /// Sends a friend request; true if you are now friends.
    pub async fn add_friend(&self, user: &str, message: &str) -> Result<bool, ClientError> {
        let req = pb::FriendAddRequest {
            user_id: user.to_owned(),
            message: message.to_owned(),
        };
        match self.request(req).await? {
            Packet::FriendAddResponse(r) => Ok(r.accepted),
            other => Err(unexpected(&other)),
        }
    }

    /// Accepts a friend request.
    pub async fn accept_friend(&self, user: &str) -> Result<(), ClientError> {
        self.request(pb::FriendAcceptRequest {
            user_id: user.to_owned(),
        })
        .await
        .map(drop)
    }

    /// Removes a friend or a pending request.
    pub async fn remove_friend(&self, user: &str) -> Result<(), ClientError> {
        self.request(pb::FriendRemoveRequest {
            user_id: user.to_owned(),
        })
        .await
        .map(drop)
    }

    /// Blocks a user.
    pub async fn block(&self, user: &str) -> Result<(), ClientError> {
        self.request(pb::BlockRequest {
            user_id: user.to_owned(),
        })
        .await
        .map(drop)
    }

    /// Unblocks a user.
    pub async fn unblock(&self, user: &str) -> Result<(), ClientError> {
        self.request(pb::UnblockRequest {
            user_id: user.to_owned(),
        })
        .await
        .map(drop)
    }

    /// Tells the client the highest seq you already hold for a
    /// conversation (from your own storage), so it fetches only what is
    /// newer and drops what you have.
    pub async fn set_cursor(&self, conversation: &str, seq: u64) -> Result<(), ClientError> {
        let cmd = Command::SetCursor {
            conversation: conversation.to_owned(),
            seq,
        };
        self.tx.send(cmd).await.map_err(|_| ClientError::Closed)
    }

    /// Logs out and closes the connection.
    pub async fn logout(&self) -> Result<(), ClientError> {
        let r = self.request(pb::LogoutRequest {}).await.map(drop);
        self.close().await;
        r
    }

    /// Closes the connection without logging out.
    pub async fn close(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Command::Close { reply }).await.is_ok() {
            let _ = rx.await;
        }
    }
}

fn unexpected(p: &Packet) -> ClientError {
    ClientError::Unexpected(format!("{:?}", p.kind()))
}

// ───────────────────────────── The actor ─────────────────────────────

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
    /// The client's own sync after login.
    Sync {
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
            | Pending::Ignore { deadline } => *deadline,
        }
    }
}

struct OutboxItem {
    req: pb::SendRequest,
    waiters: Vec<Reply<pb::SendResponse>>,
    in_flight: bool,
}

#[derive(Default)]
struct ConvState {
    /// Highest seq delivered to the application, contiguously.
    last: u64,
    /// Messages that arrived after a gap, held until the gap is filled.
    held: BTreeMap<u64, pb::Message>,
    filling: bool,
}

struct Actor {
    addr: ServerAddr,
    options: ClientOptions,
    conn: Option<Conn>,
    creds: Option<Creds>,
    events: mpsc::Sender<Event>,
    state: watch::Sender<ConnectionState>,
    pending: HashMap<PacketId, Pending>,
    outbox: BTreeMap<u64, OutboxItem>,
    outbox_by_packet: HashMap<PacketId, u64>,
    next_order: u64,
    convs: HashMap<String, ConvState>,
    ack_dirty: HashSet<String>,
    ack_at: Option<Instant>,
    retry_at: Option<Instant>,
    reconnect_at: Option<Instant>,
    attempt: u32,
    heartbeat_at: Option<Instant>,
    heartbeat: Duration,
    login_pending: Option<Reply<pb::LoginResponse>>,
    syncing: bool,
}

/// A far-away instant for timers that are off.
fn never() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

impl Actor {
    fn online(&self) -> bool {
        matches!(*self.state.borrow(), ConnectionState::Online { .. })
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut sweep = tokio::time::interval(Duration::from_millis(250));
        loop {
            let next_timer = [
                self.ack_at,
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
                let st = self.convs.entry(conversation).or_default();
                st.last = st.last.max(seq);
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
                ) {
                    self.creds = None;
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
                    let st = self.convs.entry(ack.conversation_id.clone()).or_default();
                    if ack.seq == st.last + 1 {
                        st.last = ack.seq;
                    }
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
                let err = match other {
                    Packet::Error(e) => ClientError::Server {
                        code: ErrorCode::from_u32(e.code),
                        message: e.message,
                    },
                    o => unexpected(&o),
                };
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
                    self.request_sync().await;
                    for item in self.outbox.values_mut() {
                        item.in_flight = false;
                    }
                    self.outbox_by_packet.clear();
                    self.pump_outbox().await;
                }
                other => {
                    let err = match other {
                        Packet::Error(e) => ClientError::Server {
                            code: ErrorCode::from_u32(e.code),
                            message: e.message,
                        },
                        o => unexpected(&o),
                    };
                    let retry =
                        matches!(&err, ClientError::Server { code, .. } if code.is_retryable());
                    if let Some(reply) = self.login_pending.take() {
                        let _ = reply.send(Err(err));
                    }
                    if !retry {
                        self.creds = None;
                    }
                }
            },
            Pending::Sync { .. } => {
                self.syncing = false;
                if let Packet::SyncResponse(r) = packet {
                    let mut again = false;
                    for conv in r.conversations {
                        again |= conv.has_more;
                        self.on_batch(&conv.conversation_id, conv.messages).await;
                    }
                    if again {
                        self.request_sync().await;
                    }
                }
            }
            Pending::Fill { conversation, .. } => {
                if let Some(st) = self.convs.get_mut(&conversation) {
                    st.filling = false;
                }
                if let Packet::HistoryResponse(r) = packet {
                    self.on_batch(&conversation, r.messages).await;
                }
                self.check_gap(&conversation).await;
            }
            Pending::Ignore { .. } => {}
        }
    }

    /// Messages from a sync or history answer, in seq order.
    async fn on_batch(&mut self, conversation: &str, mut messages: Vec<pb::Message>) {
        messages.sort_by_key(|m| m.seq);
        if let Some(first) = messages.first() {
            let st = self.convs.entry(conversation.to_owned()).or_default();
            if st.last == 0 && st.held.is_empty() {
                // A conversation new to this client: start where the server did.
                st.last = first.seq.saturating_sub(1);
            }
        }
        for m in messages {
            self.accept(m).await;
        }
    }

    async fn on_message(&mut self, m: pb::Message) {
        let st = self.convs.entry(m.conversation_id.clone()).or_default();
        if st.last == 0 && st.held.is_empty() && !st.filling {
            // First sight of this conversation: no history is implied.
            st.last = m.seq.saturating_sub(1);
        }
        let conv = m.conversation_id.clone();
        self.accept(m).await;
        self.check_gap(&conv).await;
    }

    /// Delivers a message in order, holding it if something is missing
    /// before it, dropping it if already delivered.
    async fn accept(&mut self, m: pb::Message) {
        let conv = m.conversation_id.clone();
        let st = self.convs.entry(conv.clone()).or_default();
        if m.seq <= st.last {
            return;
        }
        if m.seq > st.last + 1 {
            st.held.insert(m.seq, m);
            return;
        }
        st.last = m.seq;
        let mut ready = vec![m];
        while let Some(next) = st.held.remove(&(st.last + 1)) {
            st.last = next.seq;
            ready.push(next);
        }
        st.held.retain(|s, _| *s > st.last);
        self.ack_dirty.insert(conv);
        if self.ack_at.is_none() {
            self.ack_at = Some(Instant::now() + self.options.ack_delay);
        }
        for m in ready {
            self.emit(Event::Message(m)).await;
        }
    }

    /// Asks for the missing range if messages are held behind a gap.
    async fn check_gap(&mut self, conv: &str) {
        let online = self.online();
        let Some(st) = self.convs.get_mut(conv) else {
            return;
        };
        if st.held.is_empty() || st.filling || !online {
            return;
        }
        st.filling = true;
        let from = st.last;
        let id = PacketId::new();
        self.pending.insert(
            id,
            Pending::Fill {
                conversation: conv.to_owned(),
                deadline: Instant::now() + self.options.request_timeout,
            },
        );
        let req = Packet::History(pb::HistoryRequest {
            conversation_id: conv.to_owned(),
            from_seq: from,
            backward: false,
            limit: 500,
        });
        self.write(&req, id).await;
    }

    async fn request_sync(&mut self) {
        if self.syncing {
            return;
        }
        self.syncing = true;
        let cursors = self
            .convs
            .iter()
            .map(|(c, st)| pb::Cursor {
                conversation_id: c.clone(),
                seq: st.last,
            })
            .collect();
        let id = PacketId::new();
        self.pending.insert(
            id,
            Pending::Sync {
                deadline: Instant::now() + self.options.request_timeout,
            },
        );
        self.write(&Packet::Sync(pb::SyncRequest { cursors, limit: 0 }), id)
            .await;
    }

    async fn on_timers(&mut self) {
        let now = Instant::now();
        if self.ack_at.is_some_and(|t| t <= now) {
            self.ack_at = None;
            let dirty: Vec<String> = self.ack_dirty.drain().collect();
            if self.online() {
                for conv in dirty {
                    let seq = self.convs.get(&conv).map_or(0, |s| s.last);
                    let id = PacketId::new();
                    self.pending.insert(
                        id,
                        Pending::Ignore {
                            deadline: now + self.options.request_timeout,
                        },
                    );
                    let receipt = Packet::Receipt(pb::ReceiptRequest {
                        conversation_id: conv,
                        kind: pb::ReceiptKind::Delivered as i32,
                        seq,
                    });
                    if !self.write(&receipt, id).await {
                        break;
                    }
                }
            }
        }
        if self.retry_at.is_some_and(|t| t <= now) {
            self.retry_at = None;
            self.pump_outbox().await;
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
                Some(Pending::Sync { .. }) => self.syncing = false,
                Some(Pending::Fill { conversation, .. }) => {
                    if let Some(st) = self.convs.get_mut(&conversation) {
                        st.filling = false;
                    }
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
        self.syncing = false;
        for st in self.convs.values_mut() {
            st.filling = false;
        }
        self.heartbeat_at = None;
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
