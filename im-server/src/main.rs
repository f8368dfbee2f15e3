//! `imkit-server`: runs an imkit server on the embedded default store
//! (SQLite), or mints a login token with the server's secret.
//!
//! ```text
//! imkit-server                      # serve: TCP :7400, WebSocket :7401, ./imkit.db
//! imkit-server token alice          # print a login token for "alice"
//! imkit-server --help
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use imkit_core::EngineConfig;
use imkit_core::auth::{JwtAlgorithm, JwtAuthenticator};
use imkit_core::model::{NodeId, UserId};
use imkit_core::store::StoreConfig;
use imkit_server::{Limits, Server, ServerError};
use serde::Deserialize;

#[derive(Parser, Debug)]
#[command(
    name = "imkit-server",
    version,
    about = "An imkit instant-messaging server"
)]
struct Cli {
    /// A TOML file with any of the options below (flags win over the file).
    #[arg(long, global = true, env = "IMKIT_CONFIG")]
    config: Option<PathBuf>,
    /// The token secret. Default: read from --secret-file, created there on first use.
    #[arg(long, global = true, env = "IMKIT_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Where the token secret is kept when --secret is not given.
    #[arg(long, global = true)]
    secret_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve (the default).
    Run(Box<RunArgs>),
    /// Print a login token for a user, signed with the server's secret.
    Token {
        /// The user id.
        user: String,
        /// Validity in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl: u64,
    },
}

#[derive(clap::Args, Debug, Default, Clone)]
struct RunArgs {
    /// TCP listen address [default: 0.0.0.0:7400].
    #[arg(long)]
    tcp: Option<String>,
    /// WebSocket listen address [default: 0.0.0.0:7401]; "off" disables it.
    #[arg(long)]
    ws: Option<String>,
    /// Store backend [default: sqlite].
    #[arg(long, value_enum)]
    store: Option<StoreKind>,
    /// SQLite database file [default: ./imkit.db].
    #[arg(long)]
    db: Option<PathBuf>,
    /// SQLite durability [default: full].
    #[arg(long, value_enum)]
    durability: Option<DurabilityArg>,
    /// This node's id [default: node-1].
    #[arg(long)]
    node: Option<String>,
    /// Most concurrent chat connections [default: what the open-file
    /// limit allows after the HTTP share and 256 for the server itself].
    #[arg(long)]
    max_connections: Option<usize>,
    /// Largest client frame in bytes [default: 262144].
    #[arg(long)]
    max_frame: Option<usize>,
    /// Seconds a connection has to log in [default: 10].
    #[arg(long)]
    login_deadline_secs: Option<u64>,
    /// Heartbeat interval in seconds [default: 30].
    #[arg(long)]
    heartbeat_secs: Option<u64>,
    /// Requests per second per connection [default: 500].
    #[arg(long)]
    rate: Option<u32>,
    /// Request burst per connection [default: 1000].
    #[arg(long)]
    burst: Option<u32>,
    /// Frames queued per connection [default: 1024].
    #[arg(long)]
    queue_len: Option<usize>,
    /// Bytes queued per connection [default: 524288].
    #[arg(long)]
    queue_bytes: Option<usize>,
    /// Queued bytes past which live message pushes pause until the device
    /// syncs [default: 262144].
    #[arg(long)]
    live_push_bytes: Option<usize>,
    /// Largest frame accepted before login [default: 4096].
    #[arg(long)]
    max_prelogin_frame: Option<usize>,
    /// Refused frames (malformed, unknown, out of state) a connection may
    /// send in a burst before it is closed; one more each second
    /// [default: 32].
    #[arg(long)]
    max_bad_frames: Option<u32>,
    /// Queries (sync, history, lists: every request but sends, receipts
    /// and typing) the server runs at once; more wait in arrival order
    /// [default: 8].
    #[arg(long)]
    max_concurrent_queries: Option<usize>,
    /// Recall window in seconds [default: 120].
    #[arg(long)]
    recall_window_secs: Option<u64>,
    /// Where presence and cluster wake-ups live: "memory" (one node) or
    /// "redis" (a cluster; needs a shared record: --store postgres or
    /// redis) [default: memory; redis with --store redis].
    #[arg(long, value_enum)]
    presence: Option<PresenceKind>,
    /// PostgreSQL URL, for --store postgres
    /// [default: postgres://postgres@127.0.0.1:5432/imkit].
    #[arg(long, env = "IMKIT_POSTGRES_URL", hide_env_values = true)]
    postgres_url: Option<String>,
    /// PostgreSQL schema the tables live in; nodes of one cluster share it
    /// [default: imkit].
    #[arg(long)]
    postgres_schema: Option<String>,
    /// With Redis as the record (--store redis): start even if Redis's
    /// persistence settings could lose acknowledged messages (anything but
    /// appendonly yes with appendfsync always) [default: refuse].
    #[arg(long)]
    redis_accept_data_loss: bool,
    /// Redis URL, for --store redis or --presence redis [default: redis://127.0.0.1:6379].
    #[arg(long, env = "IMKIT_REDIS_URL")]
    redis_url: Option<String>,
    /// Key namespace in Redis; nodes of one cluster share it [default: imkit:].
    #[arg(long)]
    redis_namespace: Option<String>,
    /// How long a silent node counts as alive, in milliseconds [default: 5000].
    #[arg(long)]
    liveness_ttl_ms: Option<u64>,
    /// Serve the HTTP API on this address, e.g. 127.0.0.1:7480 [default: off].
    #[arg(long)]
    http: Option<String>,
    /// The key admin HTTP routes require [default: none, admin routes off].
    #[arg(long, env = "IMKIT_ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,
    /// Directory for uploaded files [default: ./imkit-files].
    #[arg(long)]
    files: Option<PathBuf>,
    /// Largest file upload in bytes [default: 16777216].
    #[arg(long)]
    max_file_bytes: Option<usize>,
    /// Most HTTP connections at once [default: 4096, or an eighth of the
    /// open-file budget if less].
    #[arg(long)]
    http_max_connections: Option<usize>,
    /// Seconds an HTTP client has to send request headers, and that an
    /// idle kept-alive connection stays open [default: 10].
    #[arg(long)]
    http_header_timeout_secs: Option<u64>,
    /// HTTP requests handled at once [default: 256].
    #[arg(long)]
    http_max_requests: Option<usize>,
    /// Check login JWTs with this public key (PEM) instead of the shared
    /// secret: your backend signs them with the private key, and this
    /// server cannot mint any [default: off, HS256 with the secret].
    #[arg(long)]
    jwt_public_key: Option<PathBuf>,
    /// The public key's algorithm: eddsa or rs256 [default: eddsa].
    #[arg(long)]
    jwt_algorithm: Option<String>,
    /// Require login JWTs to carry this `aud` [default: aud not checked].
    #[arg(long)]
    jwt_audience: Option<String>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum StoreKind {
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
enum PresenceKind {
    /// In this process: a single node.
    Memory,
    /// In Redis, with the cluster bus: several nodes.
    Redis,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum DurabilityArg {
    /// Survives power loss (fsync per commit batch).
    Full,
    /// Survives a process crash; fewer fsyncs.
    Normal,
}

/// The config file: the same names as the flags, with underscores.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(all(feature = "sqlite", feature = "redis")), allow(dead_code))]
struct FileConfig {
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    tcp: Option<String>,
    ws: Option<String>,
    store: Option<StoreKind>,
    db: Option<PathBuf>,
    durability: Option<DurabilityArg>,
    node: Option<String>,
    max_connections: Option<usize>,
    max_frame: Option<usize>,
    login_deadline_secs: Option<u64>,
    heartbeat_secs: Option<u64>,
    rate: Option<u32>,
    burst: Option<u32>,
    queue_len: Option<usize>,
    queue_bytes: Option<usize>,
    live_push_bytes: Option<usize>,
    max_prelogin_frame: Option<usize>,
    max_bad_frames: Option<u32>,
    max_concurrent_queries: Option<usize>,
    recall_window_secs: Option<u64>,
    presence: Option<PresenceKind>,
    postgres_url: Option<String>,
    postgres_schema: Option<String>,
    redis_accept_data_loss: Option<bool>,
    redis_url: Option<String>,
    redis_namespace: Option<String>,
    liveness_ttl_ms: Option<u64>,
    http: Option<String>,
    admin_key: Option<String>,
    files: Option<PathBuf>,
    max_file_bytes: Option<usize>,
    http_max_connections: Option<usize>,
    http_header_timeout_secs: Option<u64>,
    http_max_requests: Option<usize>,
    jwt_public_key: Option<PathBuf>,
    jwt_algorithm: Option<String>,
    jwt_audience: Option<String>,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("imkit-server: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(real_main(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("imkit-server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn load_file(path: Option<&Path>) -> Result<FileConfig, ServerError> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| ServerError::Config(format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))
}

/// How login tokens are checked: HS256 JWTs with the shared secret (and
/// imkit's older `v1.` tokens), or JWTs signed elsewhere and checked with a
/// public key; with an audience if one is configured.
fn login_tokens(
    args: &RunArgs,
    file: &FileConfig,
    secret: Vec<u8>,
    clock: imkit_core::Clock,
) -> Result<JwtAuthenticator, ServerError> {
    let jwt = match args.jwt_public_key.clone().or(file.jwt_public_key.clone()) {
        Some(path) => {
            let pem = std::fs::read(&path)
                .map_err(|e| ServerError::Config(format!("cannot read {}: {e}", path.display())))?;
            let alg = match args
                .jwt_algorithm
                .clone()
                .or(file.jwt_algorithm.clone())
                .unwrap_or_else(|| "eddsa".into())
                .to_ascii_lowercase()
                .as_str()
            {
                "eddsa" => JwtAlgorithm::EdDsa,
                "rs256" => JwtAlgorithm::Rs256,
                other => {
                    return Err(ServerError::Config(format!(
                        "--jwt-algorithm {other}: expected eddsa or rs256"
                    )));
                }
            };
            tracing::info!(key = %path.display(), ?alg, "login tokens checked with a public key");
            JwtAuthenticator::public_key(alg, &pem, clock)?
        }
        None => JwtAuthenticator::hs256(secret, clock)?,
    };
    Ok(
        match args.jwt_audience.clone().or(file.jwt_audience.clone()) {
            Some(aud) => jwt.with_audience(&aud),
            None => jwt,
        },
    )
}

/// The secret from the flag, the file's `secret`, or the secret file
/// (created with 32 random bytes on first use).
fn secret(cli: &Cli, file: &FileConfig) -> Result<Vec<u8>, ServerError> {
    if let Some(s) = cli.secret.clone().or_else(|| file.secret.clone()) {
        return Ok(s.into_bytes());
    }
    let path = cli
        .secret_file
        .clone()
        .or_else(|| file.secret_file.clone())
        .unwrap_or_else(|| PathBuf::from("imkit.secret"));
    if path.exists() {
        let s = std::fs::read_to_string(&path)
            .map_err(|e| ServerError::Config(format!("cannot read {}: {e}", path.display())))?;
        if s.trim().is_empty() {
            return Err(ServerError::Config(format!("{} is empty", path.display())));
        }
        return Ok(s.trim().as_bytes().to_vec());
    }
    use rand::Rng;
    let bytes: [u8; 32] = rand::rng().random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&path, &hex)
        .map_err(|e| ServerError::Config(format!("cannot write {}: {e}", path.display())))?;
    tracing::info!(path = %path.display(), "created a new token secret");
    Ok(hex.into_bytes())
}

async fn real_main(cli: Cli) -> Result<(), ServerError> {
    let file = load_file(cli.config.as_deref())?;
    let secret = secret(&cli, &file)?;
    let args = match &cli.command {
        Some(Command::Token { user, ttl }) => {
            let user = UserId::parse(user)?;
            let jwt = JwtAuthenticator::hs256(secret, imkit_core::Clock::system())?;
            println!("{}", jwt.mint(&user, *ttl)?);
            return Ok(());
        }
        Some(Command::Run(args)) => (**args).clone(),
        None => cli.run.clone(),
    };
    let defaults = Limits::default();
    let limits = Limits {
        max_connections: args
            .max_connections
            .or(file.max_connections)
            .or(defaults.max_connections),
        max_inbound_frame: args
            .max_frame
            .or(file.max_frame)
            .unwrap_or(defaults.max_inbound_frame),
        login_deadline: args
            .login_deadline_secs
            .or(file.login_deadline_secs)
            .map_or(defaults.login_deadline, Duration::from_secs),
        heartbeat_interval: args
            .heartbeat_secs
            .or(file.heartbeat_secs)
            .map_or(defaults.heartbeat_interval, Duration::from_secs),
        rate_per_second: args.rate.or(file.rate).unwrap_or(defaults.rate_per_second),
        rate_burst: args.burst.or(file.burst).unwrap_or(defaults.rate_burst),
        queue_len: args
            .queue_len
            .or(file.queue_len)
            .unwrap_or(defaults.queue_len),
        queue_bytes: args
            .queue_bytes
            .or(file.queue_bytes)
            .unwrap_or(defaults.queue_bytes),
        live_push_bytes: args
            .live_push_bytes
            .or(file.live_push_bytes)
            .unwrap_or(defaults.live_push_bytes),
        max_prelogin_frame: args
            .max_prelogin_frame
            .or(file.max_prelogin_frame)
            .unwrap_or(defaults.max_prelogin_frame),
        max_bad_frames: args
            .max_bad_frames
            .or(file.max_bad_frames)
            .unwrap_or(defaults.max_bad_frames),
        max_concurrent_queries: args
            .max_concurrent_queries
            .or(file.max_concurrent_queries)
            .unwrap_or(defaults.max_concurrent_queries),
        ..defaults
    };
    let engine_defaults = EngineConfig::default();
    let engine_config = EngineConfig {
        node: NodeId::parse(
            &args
                .node
                .clone()
                .or(file.node.clone())
                .unwrap_or_else(|| "node-1".into()),
        )?,
        recall_window_ms: args
            .recall_window_secs
            .or(file.recall_window_secs)
            .map_or(engine_defaults.recall_window_ms, |s| s * 1000),
        ..engine_defaults
    };
    let mut builder = Server::builder();
    let store = args.store.or(file.store).unwrap_or(StoreKind::Sqlite);
    let default_presence = if store == StoreKind::Redis {
        PresenceKind::Redis
    } else {
        PresenceKind::Memory
    };
    let presence = args.presence.or(file.presence).unwrap_or(default_presence);
    builder = match store {
        StoreKind::Memory => builder.store(StoreConfig::Memory),
        StoreKind::Sqlite => builder.store(sqlite_config(&args, &file)?),
        StoreKind::Postgres => builder.store(postgres_config(&args, &file)?),
        // The Redis record comes with the cluster below.
        StoreKind::Redis => builder,
    };
    builder = match (store, presence) {
        (StoreKind::Redis, PresenceKind::Memory) => {
            return Err(ServerError::Config(
                "--store redis keeps presence in Redis; drop --presence memory".into(),
            ));
        }
        (StoreKind::Memory | StoreKind::Sqlite, PresenceKind::Redis) => {
            return Err(ServerError::Config(format!(
                "--presence redis joins a cluster, whose nodes must share their record; \
                 {store:?} cannot be shared: use --store postgres"
            )));
        }
        (_, PresenceKind::Redis) => with_cluster(builder, &args, &file)?,
        (_, PresenceKind::Memory) => builder,
    };
    let tcp = args
        .tcp
        .clone()
        .or(file.tcp.clone())
        .unwrap_or_else(|| "0.0.0.0:7400".into());
    let ws = args
        .ws
        .clone()
        .or(file.ws.clone())
        .unwrap_or_else(|| "0.0.0.0:7401".into());
    let jwt = login_tokens(&args, &file, secret, engine_config.clock.clone())?;
    builder = builder
        .engine_config(engine_config)
        .jwt(jwt)
        .limits(limits)
        .tcp(tcp);
    if let Some(addr) = args.http.clone().or(file.http.clone()) {
        builder = with_http(builder, addr, &args, &file)?;
    }
    if ws != "off" {
        builder = builder.websocket(ws);
    }
    let server = builder.bind().await?;
    server.run_until(shutdown_signal()).await
}

#[cfg(feature = "http")]
fn with_http(
    builder: imkit_server::ServerBuilder,
    addr: String,
    args: &RunArgs,
    file: &FileConfig,
) -> Result<imkit_server::ServerBuilder, ServerError> {
    use imkit_server::http::HttpOptions;
    let dir = args
        .files
        .clone()
        .or(file.files.clone())
        .unwrap_or_else(|| PathBuf::from("imkit-files"));
    let blobs = imkit_core::blob::DirBlobStore::open(&dir)?;
    let defaults = HttpOptions::default();
    let options = HttpOptions {
        admin_key: args.admin_key.clone().or(file.admin_key.clone()),
        max_file_bytes: args
            .max_file_bytes
            .or(file.max_file_bytes)
            .unwrap_or(defaults.max_file_bytes),
        max_connections: args.http_max_connections.or(file.http_max_connections),
        header_timeout: args
            .http_header_timeout_secs
            .or(file.http_header_timeout_secs)
            .map_or(defaults.header_timeout, Duration::from_secs),
        max_concurrent_requests: args
            .http_max_requests
            .or(file.http_max_requests)
            .unwrap_or(defaults.max_concurrent_requests),
        ..defaults
    };
    if options.admin_key.is_none() {
        tracing::warn!("no admin key: the HTTP admin routes answer 403");
    }
    tracing::info!(files = %dir.display(), "http api enabled");
    Ok(builder
        .blob_store(std::sync::Arc::new(blobs))
        .http(addr, options))
}

#[cfg(not(feature = "http"))]
fn with_http(
    _: imkit_server::ServerBuilder,
    _: String,
    _: &RunArgs,
    _: &FileConfig,
) -> Result<imkit_server::ServerBuilder, ServerError> {
    Err(ServerError::Config(
        "this build has no http feature; rebuild with --features http".into(),
    ))
}

#[cfg(feature = "sqlite")]
fn sqlite_config(args: &RunArgs, file: &FileConfig) -> Result<StoreConfig, ServerError> {
    use imkit_core::store::sqlite::{Durability, SqliteOptions};
    let path = args
        .db
        .clone()
        .or(file.db.clone())
        .unwrap_or_else(|| PathBuf::from("imkit.db"));
    let durability = match args
        .durability
        .or(file.durability)
        .unwrap_or(DurabilityArg::Full)
    {
        DurabilityArg::Full => Durability::Full,
        DurabilityArg::Normal => Durability::Normal,
    };
    Ok(StoreConfig::Sqlite {
        path,
        options: SqliteOptions {
            durability,
            ..SqliteOptions::default()
        },
    })
}

#[cfg(not(feature = "sqlite"))]
fn sqlite_config(_: &RunArgs, _: &FileConfig) -> Result<StoreConfig, ServerError> {
    Err(ServerError::Config(
        "this build has no sqlite feature; use --store memory".into(),
    ))
}

#[cfg(feature = "postgres")]
fn postgres_config(args: &RunArgs, file: &FileConfig) -> Result<StoreConfig, ServerError> {
    use imkit_core::store::postgres::PostgresOptions;
    let url = args
        .postgres_url
        .clone()
        .or(file.postgres_url.clone())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/imkit".into());
    let mut options = PostgresOptions::default();
    if let Some(schema) = args
        .postgres_schema
        .clone()
        .or(file.postgres_schema.clone())
    {
        options = options.in_schema(schema);
    }
    Ok(StoreConfig::Postgres { url, options })
}

#[cfg(not(feature = "postgres"))]
fn postgres_config(_: &RunArgs, _: &FileConfig) -> Result<StoreConfig, ServerError> {
    Err(ServerError::Config(
        "this build has no postgres feature; rebuild with --features postgres".into(),
    ))
}

#[cfg(feature = "redis")]
fn with_cluster(
    builder: imkit_server::ServerBuilder,
    args: &RunArgs,
    file: &FileConfig,
) -> Result<imkit_server::ServerBuilder, ServerError> {
    let url = args
        .redis_url
        .clone()
        .or(file.redis_url.clone())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let namespace = args
        .redis_namespace
        .clone()
        .or(file.redis_namespace.clone())
        .unwrap_or_else(|| "imkit:".into());
    let mut options = imkit_server::cluster::ClusterOptions::default();
    options.liveness_ttl = args
        .liveness_ttl_ms
        .or(file.liveness_ttl_ms)
        .map_or(Duration::from_secs(5), Duration::from_millis);
    options.accept_redis_data_loss =
        args.redis_accept_data_loss || file.redis_accept_data_loss.unwrap_or(false);
    Ok(builder.redis_cluster(url, namespace, options))
}

#[cfg(not(feature = "redis"))]
fn with_cluster(
    _: imkit_server::ServerBuilder,
    _: &RunArgs,
    _: &FileConfig,
) -> Result<imkit_server::ServerBuilder, ServerError> {
    Err(ServerError::Config(
        "this build has no redis feature; rebuild with --features redis".into(),
    ))
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down");
}
