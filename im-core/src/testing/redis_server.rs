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
    /// The port and extra arguments of a server this started.
    own: Option<(u16, Vec<String>)>,
}

impl TestRedis {
    /// Finds or starts a Redis. Returns `None` (skip the test) only when
    /// none can be had and `CI` is not `true`; under CI it panics
    /// instead, so a Redis test never silently skips there.
    pub fn start() -> Option<TestRedis> {
        if let Ok(url) = std::env::var("IMKIT_TEST_REDIS_URL")
            && !url.is_empty()
        {
            return Some(TestRedis {
                url,
                child: None,
                own: None,
            });
        }
        Self::own(&[])
    }

    /// Starts a `redis-server` of the test's own on a free port, with
    /// `extra` arguments (`--appendonly yes`, say), whatever
    /// `IMKIT_TEST_REDIS_URL` says: for tests that restart it or need
    /// settings of their own. `None` and `CI` as for [`TestRedis::start`].
    pub fn own(extra: &[&str]) -> Option<TestRedis> {
        match Self::spawn(extra.iter().map(|s| s.to_string()).collect()) {
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

    fn spawn(extra: Vec<String>) -> Result<TestRedis, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| format!("no free port: {e}"))?;
        let mut redis = TestRedis {
            url: format!("redis://127.0.0.1:{port}"),
            child: None,
            own: Some((port, extra)),
        };
        redis.launch()?;
        Ok(redis)
    }

    /// Starts the server this owns (again), and waits until it answers.
    fn launch(&mut self) -> Result<(), String> {
        let Some((port, extra)) = &self.own else {
            return Err("not a server of the test's own".into());
        };
        let port = *port;
        let mut args: Vec<String> = vec![
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            String::new(),
        ];
        if !extra.iter().any(|a| a == "--appendonly") {
            args.extend(["--appendonly".into(), "no".into()]);
        }
        args.extend(extra.iter().cloned());
        let child = Command::new("redis-server")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start redis-server: {e}"))?;
        self.child = Some(child);
        let redis = self;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(());
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

impl TestRedis {
    /// Kills the server this owns (as a crash would: SIGKILL), so clients
    /// see their connections drop. Panics for a server it does not own.
    pub fn kill(&mut self) {
        assert!(
            self.own.is_some(),
            "only a server of the test's own can be killed"
        );
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the killed server again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        if let Err(e) = self.launch() {
            panic!("redis-server did not come back: {e}");
        }
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
