//! What the actor does with frames from the server: answers paired with
//! their requests, pushes put in order ([`crate::ordering`]) and handed to
//! the application, and the catch-up steps they call for (sync pages, gap
//! fills, delivered receipts).

use imkit_proto::{ErrorCode, Packet, PacketId, pb};
use tokio::time::Instant;

use super::*;

impl Actor {
    pub(super) async fn on_frame(&mut self, frame: imkit_proto::Frame) {
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
            Packet::Signal(x) => self.emit(Event::Signal(x)).await,
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

    pub(super) async fn on_send_answer(&mut self, order: u64, packet: Packet) {
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
            Packet::Error(e)
                if ErrorCode::from_u32(e.code).is_retryable()
                    && self
                        .outbox
                        .get(&order)
                        .is_some_and(|i| i.retries < self.options.send_retries) =>
            {
                let at = Instant::now() + self.send_backoff(order);
                if let Some(item) = self.outbox.get_mut(&order) {
                    item.in_flight = false;
                    item.retries += 1;
                    item.not_before = Some(at);
                }
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

    pub(super) async fn on_answer(&mut self, pending: Pending, packet: Packet) {
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

    pub(super) async fn on_message(&mut self, m: pb::Message) {
        self.reset_idle_sync();
        let mut ready = Vec::new();
        let need = self.convs.pushed(m, &mut ready);
        self.deliver(ready).await;
        self.act(need).await;
    }

    /// Hands messages to the application, in order, and schedules their
    /// delivered receipts.
    pub(super) async fn deliver(&mut self, ready: Vec<pb::Message>) {
        if ready.is_empty() {
            return;
        }
        self.schedule_ack();
        for m in ready {
            self.emit(Event::Message(m)).await;
        }
    }

    pub(super) fn schedule_ack(&mut self) {
        if self.ack_at.is_none() {
            self.ack_at = Some(Instant::now() + self.options.ack_delay);
        }
    }

    /// How long a send waits before its next retry: the retry delay,
    /// doubled per earlier retry, capped, ±20%.
    fn send_backoff(&self, order: u64) -> Duration {
        let retries = self.outbox.get(&order).map_or(0, |i| i.retries);
        let base = self
            .options
            .retry_delay
            .saturating_mul(1u32 << retries.min(16))
            .min(self.options.retry_max_delay.max(self.options.retry_delay));
        let jitter: f64 = rand::rng().random_range(0.8..1.2);
        base.mul_f64(jitter)
    }

    /// The sync page out failed: ask again after the retry delay.
    pub(super) fn retry_sync(&mut self) {
        self.sync.lost();
        self.sync_retry = true;
        let at = Instant::now() + self.options.retry_delay;
        self.retry_at = Some(self.retry_at.map_or(at, |r| r.min(at)));
    }

    pub(super) fn reset_idle_sync(&mut self) {
        self.idle_sync_at = self.options.idle_sync.map(|every| {
            // ±20% so a fleet of clients started together does not pull
            // together.
            let jitter: f64 = rand::rng().random_range(0.8..1.2);
            Instant::now() + every.mul_f64(jitter)
        });
    }

    pub(super) async fn act(&mut self, need: Need) {
        match need {
            Need::Nothing => {}
            Need::Sync => self.want_sync().await,
            Need::Fill { conversation, from } => self.fill(conversation, from).await,
        }
    }

    /// Asks for the messages after `from` in a conversation with a gap.
    pub(super) async fn fill(&mut self, conversation: String, from: u64) {
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
    pub(super) async fn want_sync(&mut self) {
        if self.online() && self.sync.want() {
            self.send_sync().await;
        }
    }

    /// Sends a page request of the sync round. Cursors name only the
    /// conversations where the application got further than the server
    /// has recorded; elsewhere the server resumes from its own.
    pub(super) async fn send_sync(&mut self) {
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
}
