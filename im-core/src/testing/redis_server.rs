//! A Redis for tests (features `testing` and `redis`).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A Redis to run tests against: the one named by
/// `IMKIT_TEST_REDIS_URL`, or a `redis-server` started on a free port
/// and stopped when this is dropped.
#[derive(Debug)]
pub struct TestRedis {
    /// `redis://127.0.0.1:PORT`.
    pub url: String,
    child: Option<Child>,
}

impl TestRedis {
    /// Finds or starts a Redis. Returns `None` (skip the test) only when
    /// none can be had and `CI` is not `true`; under CI it panics
    /// instead, so a Redis test never silently skips there.
    pub fn start() -> Option<TestRedis> {
        if let Ok(url) = std::env::var("IMKIT_TEST_REDIS_URL")
            && !url.is_empty()
        {
            return Some(TestRedis { url, child: None });
        }
        match Self::spawn() {
            Ok(r) => Some(r),
            Err(why) => {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("no Redis for the Redis tests under CI: {why}");
                }
                eprintln!(
                    "skipping Redis test: {why} (set IMKIT_TEST_REDIS_URL or install redis-server)"
                );
                None
            }
        }
    }

    fn spawn() -> Result<TestRedis, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| format!("no free port: {e}"))?;
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start redis-server: {e}"))?;
        let mut redis = TestRedis {
            url: format!("redis://127.0.0.1:{port}"),
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(redis);
            }
            if let Some(Ok(Some(status))) = redis.child.as_mut().map(Child::try_wait) {
                return Err(format!("redis-server exited: {status}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err("redis-server did not start within 10 s".into())
    }

    /// A fresh key namespace, so tests sharing one Redis do not collide.
    pub fn namespace(&self) -> String {
        format!(
            "imkit-test-{}:",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        )
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
