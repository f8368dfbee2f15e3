//! The command line and the config file: every option, its flag, its
//! config-file key (the same name with underscores) and its default.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};
use imkit_server::ServerError;
use serde::Deserialize;

#[derive(Parser, Debug)]
#[command(
    name = "imkit-server",
    version,
    about = "An imkit instant-messaging server"
)]
pub(crate) struct Cli {
    /// A TOML file with any of the options below (flags win over the file).
    #[arg(long, global = true, env = "IMKIT_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// The token secret. Default: read from --secret-file, created there on first use.
    #[arg(long, global = true, env = "IMKIT_SECRET", hide_env_values = true)]
    pub(crate) secret: Option<String>,
    /// Where the token secret is kept when --secret is not given; the
    /// server creates it (mode 0600) on first start
    /// [default: ./imkit.secret].
    #[arg(long, global = true)]
    pub(crate) secret_file: Option<PathBuf>,
    /// Log format on stderr [default: human].
    #[arg(long, global = true, value_enum)]
    pub(crate) log_format: Option<LogFormat>,
    /// Log level or filter, e.g. "info" or "imkit_server=debug,info"
    /// [default: RUST_LOG, else info].
    #[arg(long, global = true)]
    pub(crate) log_level: Option<String>,
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    #[command(flatten)]
    pub(crate) run: RunArgs,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Serve (the default).
    Run(Box<RunArgs>),
    /// Print a login token for a user, signed with the server's secret
    /// (read from the same config, flags and secret file as the server;
    /// never created here).
    Token {
        /// The user id.
        user: String,
        /// Validity in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl: u64,
    },
}

#[derive(clap::Args, Debug, Default, Clone)]
pub(crate) struct RunArgs {
    /// TCP listen address [default: 0.0.0.0:7400].
    #[arg(long)]
    pub(crate) tcp: Option<String>,
    /// WebSocket listen address [default: 0.0.0.0:7401]; "off" disables it.
    #[arg(long)]
    pub(crate) ws: Option<String>,
    /// Store backend [default: sqlite].
    #[arg(long, value_enum)]
    pub(crate) store: Option<StoreKind>,
    /// SQLite database file [default: ./imkit.db].
    #[arg(long)]
    pub(crate) db: Option<PathBuf>,
    /// SQLite durability [default: full].
    #[arg(long, value_enum)]
    pub(crate) durability: Option<DurabilityArg>,
    /// This node's id [default: node-1].
    #[arg(long)]
    pub(crate) node: Option<String>,
    /// Most concurrent chat connections [default: what the open-file
    /// limit allows after the HTTP share and 256 for the server itself].
    #[arg(long)]
    pub(crate) max_connections: Option<usize>,
    /// Largest client frame in bytes [default: 262144].
    #[arg(long)]
    pub(crate) max_frame: Option<usize>,
    /// Seconds a connection has to log in [default: 10].
    #[arg(long)]
    pub(crate) login_deadline_secs: Option<u64>,
    /// Heartbeat interval in seconds [default: 30].
    #[arg(long)]
    pub(crate) heartbeat_secs: Option<u64>,
    /// Requests per second per connection [default: 500].
    #[arg(long)]
    pub(crate) rate: Option<u32>,
    /// Request burst per connection [default: 1000].
    #[arg(long)]
    pub(crate) burst: Option<u32>,
    /// Frames queued per connection [default: 1024].
    #[arg(long)]
    pub(crate) queue_len: Option<usize>,
    /// Bytes queued per connection [default: 524288].
    #[arg(long)]
    pub(crate) queue_bytes: Option<usize>,
    /// Queued bytes past which live message pushes pause until the device
    /// syncs [default: 262144].
    #[arg(long)]
    pub(crate) live_push_bytes: Option<usize>,
    /// Largest frame accepted before login [default: 4096].
    #[arg(long)]
    pub(crate) max_prelogin_frame: Option<usize>,
    /// Refused frames (malformed, unknown, out of state) a connection may
    /// send in a burst before it is closed; one more each second
    /// [default: 32].
    #[arg(long)]
    pub(crate) max_bad_frames: Option<u32>,
    /// Queries (sync, history, lists: every request but sends, receipts
    /// and typing) the server runs at once; more wait in arrival order
    /// [default: 8].
    #[arg(long)]
    pub(crate) max_concurrent_queries: Option<usize>,
    /// Recall window in seconds [default: 120].
    #[arg(long)]
    pub(crate) recall_window_secs: Option<u64>,
    /// Where presence and cluster wake-ups live: "memory" (one node) or
    /// "redis" (a cluster; needs a shared record: --store postgres or
    /// redis) [default: memory; redis with --store redis].
    #[arg(long, value_enum)]
    pub(crate) presence: Option<PresenceKind>,
    /// PostgreSQL URL, for --store postgres
    /// [default: postgres://postgres@127.0.0.1:5432/imkit].
    #[arg(long, env = "IMKIT_POSTGRES_URL", hide_env_values = true)]
    pub(crate) postgres_url: Option<String>,
    /// PostgreSQL schema the tables live in; nodes of one cluster share it
    /// [default: imkit].
    #[arg(long)]
    pub(crate) postgres_schema: Option<String>,
    /// With Redis as the record (--store redis): start even if Redis's
    /// persistence settings could lose acknowledged messages (anything but
    /// appendonly yes with appendfsync always) [default: refuse].
    #[arg(long)]
    pub(crate) redis_accept_data_loss: bool,
    /// Redis URL, for --store redis or --presence redis [default: redis://127.0.0.1:6379].
    #[arg(long, env = "IMKIT_REDIS_URL")]
    pub(crate) redis_url: Option<String>,
    /// Key namespace in Redis; nodes of one cluster share it [default: imkit:].
    #[arg(long)]
    pub(crate) redis_namespace: Option<String>,
    /// How long a silent node counts as alive, in milliseconds [default: 5000].
    #[arg(long)]
    pub(crate) liveness_ttl_ms: Option<u64>,
    /// PEM certificate chain: with --tls-key, every listener (TCP, WebSocket,
    /// HTTP) speaks TLS; SIGHUP or a change to either file reloads them
    /// [default: off].
    #[arg(long, requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9464
    /// [default: off].
    #[arg(long)]
    pub(crate) metrics: Option<String>,
    /// Seconds a graceful shutdown (SIGTERM, SIGINT) waits for connections
    /// to flush before closing them [default: 5].
    #[arg(long)]
    pub(crate) shutdown_grace_secs: Option<u64>,
    /// Serve the HTTP API on this address, e.g. 127.0.0.1:7480 [default: off].
    #[arg(long)]
    pub(crate) http: Option<String>,
    /// The key admin HTTP routes require [default: none, admin routes off].
    #[arg(long, env = "IMKIT_ADMIN_KEY", hide_env_values = true)]
    pub(crate) admin_key: Option<String>,
    /// Directory for uploaded files; cluster nodes may share one
    /// [default: ./imkit-files].
    #[arg(long)]
    pub(crate) files: Option<PathBuf>,
    /// Keep uploaded files at this URL instead of --files: file:///path,
    /// or s3://bucket/prefix, gs://... and az://... in builds with those
    /// features (settings from AWS_*, GOOGLE_* and AZURE_* variables)
    /// [default: off].
    #[arg(long)]
    pub(crate) files_url: Option<String>,
    /// Content types uploads may have, comma-separated, e.g.
    /// image/*,video/mp4,application/pdf; others get 415 [default: any].
    #[arg(long)]
    pub(crate) file_types: Option<String>,
    /// Largest file upload in bytes [default: 16777216].
    #[arg(long)]
    pub(crate) max_file_bytes: Option<usize>,
    /// Most HTTP connections at once [default: 4096, or an eighth of the
    /// open-file budget if less].
    #[arg(long)]
    pub(crate) http_max_connections: Option<usize>,
    /// Seconds an HTTP client has to send request headers, and that an
    /// idle kept-alive connection stays open [default: 10].
    #[arg(long)]
    pub(crate) http_header_timeout_secs: Option<u64>,
    /// HTTP requests handled at once [default: 256].
    #[arg(long)]
    pub(crate) http_max_requests: Option<usize>,
    /// Check login JWTs with this public key (PEM) instead of the shared
    /// secret: your backend signs them with the private key, and this
    /// server cannot mint any [default: off, HS256 with the secret].
    #[arg(long)]
    pub(crate) jwt_public_key: Option<PathBuf>,
    /// The public key's algorithm: eddsa or rs256 [default: eddsa].
    #[arg(long)]
    pub(crate) jwt_algorithm: Option<String>,
    /// Require login JWTs to carry this `aud` [default: aud not checked].
    #[arg(long)]
    pub(crate) jwt_audience: Option<String>,
    /// Post events as signed JSON to this URL (docs/webhooks.md)
    /// [default: off].
    #[arg(long, requires = "webhook_secret")]
    pub(crate) webhook_url: Option<String>,
    /// The key webhook requests are signed with (HMAC-SHA256).
    #[arg(long, env = "IMKIT_WEBHOOK_SECRET", hide_env_values = true)]
    pub(crate) webhook_secret: Option<String>,
    /// Which events to post, comma-separated: message, recall, receipt,
    /// group, contact, login, logout, or all [default: all].
    #[arg(long)]
    pub(crate) webhook_events: Option<String>,
    /// Ask this URL about every send before it is stored (accept, reject
    /// or rewrite; signed with --webhook-secret) [default: off].
    #[arg(long, requires = "webhook_secret")]
    pub(crate) before_send_url: Option<String>,
    /// Milliseconds the before-send URL has to answer [default: 1000].
    #[arg(long)]
    pub(crate) before_send_timeout_ms: Option<u64>,
    /// What a send does when the before-send URL fails: open (goes
    /// through) or closed (refused, retryable) [default: open].
    #[arg(long)]
    pub(crate) before_send_failure: Option<FailArg>,
    /// Send FCM devices' notifications to this URL (FCM's HTTP v1 send
    /// URL, or a gateway's) [default: off].
    #[arg(long)]
    pub(crate) push_fcm_url: Option<String>,
    /// Bearer key for --push-fcm-url.
    #[arg(long, env = "IMKIT_PUSH_FCM_KEY", hide_env_values = true)]
    pub(crate) push_fcm_key: Option<String>,
    /// Send APNs devices' notifications to {URL}/3/device/{token} (an
    /// HTTP/1.1 gateway to APNs) [default: off].
    #[arg(long, requires = "push_apns_topic")]
    pub(crate) push_apns_url: Option<String>,
    /// The app's bundle id, sent as apns-topic.
    #[arg(long)]
    pub(crate) push_apns_topic: Option<String>,
    /// Bearer key for --push-apns-url.
    #[arg(long, env = "IMKIT_PUSH_APNS_KEY", hide_env_values = true)]
    pub(crate) push_apns_key: Option<String>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum FailArg {
    /// The send goes through unchecked.
    Open,
    /// The send is refused with a retryable error.
    Closed,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StoreKind {
    /// Durable, embedded (the default).
    Sqlite,
    /// In memory: fast, gone on restart.
    Memory,
    /// PostgreSQL: the durable record a cluster's nodes share.
    Postgres,
    /// Redis as the record (it must run with appendonly yes and
    /// appendfsync always, or --redis-accept-data-loss).
    Redis,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PresenceKind {
    /// In this process: a single node.
    Memory,
    /// In Redis, with the cluster bus: several nodes.
    Redis,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DurabilityArg {
    /// Survives power loss (fsync per commit batch).
    Full,
    /// Survives a process crash; fewer fsyncs.
    Normal,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// One readable line per event (colours only on a terminal).
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The config file: the same names as the flags, with underscores.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(all(feature = "sqlite", feature = "redis")), allow(dead_code))]
pub(crate) struct FileConfig {
    pub(crate) secret: Option<String>,
    pub(crate) secret_file: Option<PathBuf>,
    pub(crate) log_format: Option<LogFormat>,
    pub(crate) log_level: Option<String>,
    pub(crate) tls_cert: Option<PathBuf>,
    pub(crate) tls_key: Option<PathBuf>,
    pub(crate) metrics: Option<String>,
    pub(crate) shutdown_grace_secs: Option<u64>,
    pub(crate) tcp: Option<String>,
    pub(crate) ws: Option<String>,
    pub(crate) store: Option<StoreKind>,
    pub(crate) db: Option<PathBuf>,
    pub(crate) durability: Option<DurabilityArg>,
    pub(crate) node: Option<String>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) max_frame: Option<usize>,
    pub(crate) login_deadline_secs: Option<u64>,
    pub(crate) heartbeat_secs: Option<u64>,
    pub(crate) rate: Option<u32>,
    pub(crate) burst: Option<u32>,
    pub(crate) queue_len: Option<usize>,
    pub(crate) queue_bytes: Option<usize>,
    pub(crate) live_push_bytes: Option<usize>,
    pub(crate) max_prelogin_frame: Option<usize>,
    pub(crate) max_bad_frames: Option<u32>,
    pub(crate) max_concurrent_queries: Option<usize>,
    pub(crate) recall_window_secs: Option<u64>,
    pub(crate) presence: Option<PresenceKind>,
    pub(crate) postgres_url: Option<String>,
    pub(crate) postgres_schema: Option<String>,
    pub(crate) redis_accept_data_loss: Option<bool>,
    pub(crate) redis_url: Option<String>,
    pub(crate) redis_namespace: Option<String>,
    pub(crate) liveness_ttl_ms: Option<u64>,
    pub(crate) http: Option<String>,
    pub(crate) admin_key: Option<String>,
    pub(crate) files: Option<PathBuf>,
    pub(crate) files_url: Option<String>,
    pub(crate) file_types: Option<String>,
    pub(crate) max_file_bytes: Option<usize>,
    pub(crate) http_max_connections: Option<usize>,
    pub(crate) http_header_timeout_secs: Option<u64>,
    pub(crate) http_max_requests: Option<usize>,
    pub(crate) jwt_public_key: Option<PathBuf>,
    pub(crate) jwt_algorithm: Option<String>,
    pub(crate) jwt_audience: Option<String>,
    pub(crate) webhook_url: Option<String>,
    pub(crate) webhook_secret: Option<String>,
    pub(crate) webhook_events: Option<String>,
    pub(crate) before_send_url: Option<String>,
    pub(crate) before_send_timeout_ms: Option<u64>,
    pub(crate) before_send_failure: Option<FailArg>,
    pub(crate) push_fcm_url: Option<String>,
    pub(crate) push_fcm_key: Option<String>,
    pub(crate) push_apns_url: Option<String>,
    pub(crate) push_apns_topic: Option<String>,
    pub(crate) push_apns_key: Option<String>,
}

pub(crate) fn load_file(path: Option<&Path>) -> Result<FileConfig, ServerError> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| ServerError::Config(format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))
}
