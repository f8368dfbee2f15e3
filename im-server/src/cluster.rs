//! Cluster mode over Redis (feature `redis`): several nodes, one set of
//! users.
//!
//! Each node subscribes to its own pub/sub channel. A node with a push for
//! a device connected elsewhere publishes the encoded frame (once per
//! destination node) on that node's channel; the receiving node puts it in
//! the connection's queue. Pub/sub only *wakes*: the message is already in
//! the shared store, so a lost wake-up costs latency, not data: the
//! client's seq-gap check and sync fetch it, a node that resubscribes asks
//! its connections to sync (`SyncNotice { CHECK }`), and the SDK pulls on
//! its own after a quiet spell.
//!
//! Each node also refreshes a liveness key (`p:alive:{node}`, TTL
//! [`ClusterOptions::liveness_ttl`], default 5 s). Presence lookups ignore
//! and remove entries of a node whose key has expired, so a node killed
//! outright stops receiving traffic within one TTL; its users catch up from
//! their cursors when they reconnect elsewhere.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::StreamExt;
use imkit_core::Target;
use imkit_core::model::{DeviceId, NodeId, UserId};
use imkit_core::store::redis::{RedisDb, RedisPresence, check_record, stores_on};
use imkit_core::store::{PresenceStore as _, Stores};
use imkit_proto::pb::KickReason;
use tokio_util::sync::CancellationToken;

use crate::ServerError;
use crate::bus::{ClusterBus, LocalNode};

/// Cluster settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClusterOptions {
    /// How long a node counts as alive after its last heartbeat (default
    /// 5 s). It refreshes at a third of this.
    pub liveness_ttl: Duration,
    /// When Redis is the record too: start even if its persistence
    /// settings could lose acknowledged messages (default false: refuse,
    /// saying which setting to change).
    pub accept_redis_data_loss: bool,
    /// Envelopes (wake-ups, kicks, revocations) waiting to be published
    /// (default 8,192). Past it, or past
    /// [`ClusterOptions::publish_queue_bytes`], a wake-up is dropped (its
    /// receivers catch up by sync) and a kick or revocation waits for room.
    pub publish_queue: usize,
    /// Bytes of envelopes waiting to be published (default 16 MiB).
    pub publish_queue_bytes: usize,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            liveness_ttl: Duration::from_secs(5),
            accept_redis_data_loss: false,
            publish_queue: 8_192,
            publish_queue_bytes: 16 << 20,
        }
    }
}

/// The Redis cluster bus of one node.
pub struct RedisCluster {
    db: RedisDb,
    presence: RedisPresence,
    node: NodeId,
    options: ClusterOptions,
    /// Envelopes for the publisher, with the bytes they hold.
    outgoing: tokio::sync::mpsc::Sender<(NodeId, Bytes)>,
    waiting: tokio::sync::Mutex<Option<tokio::sync::mpsc::Receiver<(NodeId, Bytes)>>>,
    queued_bytes: AtomicUsize,
    dropped: AtomicU64,
}

impl std::fmt::Debug for RedisCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCluster")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// Connects a node to a cluster: returns the stores every node shares
/// (`record`, or this Redis's own when `None`, with Redis's presence and
/// liveness in place of the record's presence) and this node's bus. Redis
/// as the record must pass [`check_record`] unless the options accept the
/// loss.
pub async fn connect(
    url: &str,
    namespace: &str,
    node: NodeId,
    options: ClusterOptions,
    record: Option<Stores>,
) -> Result<(Stores, std::sync::Arc<RedisCluster>), ServerError> {
    let db = RedisDb::connect(url, namespace).await?;
    let presence = RedisPresence::with_liveness(db.clone());
    let mut stores = match record {
        Some(stores) => stores,
        None => {
            check_record(&db, options.accept_redis_data_loss).await?;
            stores_on(db.clone())
        }
    };
    // Mark this node alive before it takes any login.
    presence.heartbeat(&node, options.liveness_ttl).await?;
    stores.presence = std::sync::Arc::new(presence.clone());
    let (outgoing, waiting) = tokio::sync::mpsc::channel(options.publish_queue.max(1));
    let bus = RedisCluster {
        db,
        presence,
        node,
        options,
        outgoing,
        waiting: tokio::sync::Mutex::new(Some(waiting)),
        queued_bytes: AtomicUsize::new(0),
        dropped: AtomicU64::new(0),
    };
    Ok((stores, std::sync::Arc::new(bus)))
}

impl RedisCluster {
    fn channel(&self, node: &NodeId) -> String {
        format!("{}bus:{}", self.db.namespace(), node)
    }

    /// Queues a wake-up for the publisher without waiting: a sender's
    /// SENT never waits for Redis. A full queue (Redis slow or away) drops
    /// it; its receivers catch up by sync.
    fn publish_soon(&self, node: &NodeId, payload: Bytes) {
        let len = payload.len();
        // Counted before it is queued: the publisher may take it at once.
        let before = self.queued_bytes.fetch_add(len, Ordering::Relaxed);
        if before.saturating_add(len) > self.options.publish_queue_bytes
            || self.outgoing.try_send((node.clone(), payload)).is_err()
        {
            self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            crate::metrics::bus_dropped();
            let n = self.dropped.fetch_add(1, Ordering::Relaxed);
            if (n + 1).is_power_of_two() {
                tracing::warn!(%node, dropped = n + 1, "cluster publish queue full; wake-ups dropped, receivers will sync");
            }
        }
    }

    /// Queues an envelope that must not be dropped (a kick, a revocation),
    /// waiting for room.
    async fn publish_surely(&self, node: &NodeId, payload: Bytes) {
        let len = payload.len();
        self.queued_bytes.fetch_add(len, Ordering::Relaxed);
        if self.outgoing.send((node.clone(), payload)).await.is_err() {
            self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
        }
    }

    /// Publishes queued envelopes, every one waiting at once in one
    /// pipeline (one round trip), until `shutdown`.
    async fn publisher(&self, shutdown: &CancellationToken) {
        let Some(mut waiting) = self.waiting.lock().await.take() else {
            return;
        };
        let mut batch = Vec::new();
        loop {
            let n = tokio::select! {
                _ = shutdown.cancelled() => return,
                n = waiting.recv_many(&mut batch, 256) => n,
            };
            if n == 0 {
                return;
            }
            let mut pipe = redis::pipe();
            let mut bytes = 0;
            for (node, payload) in batch.drain(..) {
                bytes += payload.len();
                pipe.publish(self.channel(&node), payload.as_ref()).ignore();
            }
            let mut c = self.db.connection();
            if let Err(e) = pipe.query_async::<()>(&mut c).await {
                tracing::warn!(error = %e, envelopes = n, "cluster publish failed; receivers will sync");
            }
            self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
        }
    }

    async fn heartbeats(&self, shutdown: CancellationToken) {
        let every = self.options.liveness_ttl / 3;
        loop {
            if let Err(e) = self
                .presence
                .heartbeat(&self.node, self.options.liveness_ttl)
                .await
            {
                tracing::warn!(error = %e, "liveness heartbeat failed");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    /// Records every local connection's presence (again); returns how many
    /// were recorded.
    async fn announce(&self, local: &LocalNode) -> usize {
        let connected = local.connected();
        let recorded =
            futures::stream::iter(connected)
                .map(|(user, device)| async move {
                    self.presence.online(&user, &device, &self.node).await
                })
                .buffer_unordered(64)
                .filter(|r| futures::future::ready(r.is_ok()))
                .count()
                .await;
        if let Err(e) = self
            .presence
            .heartbeat(&self.node, self.options.liveness_ttl)
            .await
        {
            tracing::warn!(error = %e, "liveness heartbeat failed");
        }
        recorded
    }

    /// Receives this node's channel until the stream fails or `shutdown`.
    /// Once subscribed again after a failure (`recovering`), every local
    /// connection is asked to sync: wake-ups published meanwhile are lost.
    async fn subscribe(
        &self,
        local: &LocalNode,
        shutdown: &CancellationToken,
        recovering: bool,
    ) -> Result<(), String> {
        let mut pubsub = self.db.pubsub().await.map_err(|e| e.to_string())?;
        pubsub
            .subscribe(self.channel(&self.node))
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(node = %self.node, "cluster bus subscribed");
        if recovering {
            // Redis may have restarted empty: record this node's
            // connections again, then have them pull what the gap hid.
            let announced = self.announce(local).await;
            let asked = local.check_all();
            tracing::info!(
                announced,
                asked,
                "presence recorded again and local connections asked to sync after the bus gap"
            );
        }
        let mut messages = pubsub.on_message();
        loop {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                m = messages.next() => m.ok_or("pub/sub stream ended")?,
            };
            let payload: Vec<u8> = msg.get_payload().map_err(|e| e.to_string())?;
            match decode(Bytes::from(payload)) {
                Some(Envelope::Deliver { targets, frame }) => {
                    crate::metrics::bus("in", "deliver");
                    local.deliver(&targets, frame);
                }
                Some(Envelope::Kick {
                    user,
                    device,
                    reason,
                }) => {
                    crate::metrics::bus("in", "kick");
                    local.kick(&user, &device, reason);
                }
                Some(Envelope::Revoke { user, token_id }) => {
                    crate::metrics::bus("in", "revoke");
                    local.revoke(&user, &token_id);
                }
                None => tracing::warn!("malformed cluster envelope dropped"),
            }
        }
    }
}

#[async_trait]
impl ClusterBus for RedisCluster {
    async fn forward(&self, node: &NodeId, frame: Bytes, targets: Vec<Target>) {
        crate::metrics::bus("out", "deliver");
        self.publish_soon(node, encode_deliver(&targets, &frame));
    }

    async fn kick(&self, node: &NodeId, target: Target, reason: KickReason) {
        crate::metrics::bus("out", "kick");
        self.publish_surely(node, encode_kick(&target.user, &target.device, reason))
            .await;
    }

    async fn revoke(&self, node: &NodeId, user: &UserId, token_id: &str) {
        crate::metrics::bus("out", "revoke");
        self.publish_surely(node, encode_revoke(user, token_id))
            .await;
    }

    fn node(&self) -> Option<&NodeId> {
        Some(&self.node)
    }

    async fn serve(&self, local: LocalNode, shutdown: CancellationToken) {
        let beats = self.heartbeats(shutdown.clone());
        let subscriber = async {
            let mut backoff = Duration::from_millis(100);
            let mut recovering = false;
            while !shutdown.is_cancelled() {
                match self.subscribe(&local, &shutdown, recovering).await {
                    Ok(()) => return,
                    Err(e) => {
                        recovering = true;
                        tracing::warn!(error = %e, "cluster subscription lost; resubscribing");
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        // At most a heartbeat apart, so presence settles
                        // within two heartbeats of Redis coming back.
                        backoff = (backoff * 2).min(self.options.liveness_ttl / 3);
                    }
                }
            }
        };
        tokio::join!(beats, subscriber, self.publisher(&shutdown));
    }
}

// ───────────────────────────── Envelope ─────────────────────────────
//
// deliver: 0x01, u32 n, n × (str user, str device), frame bytes (the rest)
// kick:    0x02, str user, str device, i32 reason
// revoke:  0x03, str user, str token id
// str:     u16 length, UTF-8 bytes

enum Envelope {
    Deliver {
        targets: Vec<Target>,
        frame: Bytes,
    },
    Kick {
        user: UserId,
        device: DeviceId,
        reason: KickReason,
    },
    Revoke {
        user: UserId,
        token_id: String,
    },
}

fn put_str(b: &mut BytesMut, s: &str) {
    let bytes = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    b.put_u16(bytes.len() as u16);
    b.put_slice(bytes);
}

fn get_str(b: &mut Bytes) -> Option<String> {
    if b.remaining() < 2 {
        return None;
    }
    let n = b.get_u16() as usize;
    if b.remaining() < n {
        return None;
    }
    String::from_utf8(b.split_to(n).to_vec()).ok()
}

fn encode_deliver(targets: &[Target], frame: &Bytes) -> Bytes {
    let mut b = BytesMut::with_capacity(16 + targets.len() * 24 + frame.len());
    b.put_u8(1);
    b.put_u32(targets.len() as u32);
    for t in targets {
        put_str(&mut b, t.user.as_str());
        put_str(&mut b, t.device.as_str());
    }
    b.put_slice(frame);
    b.freeze()
}

fn encode_kick(user: &UserId, device: &DeviceId, reason: KickReason) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(2);
    put_str(&mut b, user.as_str());
    put_str(&mut b, device.as_str());
    b.put_i32(reason as i32);
    b.freeze()
}

fn encode_revoke(user: &UserId, token_id: &str) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(3);
    put_str(&mut b, user.as_str());
    put_str(&mut b, token_id);
    b.freeze()
}

fn decode(mut b: Bytes) -> Option<Envelope> {
    if !b.has_remaining() {
        return None;
    }
    match b.get_u8() {
        1 => {
            if b.remaining() < 4 {
                return None;
            }
            let n = b.get_u32() as usize;
            let mut targets = Vec::with_capacity(n.min(b.remaining() / 4));
            for _ in 0..n {
                let user = UserId::new(get_str(&mut b)?);
                let device = DeviceId::new(get_str(&mut b)?);
                targets.push(Target {
                    user,
                    device,
                    // Anything arriving here is for this node.
                    node: NodeId::from(""),
                });
            }
            if !b.has_remaining() {
                return None;
            }
            Some(Envelope::Deliver { targets, frame: b })
        }
        2 => {
            let user = UserId::new(get_str(&mut b)?);
            let device = DeviceId::new(get_str(&mut b)?);
            if b.remaining() < 4 {
                return None;
            }
            let reason = KickReason::try_from(b.get_i32()).unwrap_or(KickReason::Unspecified);
            Some(Envelope::Kick {
                user,
                device,
                reason,
            })
        }
        3 => {
            let user = UserId::new(get_str(&mut b)?);
            let token_id = get_str(&mut b)?;
            Some(Envelope::Revoke { user, token_id })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_roundtrip_and_garbage_is_rejected() {
        let targets = vec![Target {
            user: UserId::from("bob"),
            device: DeviceId::from("phone"),
            node: NodeId::from("b"),
        }];
        let frame = Bytes::from_static(b"frame-bytes");
        match decode(encode_deliver(&targets, &frame)) {
            Some(Envelope::Deliver {
                targets: t,
                frame: f,
            }) => {
                assert_eq!(t[0].user.as_str(), "bob");
                assert_eq!(t[0].device.as_str(), "phone");
                assert_eq!(f, frame);
            }
            _ => panic!("deliver envelope"),
        }
        match decode(encode_kick(
            &UserId::from("a"),
            &DeviceId::from("d"),
            KickReason::DuplicateLogin,
        )) {
            Some(Envelope::Kick {
                user,
                device,
                reason,
            }) => {
                assert_eq!(
                    (user.as_str(), device.as_str(), reason),
                    ("a", "d", KickReason::DuplicateLogin)
                );
            }
            _ => panic!("kick envelope"),
        }
        match decode(encode_revoke(&UserId::from("a"), "00ff")) {
            Some(Envelope::Revoke { user, token_id }) => {
                assert_eq!((user.as_str(), token_id.as_str()), ("a", "00ff"));
            }
            _ => panic!("revoke envelope"),
        }
        for junk in [&b""[..], &[1], &[1, 0, 0, 0, 9], &[2, 0, 5, b'a'], &[9, 9]] {
            assert!(decode(Bytes::copy_from_slice(junk)).is_none());
        }
    }
}
