//! The files in deploy/ against the real binary: the systemd unit's
//! `ExecStart` with deploy/imkit.toml (its paths moved into a temporary
//! directory and its ports to free ones), the unit's `ExecReload`, and a
//! stop with the unit's `KillSignal`. Along the way: the secret file is
//! created 0600, logs are JSON on stderr with no colour codes, `token`
//! prints only the token and never invents a secret, `/readyz` and
//! `/metrics` answer, and SIGTERM sends `Kicked { SERVER_SHUTDOWN }` and
//! exits 0 within the grace period.
#![cfg(all(feature = "http", feature = "metrics"))]

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use imkit_proto::pb::KickReason;
use imkit_proto::{Frame, Packet, PacketId, pb};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_imkit-server");
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A `Key=value` line of the unit.
fn unit_value<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("deploy/imkit.service has no {key}="))
}

/// deploy/imkit.toml with its state directory at `dir` and free ports,
/// written to `dir`; returns its path and the HTTP, TCP and metrics ports.
fn config_in(dir: &Path) -> (std::path::PathBuf, u16, u16, u16) {
    let text = std::fs::read_to_string(format!("{ROOT}/deploy/imkit.toml")).expect("imkit.toml");
    let (tcp, ws, http, metrics) = (free_port(), free_port(), free_port(), free_port());
    let text = text
        .replace("/var/lib/imkit", &dir.display().to_string())
        .replace("0.0.0.0:7400", &format!("127.0.0.1:{tcp}"))
        .replace("0.0.0.0:7401", &format!("127.0.0.1:{ws}"))
        .replace("0.0.0.0:7480", &format!("127.0.0.1:{http}"))
        .replace("127.0.0.1:9464", &format!("127.0.0.1:{metrics}"));
    let path = dir.join("imkit.toml");
    std::fs::write(&path, text).expect("write config");
    (path, http, tcp, metrics)
}

async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let r = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.ok()?))
}

async fn next_packet(stream: &mut TcpStream, buf: &mut BytesMut) -> Option<Packet> {
    loop {
        if let Ok(Some(f)) = Frame::decode(buf, 1 << 24) {
            return Packet::from_frame(&f).ok();
        }
        match tokio::time::timeout(Duration::from_secs(10), stream.read_buf(buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn the_systemd_unit_runs_reloads_and_stops_gracefully() {
    let unit =
        std::fs::read_to_string(format!("{ROOT}/deploy/imkit.service")).expect("imkit.service");
    let state = tempfile::tempdir().expect("tempdir");
    let (config, http, tcp, metrics) = config_in(state.path());

    // ExecStart, word for word, with the installed paths swapped for ours.
    let exec: Vec<String> = unit_value(&unit, "ExecStart")
        .split_whitespace()
        .map(|w| match w {
            "/usr/local/bin/imkit-server" => BINARY.to_owned(),
            "/etc/imkit/imkit.toml" => config.display().to_string(),
            other => other.to_owned(),
        })
        .collect();
    assert_eq!(exec[0], BINARY, "ExecStart runs the installed binary");
    assert_eq!(
        unit_value(&unit, "WorkingDirectory"),
        "/var/lib/imkit",
        "the unit runs in its state directory"
    );
    let mut child = Command::new(&exec[0])
        .args(&exec[1..])
        .current_dir(state.path())
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ExecStart");
    let pid = child.id().expect("pid");
    let stderr = child.stderr.take().expect("stderr");
    let log_lines = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut all = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            all.push(line);
        }
        all
    });
    let mut ready = false;
    for _ in 0..400 {
        if let Some((200, _)) = get(http, "/readyz").await {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(ready, "/readyz never answered 200");

    // The secret was created where the config says, readable by its owner only.
    let secret = state.path().join("imkit.secret");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret)
            .expect("secret file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "secret mode {mode:o}");
    }

    // `token` with the same config prints the token and nothing else.
    let out = Command::new(BINARY)
        .args(["--config", &config.display().to_string(), "token", "alice"])
        .output()
        .await
        .expect("token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let token = stdout.trim_end_matches('\n');
    assert!(
        !token.contains('\n'),
        "stdout holds only the token: {stdout:?}"
    );
    assert_eq!(token.split('.').count(), 3, "a JWT: {token:?}");
    // From a directory with no secret and no config: refused, nothing created.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let refused = Command::new(BINARY)
        .args(["token", "alice"])
        .current_dir(elsewhere.path())
        .env_remove("IMKIT_SECRET")
        .env_remove("IMKIT_CONFIG")
        .output()
        .await
        .expect("token elsewhere");
    assert!(!refused.status.success());
    assert!(refused.stdout.is_empty());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no token secret"));
    assert!(
        !elsewhere.path().join("imkit.secret").exists(),
        "token created a secret"
    );

    // A client logs in with that token.
    let mut conn = TcpStream::connect(("127.0.0.1", tcp))
        .await
        .expect("connect");
    let login = Packet::Login(pb::LoginRequest {
        token: token.to_owned(),
        device_id: "phone".into(),
        ..Default::default()
    });
    let bytes = login
        .to_frame(PacketId::new())
        .to_bytes(usize::MAX)
        .expect("encode");
    conn.write_all(&bytes).await.expect("write");
    let mut buf = BytesMut::new();
    assert!(matches!(
        next_packet(&mut conn, &mut buf).await,
        Some(Packet::LoginResponse(_))
    ));
    let (status, scraped) = get(metrics, "/metrics").await.expect("metrics");
    assert_eq!(status, 200);
    assert!(scraped.contains("imkit_logins_total{"), "{scraped}");

    // ExecReload: SIGHUP is handled, not fatal.
    let reload: Vec<String> = unit_value(&unit, "ExecReload")
        .split_whitespace()
        .map(|w| w.replace("$MAINPID", &pid.to_string()))
        .collect();
    let hup = Command::new(&reload[0])
        .args(&reload[1..])
        .status()
        .await
        .expect("reload");
    assert!(hup.success());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "SIGHUP ended the server"
    );
    assert_eq!(get(http, "/readyz").await.map(|r| r.0), Some(200));

    // KillSignal: a graceful stop.
    let signal = unit_value(&unit, "KillSignal");
    assert_eq!(signal, "SIGTERM");
    let stop_deadline = Duration::from_secs(
        unit_value(&unit, "TimeoutStopSec")
            .parse()
            .expect("TimeoutStopSec"),
    );
    let started = Instant::now();
    let term = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .expect("kill");
    assert!(term.success());
    let mut kicked = None;
    while let Some(p) = next_packet(&mut conn, &mut buf).await {
        if let Packet::Kicked(k) = p {
            kicked = Some(k.reason);
            break;
        }
    }
    assert_eq!(
        kicked,
        Some(KickReason::ServerShutdown as i32),
        "the client was told why"
    );
    let status = tokio::time::timeout(stop_deadline, child.wait())
        .await
        .expect("the server stopped within TimeoutStopSec")
        .expect("wait");
    assert!(status.success(), "exit status {status:?}");
    // shutdown_grace_secs = 5 in the config; the process was gone well before.
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "{:?}",
        started.elapsed()
    );

    let logs = log_lines.await.expect("stderr");
    assert!(!logs.is_empty(), "the server logged on stderr");
    for line in &logs {
        assert!(!line.contains('\u{1b}'), "a colour code in {line:?}");
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.get("level").is_some(), "{line}");
    }
    assert!(logs.iter().any(|l| l.contains("shutting down gracefully")));
    assert!(logs.iter().any(|l| l.contains("server stopped")));
}
