//! What the server reports through the [`metrics`](https://docs.rs/metrics)
//! facade, and the Prometheus endpoint that serves it (feature `metrics`).
//!
//! Every call here is an empty function without the feature. With it, an
//! embedder's own recorder gets the same series; [`crate::ServerBuilder::metrics`]
//! installs a Prometheus recorder (once per process: two servers in one
//! process report into the same series) and serves `GET /metrics` on an
//! address of its own, plain HTTP, meant for a private network. Gauges of
//! the whole node (logged-in connections, queued bytes) are sampled when
//! scraped, so the per-message paths pay nothing for them. The core's
//! series (messages, deliveries, store commits) are in
//! [`imkit_core::telemetry`]; docs/operations.md lists every series.

/// Connections accepted, by transport (`tcp`, `websocket`).
pub const CONNECTIONS_OPENED: &str = "imkit_connections_opened_total";
/// Connections open now, logged in or not, by transport.
pub const CONNECTIONS_OPEN: &str = "imkit_connections_open";
/// Logged-in connections on this node (sampled when scraped).
pub const SESSIONS: &str = "imkit_sessions";
/// Login attempts, by transport and result (`ok`, `refused`).
pub const LOGINS: &str = "imkit_logins_total";
/// Frames read from clients.
pub const FRAMES_IN: &str = "imkit_frames_in_total";
/// Frames written to clients.
pub const FRAMES_OUT: &str = "imkit_frames_out_total";
/// Bytes waiting in connections' outbound queues on this node (sampled
/// when scraped).
pub const OUTBOX_BYTES: &str = "imkit_outbox_bytes";
/// Connections closed by the server, by reason (`duplicate_login`,
/// `slow_consumer`, `server_shutdown`, ...).
pub const KICKS: &str = "imkit_kicks_total";
/// Frames refused for exceeding the per-connection request rate.
pub const RATE_LIMITED: &str = "imkit_rate_limited_total";
/// HTTP API requests, by route, method and status.
pub const HTTP_REQUESTS: &str = "imkit_http_requests_total";
/// HTTP API request durations in seconds (histogram), by route.
pub const HTTP_SECONDS: &str = "imkit_http_request_seconds";
/// Cluster bus messages, by direction (`out`, `in`) and kind
/// (`deliver`, `kick`, `revoke`, `check`, `presence`).
pub const BUS_MESSAGES: &str = "imkit_cluster_bus_messages_total";
/// Cluster bus messages dropped because the publish queue was full.
pub const BUS_DROPPED: &str = "imkit_cluster_bus_dropped_total";

/// Webhook events finished, by result (`delivered`: every endpoint took
/// it; `dropped`: given up after the retry period).
pub const WEBHOOK_EVENTS: &str = "imkit_webhook_events_total";
/// Webhook requests, by result (`ok`, `failed`).
pub const WEBHOOK_REQUESTS: &str = "imkit_webhook_requests_total";
/// Webhook request durations in seconds (histogram).
pub const WEBHOOK_SECONDS: &str = "imkit_webhook_request_seconds";
/// Journal events read by the webhook dispatcher and not yet removed.
pub const WEBHOOK_IN_FLIGHT: &str = "imkit_webhook_in_flight";
/// Before-send webhook verdicts (`accept`, `reject`, `rewrite`,
/// `undecided`).
pub const WEBHOOK_VERDICTS: &str = "imkit_webhook_verdicts_total";

/// Push gateway requests of the ready notifier, by result (`ok`,
/// `invalid`: the token was refused and removed, `failed`).
pub const PUSH_REQUESTS: &str = "imkit_push_requests_total";

/// A connection was accepted on `transport`; the guard counts it closed.
pub(crate) fn connection_opened(transport: crate::transport::Kind) -> OpenConnection {
    #[cfg(feature = "metrics")]
    {
        let name = transport.name();
        metrics::counter!(CONNECTIONS_OPENED, "transport" => name).increment(1);
        metrics::gauge!(CONNECTIONS_OPEN, "transport" => name).increment(1.0);
    }
    OpenConnection { transport }
}

/// Counts a connection closed when dropped (one byte in every
/// connection's future).
pub(crate) struct OpenConnection {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    transport: crate::transport::Kind,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        #[cfg(feature = "metrics")]
        metrics::gauge!(CONNECTIONS_OPEN, "transport" => self.transport.name()).decrement(1.0);
    }
}

/// A login on `transport` succeeded or was refused.
pub(crate) fn login(transport: &'static str, ok: bool) {
    #[cfg(feature = "metrics")]
    metrics::counter!(LOGINS, "transport" => transport, "result" => if ok { "ok" } else { "refused" })
        .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (transport, ok);
}

/// `n` frames were read from a client.
#[inline]
pub(crate) fn frames_in(n: usize) {
    #[cfg(feature = "metrics")]
    metrics::counter!(FRAMES_IN).increment(n as u64);
    #[cfg(not(feature = "metrics"))]
    let _ = n;
}

/// `n` frames were written to a client.
#[inline]
pub(crate) fn frames_out(n: usize) {
    #[cfg(feature = "metrics")]
    metrics::counter!(FRAMES_OUT).increment(n as u64);
    #[cfg(not(feature = "metrics"))]
    let _ = n;
}

/// A connection was kicked for `reason`.
pub(crate) fn kick(reason: imkit_proto::pb::KickReason) {
    #[cfg(feature = "metrics")]
    {
        use imkit_proto::pb::KickReason as K;
        let reason = match reason {
            K::DuplicateLogin => "duplicate_login",
            K::Admin => "admin",
            K::TokenRevoked => "token_revoked",
            K::SlowConsumer => "slow_consumer",
            K::ServerShutdown => "server_shutdown",
            K::DeviceRemoved => "device_removed",
            K::TokenExpired => "token_expired",
            K::Unspecified => "unspecified",
        };
        metrics::counter!(KICKS, "reason" => reason).increment(1);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = reason;
}

/// A frame was refused for the request rate.
pub(crate) fn rate_limited() {
    #[cfg(feature = "metrics")]
    metrics::counter!(RATE_LIMITED).increment(1);
}

/// `n` live message pushes were queued for connections on this node.
#[inline]
pub(crate) fn live_deliveries(n: usize) {
    imkit_core::telemetry::delivered("live", n);
}

/// A cluster bus message went `out` or came `in`.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn bus(direction: &'static str, kind: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(BUS_MESSAGES, "direction" => direction, "kind" => kind).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (direction, kind);
}

/// A cluster bus message was dropped (publish queue full).
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn bus_dropped() {
    #[cfg(feature = "metrics")]
    metrics::counter!(BUS_DROPPED).increment(1);
}

/// A webhook event finished: `delivered` or `dropped`.
#[cfg_attr(not(feature = "webhooks"), allow(dead_code))]
pub(crate) fn webhook_event(result: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(WEBHOOK_EVENTS, "result" => result).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = result;
}

/// A webhook request ended after `took`.
#[cfg_attr(not(feature = "webhooks"), allow(dead_code))]
pub(crate) fn webhook_request(ok: bool, took: std::time::Duration) {
    #[cfg(feature = "metrics")]
    {
        let result = if ok { "ok" } else { "failed" };
        metrics::counter!(WEBHOOK_REQUESTS, "result" => result).increment(1);
        metrics::histogram!(WEBHOOK_SECONDS).record(took.as_secs_f64());
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (ok, took);
}

/// `n` events are read and not yet removed.
#[cfg_attr(not(feature = "webhooks"), allow(dead_code))]
pub(crate) fn webhook_in_flight(n: usize) {
    #[cfg(feature = "metrics")]
    metrics::gauge!(WEBHOOK_IN_FLIGHT).set(n as f64);
    #[cfg(not(feature = "metrics"))]
    let _ = n;
}

/// The before-send webhook decided `verdict`.
#[cfg_attr(not(feature = "webhooks"), allow(dead_code))]
pub(crate) fn webhook_verdict(verdict: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(WEBHOOK_VERDICTS, "verdict" => verdict).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = verdict;
}

/// A push gateway request ended with `result`.
#[cfg_attr(not(feature = "webhooks"), allow(dead_code))]
pub(crate) fn push_request(result: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(PUSH_REQUESTS, "result" => result).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = result;
}
