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
            StoreConfig::Redis { url, namespace } => {
                super::redis::open_stores(url, namespace).await
            }
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
            StoreConfig::Redis { url, namespace } => write!(f, "redis {url} ({namespace})"),
        }
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
}
