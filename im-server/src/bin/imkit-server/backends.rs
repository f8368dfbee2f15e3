//! The parts a build may leave out: the HTTP API, SQLite, PostgreSQL and
//! the Redis cluster, each from its flags, or a clear error when this
//! build lacks the feature.

use std::path::PathBuf;
use std::time::Duration;

use imkit_core::store::StoreConfig;
use imkit_server::ServerError;

use crate::args::{DurabilityArg, FileConfig, RunArgs};

#[cfg(feature = "http")]
pub(crate) fn with_http(
    builder: imkit_server::ServerBuilder,
    addr: String,
    args: &RunArgs,
    file: &FileConfig,
) -> Result<imkit_server::ServerBuilder, ServerError> {
    use imkit_server::http::HttpOptions;
    let (blobs, where_) = blob_store(args, file)?;
    let defaults = HttpOptions::default();
    let options = HttpOptions {
        admin_key: args.admin_key.clone().or(file.admin_key.clone()),
        allowed_file_types: args
            .file_types
            .as_ref()
            .or(file.file_types.as_ref())
            .map(|l| {
                l.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
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
    tracing::info!(files = %where_, "http api enabled");
    Ok(builder.blob_store(blobs).http(addr, options))
}

/// Where uploaded files go: `--files-url`, else the `--files` folder.
#[cfg(feature = "http")]
fn blob_store(
    args: &RunArgs,
    file: &FileConfig,
) -> Result<(std::sync::Arc<dyn imkit_core::blob::BlobStore>, String), ServerError> {
    let url = args.files_url.clone().or(file.files_url.clone());
    let dir = args
        .files
        .clone()
        .or(file.files.clone())
        .unwrap_or_else(|| PathBuf::from("imkit-files"));
    #[cfg(feature = "object-store")]
    {
        use imkit_core::blob::ObjectBlobStore;
        let store = match &url {
            Some(url) => ObjectBlobStore::from_url(url, ObjectBlobStore::env_options())?,
            None => ObjectBlobStore::local(&dir)?,
        };
        let shown = url.unwrap_or_else(|| dir.display().to_string());
        Ok((std::sync::Arc::new(store), shown))
    }
    #[cfg(not(feature = "object-store"))]
    {
        if url.is_some() {
            return Err(ServerError::Config(
                "--files-url needs the object-store feature".into(),
            ));
        }
        let store = imkit_core::blob::DirBlobStore::open(&dir)?;
        Ok((std::sync::Arc::new(store), dir.display().to_string()))
    }
}

#[cfg(not(feature = "http"))]
pub(crate) fn with_http(
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
pub(crate) fn sqlite_config(args: &RunArgs, file: &FileConfig) -> Result<StoreConfig, ServerError> {
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
pub(crate) fn sqlite_config(_: &RunArgs, _: &FileConfig) -> Result<StoreConfig, ServerError> {
    Err(ServerError::Config(
        "this build has no sqlite feature; use --store memory".into(),
    ))
}

#[cfg(feature = "postgres")]
pub(crate) fn postgres_config(
    args: &RunArgs,
    file: &FileConfig,
) -> Result<StoreConfig, ServerError> {
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
pub(crate) fn postgres_config(_: &RunArgs, _: &FileConfig) -> Result<StoreConfig, ServerError> {
    Err(ServerError::Config(
        "this build has no postgres feature; rebuild with --features postgres".into(),
    ))
}

#[cfg(feature = "redis")]
pub(crate) fn with_cluster(
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
pub(crate) fn with_cluster(
    _: imkit_server::ServerBuilder,
    _: &RunArgs,
    _: &FileConfig,
) -> Result<imkit_server::ServerBuilder, ServerError> {
    Err(ServerError::Config(
        "this build has no redis feature; rebuild with --features redis".into(),
    ))
}
