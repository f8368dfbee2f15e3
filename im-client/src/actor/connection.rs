//! The actor's timers and the connection's life: delivered receipts,
//! heartbeats, the timed pull, request deadlines, losing the connection,
//! reconnecting with backoff (and a fresh token when the old one expired),
//! and shutting down.

use imkit_proto::{Packet, PacketId, pb};
use tokio::time::Instant;

use super::*;

impl Actor {
    pub(super) async fn on_timers(&mut self) {
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

    pub(super) fn expire_requests(&mut self) {
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
    pub(super) async fn lost(&mut self, why: &str) {
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

    pub(super) fn schedule_reconnect(&mut self) {
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

    pub(super) async fn reconnect(&mut self) {
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
        match transport::connect(&self.endpoint).await {
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

    pub(super) fn fail_outbox(&mut self, err: impl Fn() -> ClientError) {
        for (_, item) in std::mem::take(&mut self.outbox) {
            for w in item.waiters {
                let _ = w.send(Err(err()));
            }
        }
        self.outbox_by_packet.clear();
    }

    pub(super) async fn shutdown(&mut self) {
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
