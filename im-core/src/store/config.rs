//! [`StoreConfig`]: which backend a server stores in, and its settings, as
//! one value that opens a [`Stores`]. Embedders and the `imkit-server`
//! binary say what they want here and never build a backend themselves.

#[cfg(feature = "sqlite")]
use std::path::PathBuf;

use super::Stores;
use crate::Result;

/// Which stores to open, and how.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum StoreConfig {
    /// Everything in memory: fast, and gone when the process ends.
    #[default]
    Memory,
    /// One SQLite database file (feature `sqlite`): the durable default
    /// of a single server.
    #[cfg(feature = "sqlite")]
    Sqlite {
        /// The database file; created if missing.
        path: PathBuf,
        /// Durability, pool sizes and queue bounds.
        options: super::sqlite::SqliteOptions,
    },
    /// A Redis server shared by the nodes of a cluster (feature `redis`).
    #[cfg(feature = "redis")]
    Redis {
        /// `redis://host:port/db`.
        url: String,
        /// Key prefix; the nodes of one cluster share it.
        namespace: String,
        /// Open even if Redis's persistence settings could lose what it
        /// acknowledged (see [`super::redis::check_record`]); default false.
        accept_data_loss: bool,
    },
    /// A PostgreSQL database (feature `postgres`): the durable record a
    /// cluster's nodes share. Presence is in memory unless the server puts
    /// Redis's beside it.
    #[cfg(feature = "postgres")]
    Postgres {
        /// `postgres://user@host:port/db`.
        url: String,
        /// Schema, pool sizes and queue bounds.
        options: super::postgres::PostgresOptions,
    },
}

impl StoreConfig {
    /// SQLite at `path` with default options.
    #[cfg(feature = "sqlite")]
    pub fn sqlite(path: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig::Sqlite {
            path: path.into(),
            options: super::sqlite::SqliteOptions::default(),
        }
    }

    /// Redis at `url`, keys under `namespace`.
    #[cfg(feature = "redis")]
    pub fn redis(url: impl Into<String>, namespace: impl Into<String>) -> StoreConfig {
        StoreConfig::Redis {
            url: url.into(),
            namespace: namespace.into(),
            accept_data_loss: false,
        }
    }

    /// PostgreSQL at `url` with default options.
    #[cfg(feature = "postgres")]
    pub fn postgres(url: impl Into<String>) -> StoreConfig {
        StoreConfig::Postgres {
            url: url.into(),
            options: super::postgres::PostgresOptions::default(),
        }
    }

    /// Opens the stores. SQLite opens (and migrates) its file, Redis
    /// connects; an error says which and why.
    pub async fn open(&self) -> Result<Stores> {
        match self {
            StoreConfig::Memory => Ok(Stores::memory()),
            #[cfg(feature = "sqlite")]
            StoreConfig::Sqlite { path, options } => {
                let (path, options) = (path.clone(), options.clone());
                // Opening migrates and may read a large file: off the runtime.
                tokio::task::spawn_blocking(move || super::sqlite::open_stores(path, options))
                    .await
                    .map_err(|e| crate::Error::store("sqlite open", e))?
            }
            #[cfg(feature = "redis")]
            StoreConfig::Redis {
                url,
                namespace,
                accept_data_loss,
            } => {
                let db = super::redis::RedisDb::connect(url, namespace).await?;
                super::redis::check_record(&db, *accept_data_loss).await?;
                Ok(super::redis::stores_on(db))
            }
            #[cfg(feature = "postgres")]
            StoreConfig::Postgres { url, options } => {
                super::postgres::open_stores(url, options.clone()).await
            }
        }
    }

    /// Whether several servers can share this record (a cluster's nodes
    /// must): Redis and PostgreSQL can, memory and SQLite cannot.
    pub fn is_shared(&self) -> bool {
        match self {
            StoreConfig::Memory => false,
            #[cfg(feature = "sqlite")]
            StoreConfig::Sqlite { .. } => false,
            #[cfg(feature = "redis")]
            StoreConfig::Redis { .. } => true,
            #[cfg(feature = "postgres")]
            StoreConfig::Postgres { .. } => true,
        }
    }

    /// Whether what is stored survives a restart of the process.
    pub fn is_durable(&self) -> bool {
        !matches!(self, StoreConfig::Memory)
    }
}

impl std::fmt::Display for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreConfig::Memory => write!(f, "memory"),
            #[cfg(feature = "sqlite")]
            StoreConfig::Sqlite { path, options } => {
                write!(f, "sqlite {} ({:?})", path.display(), options.durability)
            }
            #[cfg(feature = "redis")]
            StoreConfig::Redis { url, namespace, .. } => write!(f, "redis {url} ({namespace})"),
            #[cfg(feature = "postgres")]
            StoreConfig::Postgres { url, options } => {
                write!(f, "postgres {} (schema {})", redact(url), options.schema)
            }
        }
    }
}

/// `url` without its password, for logs.
#[cfg(feature = "postgres")]
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_opens_and_says_it_is_not_durable() {
        let c = StoreConfig::default();
        assert!(!c.is_durable());
        assert_eq!(c.to_string(), "memory");
        c.open().await.expect("memory");
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn sqlite_opens_its_file_and_a_bad_path_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = StoreConfig::sqlite(dir.path().join("a.db"));
        assert!(c.is_durable());
        c.open().await.expect("sqlite");
        assert!(dir.path().join("a.db").exists());
        let bad = StoreConfig::sqlite(dir.path().join("no/such/dir/a.db"));
        assert!(bad.open().await.is_err());
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn a_postgres_password_stays_out_of_the_logs() {
        let c = StoreConfig::postgres("postgres://imkit:hunter2@db:5432/chat");
        assert!(c.is_durable() && c.is_shared());
        let shown = c.to_string();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("imkit:***@db:5432/chat"), "{shown}");
    }
}
