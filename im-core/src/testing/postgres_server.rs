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

/// A PostgreSQL server of the test's own, in a temporary directory on a
/// free port, for tests that crash and restart it. Made with the machine's
/// `initdb` and `pg_ctl` (Debian's `postgresql` package), run as the
/// `postgres` user when the test runs as root. Stopped and removed on drop.
#[derive(Debug)]
pub struct OwnPostgres {
    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub url: String,
    dir: std::path::PathBuf,
    bin: std::path::PathBuf,
    port: u16,
    as_postgres: bool,
}

impl OwnPostgres {
    /// Makes and starts one. `None` (skip) when PostgreSQL's programs are
    /// missing and `CI` is not `true`; under CI it panics instead.
    pub fn start() -> Option<OwnPostgres> {
        match Self::make() {
            Ok(pg) => Some(pg),
            Err(why) => {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("cannot run a PostgreSQL of the test's own under CI: {why}");
                }
                eprintln!("skipping test: cannot run a PostgreSQL of its own: {why}");
                None
            }
        }
    }

    fn make() -> Result<OwnPostgres, String> {
        let mut versions: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|e| format!("/usr/lib/postgresql: {e} (apt-get install postgresql)"))?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("initdb").exists())
            .collect();
        versions.sort();
        let bin = versions
            .pop()
            .ok_or("no initdb under /usr/lib/postgresql")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| format!("no free port: {e}"))?;
        let dir = std::env::temp_dir().join(format!(
            "imkit-pg-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let as_postgres = run("id", &["-u"], false).is_ok_and(|uid| uid.trim() == "0");
        let pg = OwnPostgres {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            dir,
            bin,
            port,
            as_postgres,
        };
        if as_postgres {
            run("chown", &["postgres", &pg.dir_str()], false)?;
        }
        pg.ctl(
            "initdb",
            &[
                "-D",
                &pg.data(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        )?;
        pg.start_server()?;
        Ok(pg)
    }

    fn dir_str(&self) -> String {
        self.dir.to_string_lossy().into_owned()
    }

    fn data(&self) -> String {
        self.dir.join("data").to_string_lossy().into_owned()
    }

    fn ctl(&self, program: &str, args: &[&str]) -> Result<String, String> {
        let path = self.bin.join(program).to_string_lossy().into_owned();
        if self.as_postgres {
            let mut all = vec!["-u", "postgres", "--", path.as_str()];
            all.extend_from_slice(args);
            run("runuser", &all, true)
        } else {
            run(&path, args, true)
        }
    }

    fn start_server(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            self.dir_str()
        );
        let log = self.dir.join("log").to_string_lossy().into_owned();
        self.ctl(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-w",
                "-o",
                &options,
                "start",
            ],
        )
        .map(drop)
    }

    /// Kills the server as a crash would (`pg_ctl stop -m immediate`: no
    /// checkpoint, recovery from the log at the next start).
    pub fn crash(&self) {
        if let Err(e) = self.ctl("pg_ctl", &["-D", &self.data(), "-m", "immediate", "stop"]) {
            panic!("pg_ctl stop: {e}");
        }
    }

    /// Starts it again after [`OwnPostgres::crash`].
    pub fn start_again(&self) {
        if let Err(e) = self.start_server() {
            panic!("pg_ctl start: {e}");
        }
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = self.ctl("pg_ctl", &["-D", &self.data(), "-m", "immediate", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs a program; its stdout, or why it failed.
fn run(program: &str, args: &[&str], quiet_stdin: bool) -> Result<String, String> {
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
    if quiet_stdin {
        cmd.stdin(std::process::Stdio::null());
    }
    let out = cmd.output().map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
