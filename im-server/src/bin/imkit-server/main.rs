//! `imkit-server`: runs an imkit server on the embedded default store
//! (SQLite), or mints a login token with the server's secret.
//!
//! ```text
//! imkit-server                      # serve: TCP :7400, WebSocket :7401, ./imkit.db
//! imkit-server token alice          # print a login token for "alice"
//! imkit-server --help
//! ```

use std::time::Duration;

use clap::Parser;
use imkit_core::EngineConfig;
use imkit_core::auth::JwtAuthenticator;
use imkit_core::model::{NodeId, UserId};
use imkit_core::store::StoreConfig;
use imkit_server::{Limits, Server, ServerError, ServerHandle};

use crate::args::{Cli, Command, FileConfig, LogFormat, PresenceKind, RunArgs, StoreKind};
use crate::backends::{postgres_config, sqlite_config, with_cluster, with_http};
use crate::secret::{IfMissing, login_tokens, secret};

mod args;
mod backends;
mod logging;
mod secret;
mod webhooks;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let file = match args::load_file(cli.config.as_deref()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("imkit-server: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let format = cli
        .log_format
        .or(file.log_format)
        .unwrap_or(LogFormat::Human);
    let level = cli.log_level.clone().or(file.log_level.clone());
    if let Err(e) = logging::init(format, level.as_deref()) {
        eprintln!("imkit-server: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("imkit-server: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(real_main(cli, file)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "imkit-server failed");
            eprintln!("imkit-server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn real_main(cli: Cli, file: FileConfig) -> Result<(), ServerError> {
    let args = match &cli.command {
        Some(Command::Token { user, ttl }) => {
            let user = UserId::parse(user)?;
            let secret = secret(&cli, &file, IfMissing::Refuse)?;
            let jwt = JwtAuthenticator::hs256(secret, imkit_core::Clock::system())?;
            println!("{}", jwt.mint(&user, *ttl)?);
            return Ok(());
        }
        Some(Command::Run(args)) => (**args).clone(),
        None => cli.run.clone(),
    };
    let secret = secret(&cli, &file, IfMissing::Create)?;
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
        shutdown_grace: args
            .shutdown_grace_secs
            .or(file.shutdown_grace_secs)
            .map_or(defaults.shutdown_grace, Duration::from_secs),
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
    builder = with_tls(builder, &args, &file)?;
    if let Some(addr) = args.metrics.clone().or(file.metrics.clone()) {
        builder = with_metrics(builder, addr)?;
    }
    builder = webhooks::with_webhooks(builder, &args, &file)?;
    builder = webhooks::with_push(builder, &args, &file)?;
    let server = builder.bind().await?;
    let handle = server.handle();
    tokio::spawn(reload_on_hangup(handle.clone()));
    tokio::spawn(async move {
        shutdown_signal().await;
        handle.shutdown();
    });
    server.run().await
}

/// TLS on every listener when a certificate and key are given.
#[cfg(feature = "tls")]
fn with_tls(
    builder: imkit_server::ServerBuilder,
    args: &RunArgs,
    file: &FileConfig,
) -> Result<imkit_server::ServerBuilder, ServerError> {
    let cert = args.tls_cert.clone().or(file.tls_cert.clone());
    let key = args.tls_key.clone().or(file.tls_key.clone());
    match (cert, key) {
        (Some(cert), Some(key)) => {
            Ok(builder.tls(imkit_server::TlsOptions::from_pem_files(cert, key)))
        }
        (None, None) => Ok(builder),
        _ => Err(ServerError::Config(
            "TLS needs both tls_cert and tls_key".into(),
        )),
    }
}

#[cfg(not(feature = "tls"))]
fn with_tls(
    builder: imkit_server::ServerBuilder,
    args: &RunArgs,
    file: &FileConfig,
) -> Result<imkit_server::ServerBuilder, ServerError> {
    if args.tls_cert.is_some() || file.tls_cert.is_some() {
        return Err(ServerError::Config(
            "this build has no tls feature; rebuild with --features tls".into(),
        ));
    }
    Ok(builder)
}

#[cfg(feature = "metrics")]
fn with_metrics(
    builder: imkit_server::ServerBuilder,
    addr: String,
) -> Result<imkit_server::ServerBuilder, ServerError> {
    Ok(builder.metrics(addr))
}

#[cfg(not(feature = "metrics"))]
fn with_metrics(
    _: imkit_server::ServerBuilder,
    _: String,
) -> Result<imkit_server::ServerBuilder, ServerError> {
    Err(ServerError::Config(
        "this build has no metrics feature; rebuild with --features metrics".into(),
    ))
}

/// SIGHUP reads the TLS certificate and key again.
async fn reload_on_hangup(handle: ServerHandle) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            #[cfg(feature = "tls")]
            match handle.reload_tls() {
                Ok(true) => {}
                Ok(false) => tracing::info!("SIGHUP: TLS is off, nothing to reload"),
                Err(e) => {
                    tracing::warn!(error = %e, "SIGHUP: TLS reload failed; the old certificate stays")
                }
            }
            #[cfg(not(feature = "tls"))]
            {
                let _ = &handle;
                tracing::info!("SIGHUP: nothing to reload");
            }
        }
    }
    #[cfg(not(unix))]
    let _ = handle;
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
    tracing::info!("shutting down gracefully");
}
