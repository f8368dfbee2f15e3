//! A connection's session task: login within the deadline, heartbeats, rate
//! limits, request dispatch to the engine through [`crate::Router::exec`], and
//! kicks; it runs [`paced`](crate::router::paced), so its fan-out yields to
//! the writers. Beside it, the connection's writer task drains its bounded
//! [`Outbox`] in batches.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use imkit_core::Caller;
use imkit_core::model::DeviceId;
use imkit_proto::pb::KickReason;
use imkit_proto::{ErrorCode, Frame, Packet, PacketId, Sender, pb};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::handle::Shared;
use crate::lifecycle::kick_message;
use crate::outbox::Outbox;
use crate::registry::ConnHandle;
use crate::transport::{FrameReader, FrameWriter, ReadError, Written};

enum Flow {
    Continue,
    Close,
}

struct Session {
    shared: Arc<Shared>,
    handle: ConnHandle,
    caller: Option<Caller>,
    limiter: DefaultDirectRateLimiter,
    /// Budget of refused frames (see [`Session::refuse`]).
    bad_frames: DefaultDirectRateLimiter,
    /// When the login token expires; the session ends then.
    token_expiry: Option<Instant>,
    peer: String,
    /// TCP or WebSocket, for metrics (one byte, not a name: every idle
    /// connection carries it).
    transport: crate::transport::Kind,
}

/// Most frames a session takes from a connection at once (those already
/// read), so one client cannot hold its session in one batch for long.
const MAX_PIPELINED: usize = 64;

/// Refused frames regain one per second up to a burst of `max`.
fn bad_frame_quota(max: u32) -> Quota {
    Quota::per_second(NonZeroU32::MIN).allow_burst(NonZeroU32::new(max).unwrap_or(NonZeroU32::MIN))
}

/// Runs a connection to its end.
pub(crate) async fn run(
    shared: Arc<Shared>,
    mut reader: FrameReader,
    writer: FrameWriter,
    peer: String,
    transport: crate::transport::Kind,
) {
    let limits = &shared.limits;
    let outbox = Arc::new(Outbox::new(limits.queue_len, limits.queue_bytes));
    let handle = ConnHandle::new(outbox.clone());
    let writer = tokio::spawn(write_loop(
        writer,
        handle.clone(),
        limits.write_batch_bytes,
        limits.write_timeout,
    ));
    let quota =
        Quota::per_second(NonZeroU32::new(limits.rate_per_second).unwrap_or(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(limits.rate_burst).unwrap_or(NonZeroU32::MIN));
    let bad_frames = RateLimiter::direct(bad_frame_quota(limits.max_bad_frames));
    let mut session = Session {
        shared,
        handle,
        caller: None,
        limiter: RateLimiter::direct(quota),
        bad_frames,
        token_expiry: None,
        peer,
        transport,
    };
    crate::router::paced(session.read_loop(&mut reader)).await;
    // Boxed: the engine's futures are large, and an idle connection should
    // not carry room for them (see `read_loop`).
    Box::pin(session.finish()).await;
    let grace = session.shared.limits.write_timeout;
    let shutdown = session.shared.shutdown.clone();
    drop(session);
    // The writer flushes what is queued, then ends.
    outbox.close();
    Box::pin(linger(reader, writer, grace, shutdown)).await;
}

/// How long a closing connection waits for the client's side to close
/// once the server is shutting down (its writer has flushed by then).
const SHUTDOWN_LINGER: Duration = Duration::from_millis(200);

/// Closes gently: reads (and drops) what the client still sends until the
/// writer has flushed and the client has closed its side, within `grace`
/// after the writer ends ([`SHUTDOWN_LINGER`] once the server is shutting
/// down). A socket closed with unread input is reset by the kernel, and a
/// reset makes the client discard what it has not read yet: the last
/// frames, a `Kicked` among them.
async fn linger(
    mut reader: FrameReader,
    writer: tokio::task::JoinHandle<()>,
    grace: Duration,
    shutdown: CancellationToken,
) {
    async fn until_eof(reader: &mut FrameReader) {
        while let Ok(Some(_)) = reader.next().await {}
    }
    let mut writer = writer;
    tokio::select! {
        _ = &mut writer => {}
        _ = until_eof(&mut reader) => {
            // The client closed first: nothing more will be read.
            let _ = writer.await;
            return;
        }
    }
    let patience = async {
        tokio::select! {
            _ = tokio::time::sleep(grace) => {}
            _ = async {
                shutdown.cancelled().await;
                tokio::time::sleep(SHUTDOWN_LINGER).await;
            } => {}
        }
    };
    tokio::select! {
        _ = until_eof(&mut reader) => {}
        _ = patience => {}
    }
}

/// Writes what the connection's queue holds, in batches. A write that
/// stalls for `write_timeout` (the client is not reading) kicks the
/// connection as a slow consumer; its session queues the `Kicked` frame and
/// closes the queue, and the writer gets as long again to flush it.
pub(crate) async fn write_loop(
    mut w: FrameWriter,
    conn: ConnHandle,
    max_batch: usize,
    write_timeout: Duration,
) {
    let outbox = &conn.outbox;
    let mut batch: Vec<Bytes> = Vec::new();
    while outbox.pop_batch(&mut batch, max_batch).await {
        // What the socket takes at once (the usual case) is written without
        // a future, a timer or an allocation; the rest waits, boxed, so an
        // idle writer holds only its wait for frames.
        crate::metrics::frames_out(batch.len());
        let mut written = Written::default();
        let outcome = match w.try_write_batch(&batch, &mut written) {
            Ok(true) => Ok(()),
            Ok(false) => {
                Box::pin(write_stalled(
                    &mut w,
                    &conn,
                    &batch,
                    &mut written,
                    write_timeout,
                ))
                .await
            }
            Err(e) => Err(e.to_string()),
        };
        if let Err(why) = outcome {
            tracing::debug!(conn = conn.id, why, "writer stops");
            break;
        }
        batch.clear();
        if batch.capacity() > 64 {
            // A burst's batch is not kept by an idle connection.
            batch = Vec::new();
        }
    }
    // Later pushes are refused; the device catches up from its cursors.
    outbox.abandon();
    w.close().await;
}

/// Finishes writing a batch the socket did not take at once, within the
/// write timeout; a first stall kicks the connection and allows one more.
async fn write_stalled(
    w: &mut FrameWriter,
    conn: &ConnHandle,
    batch: &[Bytes],
    written: &mut Written,
    write_timeout: Duration,
) -> Result<(), String> {
    loop {
        match tokio::time::timeout(write_timeout, w.write_rest(batch, written)).await {
            Ok(result) => return result.map_err(|e| e.to_string()),
            Err(_) if conn.is_kicked() => return Err("write timed out after the kick".into()),
            Err(_) => {
                tracing::debug!(conn = conn.id, "slow consumer: writes stalled");
                conn.kick(
                    KickReason::SlowConsumer,
                    kick_message(KickReason::SlowConsumer),
                );
            }
        }
    }
}

impl Session {
    async fn read_loop(&mut self, reader: &mut FrameReader) {
        let login_by = Instant::now() + self.shared.limits.login_deadline;
        let idle = self.shared.limits.heartbeat_interval * 2;
        loop {
            let deadline = if self.caller.is_some() {
                let idle_by = Instant::now() + idle;
                self.token_expiry.map_or(idle_by, |t| t.min(idle_by))
            } else {
                login_by
            };
            let read = tokio::select! {
                biased;
                _ = self.handle.kicked() => {
                    self.send_kicked();
                    return;
                }
                _ = self.shared.shutdown.cancelled() => {
                    self.handle.kick(KickReason::ServerShutdown, "server shutting down");
                    self.send_kicked();
                    return;
                }
                r = tokio::time::timeout_at(deadline, reader.next()) => r,
            };
            let frame = match read {
                Err(_) if self.caller.is_none() => {
                    self.close_with(
                        ErrorCode::LoginTimeout,
                        "no login within the login deadline".into(),
                    )
                    .await;
                    return;
                }
                Err(_) if self.token_expiry.is_some_and(|t| t <= Instant::now()) => {
                    tracing::debug!(peer = %self.peer, "token expired");
                    let reason = KickReason::TokenExpired;
                    self.handle.kick(reason, kick_message(reason));
                    self.send_kicked();
                    return;
                }
                Err(_) => {
                    tracing::debug!(peer = %self.peer, "heartbeat timeout");
                    return;
                }
                Ok(Ok(Some(frame))) => frame,
                Ok(Ok(None)) => return,
                Ok(Err(ReadError::Proto(e))) => {
                    tracing::debug!(peer = %self.peer, error = %e, "framing error");
                    self.close_with(e.code(), e.to_string()).await;
                    return;
                }
                Ok(Err(ReadError::BadMessage(why))) => {
                    self.close_with(ErrorCode::MalformedFrame, why.into()).await;
                    return;
                }
                Ok(Err(ReadError::Io(e))) => {
                    tracing::debug!(peer = %self.peer, error = %e, "read failed");
                    return;
                }
            };
            // Boxed, so the future of an idle connection holds a pointer
            // instead of space for the largest engine call: the frames'
            // handling allocates only while it runs. Measured: 8.2 to 6.3 KiB
            // of server RSS per idle TCP connection (with the rest of this loop
            // kept small: 4.7 to 3.9 KiB).
            if let Flow::Close = Box::pin(self.on_frames(frame, reader)).await {
                return;
            }
        }
    }

    /// The last word before closing. Boxed: an idle connection's future
    /// should not keep room for a reply it sends once, at the end.
    async fn close_with(&self, code: ErrorCode, message: String) {
        Box::pin(self.error(PacketId::NIL, code, message)).await;
    }

    /// Handles `first` and every frame the client pipelined behind it (up
    /// to [`MAX_PIPELINED`]): sends, receipts, typing and signals go to the
    /// engine together ([`Router::exec_many`]), so a connection's
    /// back-to-back sends and receipts share a store commit; anything else
    /// in between is handled on its own, in order, so only one large reply
    /// (a sync or history page) is built at a time.
    async fn on_frames(&mut self, first: Frame, reader: &mut FrameReader) -> Flow {
        let mut run: Vec<(PacketId, Packet)> = Vec::new();
        let mut next = Some(first);
        let mut taken = 1;
        while let Some(frame) = next.take() {
            crate::metrics::frames_in(1);
            // Every frame pays, good or bad, before anything answers it.
            if let Err(not_until) = self.limiter.check() {
                crate::metrics::rate_limited();
                self.run_requests(std::mem::take(&mut run)).await;
                let id = frame.header.packet_id;
                self.error(
                    id,
                    ErrorCode::RateLimited,
                    "request rate exceeded; retry later",
                )
                .await;
                // Nothing more is read until a request is allowed again: a
                // client over its rate waits in TCP back-pressure rather
                // than drawing an error for every frame it sends.
                tokio::time::sleep(not_until.wait_time_from(DefaultClock::default().now())).await;
            } else {
                match self.engine_request(&frame) {
                    Some(packet) if batched(&packet) => {
                        run.push((frame.header.packet_id, packet));
                    }
                    Some(packet) => {
                        // Its reply may be large: it is built, and queued, alone.
                        self.run_requests(std::mem::take(&mut run)).await;
                        self.run_query(frame.header.packet_id, packet).await;
                    }
                    None => {
                        self.run_requests(std::mem::take(&mut run)).await;
                        let logged_in = self.caller.is_some();
                        if let Flow::Close = self.on_frame(frame).await {
                            return Flow::Close;
                        }
                        if !logged_in && self.caller.is_some() {
                            // Logged in: full-size frames from here on.
                            reader.set_max(self.shared.limits.max_inbound_frame);
                        }
                    }
                }
            }
            if taken < MAX_PIPELINED {
                next = reader.try_next();
                taken += 1;
            }
        }
        self.run_requests(run).await;
        Flow::Continue
    }

    /// The packet of a frame that goes straight to the engine: a logged-in
    /// client's well-formed request. Anything else (and any frame that
    /// needs an error answer) is for [`Session::on_frame`].
    fn engine_request(&self, frame: &Frame) -> Option<Packet> {
        self.caller.as_ref()?;
        let packet = Packet::from_frame(frame).ok()?;
        let engine_handles = packet.kind().sender() != Sender::Server
            && !matches!(
                packet,
                Packet::Login(_) | Packet::Ping(_) | Packet::Logout(_)
            );
        engine_handles.then_some(packet)
    }

    /// Answers a frame the protocol does not allow here (malformed, of an
    /// unknown or server-only type, or out of state) with an error. Such frames are budgeted
    /// ([`crate::Limits::max_bad_frames`]); past the budget the connection is
    /// closed with the error as its reason.
    async fn refuse(&mut self, id: PacketId, code: ErrorCode, message: String) -> Flow {
        if self.bad_frames.check().is_err() {
            tracing::debug!(peer = %self.peer, ?code, "too many refused frames; closing");
            let message = format!("{message}; too many refused frames, closing the connection");
            self.close_with(code, message).await;
            return Flow::Close;
        }
        self.error(id, code, message).await;
        Flow::Continue
    }

    /// Runs sends, receipts, typing and signals through the engine together
    /// and answers each.
    async fn run_requests(&mut self, run: Vec<(PacketId, Packet)>) {
        self.run(run, false).await;
    }

    /// Runs one query once the server gives it a turn
    /// ([`crate::Limits::max_concurrent_queries`], first come, first served),
    /// reading nothing from the connection meanwhile. The turn covers the
    /// engine's work only: it is given back before the reply is queued, so
    /// a client that does not read cannot hold it.
    async fn run_query(&mut self, id: PacketId, packet: Packet) {
        self.run(vec![(id, packet)], true).await;
    }

    async fn run(&mut self, run: Vec<(PacketId, Packet)>, query: bool) {
        let Some(caller) = self.caller.clone() else {
            return;
        };
        if run.is_empty() {
            return;
        }
        if run.iter().any(|(_, p)| matches!(p, Packet::Sync(_))) {
            // The sync reads everything stored from here on: pushes paused
            // for this device may flow again.
            self.handle.catch_up();
        }
        let (ids, packets): (Vec<(PacketId, bool)>, Vec<Packet>) = run
            .into_iter()
            .map(|(id, p)| ((id, unanswered(&p)), p))
            .unzip();
        let turn = match query {
            true => self.shared.queries.clone().acquire_owned().await.ok(),
            false => None,
        };
        let router = &self.shared.router;
        let answers = router
            .exec_many(router.engine().handle_many(&caller, packets))
            .await;
        drop(turn);
        for ((id, silent), answer) in ids.into_iter().zip(answers) {
            match answer {
                // Typing and signals have no response.
                Ok(_) if silent => {}
                Ok(reply) => self.send(reply, id).await,
                Err(e) => {
                    if matches!(e, imkit_core::Error::Store { .. }) {
                        tracing::error!(error = %e, user = %caller.user, "store failure");
                    }
                    self.error(id, e.code(), e.to_string()).await;
                }
            }
        }
    }

    async fn on_frame(&mut self, frame: Frame) -> Flow {
        let id = frame.header.packet_id;
        let packet = match Packet::from_frame(&frame) {
            Ok(p) => p,
            Err(e) => return self.refuse(id, e.code(), e.to_string()).await,
        };
        if packet.kind().sender() == Sender::Server {
            let why = format!("{:?} is sent by servers only", packet.kind());
            return self.refuse(id, ErrorCode::UnexpectedPacket, why).await;
        }
        let Some(caller) = self.caller.clone() else {
            return match packet {
                Packet::Login(req) => self.login(id, req).await,
                _ => {
                    self.refuse(id, ErrorCode::NotLoggedIn, "log in first".into())
                        .await
                }
            };
        };
        match packet {
            Packet::Login(_) => {
                let why = "already logged in".into();
                return self.refuse(id, ErrorCode::AlreadyLoggedIn, why).await;
            }
            Packet::Ping(p) => {
                let pong = pb::Pong {
                    client_time_ms: p.client_time_ms,
                    server_time_ms: self.shared.engine.config().clock.now_ms(),
                };
                self.send(Packet::Pong(pong), id).await;
            }
            Packet::Logout(_) => {
                self.send(Packet::LogoutResponse(pb::LogoutResponse {}), id)
                    .await;
                return Flow::Close;
            }
            packet => {
                let silent = unanswered(&packet);
                let router = &self.shared.router;
                match router.exec(router.engine().handle(&caller, packet)).await {
                    Ok(reply) => {
                        if !silent {
                            self.send(reply, id).await;
                        }
                    }
                    Err(e) => {
                        if matches!(e, imkit_core::Error::Store { .. }) {
                            tracing::error!(error = %e, user = %caller.user, "store failure");
                        }
                        self.error(id, e.code(), e.to_string()).await;
                    }
                }
            }
        }
        Flow::Continue
    }

    async fn login(&mut self, id: PacketId, req: pb::LoginRequest) -> Flow {
        let user = match self.shared.auth.identify(&req.token).await {
            Ok(identity) => {
                self.token_expiry = identity.expires_at.map(|at| {
                    let now = self.shared.engine.config().clock.now_ms() / 1000;
                    Instant::now() + Duration::from_secs(at.saturating_sub(now))
                });
                self.handle.set_token_id(&identity.token_id(&req.token));
                identity.user
            }
            Err(e) => {
                crate::metrics::login(self.transport.name(), false);
                self.error(id, e.code(), e.to_string()).await;
                return Flow::Close;
            }
        };
        let device = match DeviceId::parse(&req.device_id) {
            Ok(d) => d,
            Err(e) => {
                self.error(id, e.code(), e.to_string()).await;
                return Flow::Continue;
            }
        };
        let outcome = match self
            .shared
            .lifecycle
            .login(&user, &device, &self.handle)
            .await
        {
            Ok(o) => o,
            Err(e) => {
                self.error(id, e.code(), e.to_string()).await;
                return Flow::Close;
            }
        };
        let node = self.shared.engine.config().node.clone();
        crate::metrics::login(self.transport.name(), true);
        tracing::debug!(%user, %device, peer = %self.peer, platform = req.platform, "login");
        let limits = &self.shared.limits;
        let resp = pb::LoginResponse {
            user_id: user.to_string(),
            heartbeat_interval_ms: u32::try_from(limits.heartbeat_interval.as_millis())
                .unwrap_or(u32::MAX),
            server_time_ms: self.shared.engine.config().clock.now_ms(),
            node_id: node.to_string(),
            max_frame_len: u32::try_from(limits.max_inbound_frame).unwrap_or(u32::MAX),
        };
        self.caller = Some(Caller { user, device });
        self.send(Packet::LoginResponse(resp), id).await;
        match outcome.notice {
            // More waits than is pushed at login: the device pulls it.
            Some(notice) => self.send(Packet::SyncNotice(notice), PacketId::new()).await,
            None => {
                self.shared.router.deliver_all(outcome.pushes).await;
            }
        }
        Flow::Continue
    }

    /// Queues a reply, waiting for room: meanwhile this session reads
    /// nothing, so a client that does not read cannot pile up replies. A
    /// writer that stalls kicks the connection, which ends the wait.
    async fn send(&self, packet: Packet, id: PacketId) {
        let bytes = match packet
            .to_frame(id)
            .to_bytes(self.shared.limits.max_outbound_frame)
        {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "reply too large");
                let err =
                    Packet::error(ErrorCode::Internal, "reply exceeds the maximum frame size");
                match err.to_frame(id).to_bytes(usize::MAX) {
                    Ok(b) => b,
                    Err(_) => return,
                }
            }
        };
        tokio::select! {
            _ = self.handle.outbox.push(bytes) => {}
            _ = self.handle.kicked() => {}
        }
    }

    async fn error(&self, id: PacketId, code: ErrorCode, message: impl Into<String>) {
        self.send(Packet::error(code, message), id).await;
    }

    fn send_kicked(&self) {
        let Some((reason, message)) = self.handle.kick_reason() else {
            return;
        };
        let packet = Packet::Kicked(pb::Kicked {
            reason: reason as i32,
            message,
        });
        if let Ok(bytes) = packet.to_frame(PacketId::new()).to_bytes(usize::MAX) {
            // Past the queue's bounds: room is kept for it.
            let _ = self.handle.outbox.push_control(bytes);
        }
    }

    /// Unregisters the connection and, if it was still the device's current
    /// one, marks the device offline.
    async fn finish(&mut self) {
        let Some(Caller { user, device }) = self.caller.take() else {
            return;
        };
        self.shared
            .lifecycle
            .logout(&user, &device, &self.handle)
            .await;
        tracing::debug!(%user, %device, "session ended");
    }
}

/// Whether a request goes to the engine together with its neighbours:
/// those whose answers are small and whose stores commit together.
fn batched(packet: &Packet) -> bool {
    matches!(
        packet,
        Packet::Send(_) | Packet::Receipt(_) | Packet::Typing(_) | Packet::Signal(_)
    )
}

/// Whether a request goes unanswered when it succeeds: the live-only
/// relays (typing and application signals).
fn unanswered(packet: &Packet) -> bool {
    matches!(packet, Packet::Typing(_) | Packet::Signal(_))
}
