//! A PostgreSQL for tests (features `testing` and `postgres`).

use crate::store::Stores;
use crate::store::postgres::{PostgresOptions, open_stores};

/// The URL tests use when `IMKIT_TEST_POSTGRES_URL` is not set.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A PostgreSQL to run tests against, the one named by
/// `IMKIT_TEST_POSTGRES_URL` (else [`DEFAULT_URL`]), with a schema of the
/// test's own that is dropped when this is.
#[derive(Debug)]
pub struct TestPostgres {
    /// `postgres://…`.
    pub url: String,
    /// The test's schema.
    pub schema: String,
}

impl TestPostgres {
    /// Connects and names a fresh schema. Returns `None` (skip the test)
    /// only when no PostgreSQL answers and `CI` is not `true`; under CI it
    /// panics instead, so a PostgreSQL test never silently skips there.
    pub async fn start() -> Option<TestPostgres> {
        let url = std::env::var("IMKIT_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| DEFAULT_URL.into());
        if let Err(why) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("no PostgreSQL at {url} for the PostgreSQL tests under CI: {why}");
            }
            eprintln!("skipping PostgreSQL test: {url}: {why} (set IMKIT_TEST_POSTGRES_URL)");
            return None;
        }
        let schema = format!(
            "imkit_test_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        Some(TestPostgres { url, schema })
    }

    /// Options for this test's schema.
    pub fn options(&self) -> PostgresOptions {
        PostgresOptions::default().in_schema(self.schema.clone())
    }

    /// Every store, in this test's schema.
    pub async fn stores(&self) -> Stores {
        match open_stores(&self.url, self.options()).await {
            Ok(s) => s,
            Err(e) => panic!("postgres stores at {}: {e}", self.url),
        }
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        // Drop may run on the runtime's thread: clean up on a thread of its own.
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&url, tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        .await;
                }
            });
        });
        let _ = cleanup.join();
    }
}
