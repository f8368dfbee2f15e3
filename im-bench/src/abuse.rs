//! The abuse scenario: hostile connections beside well-behaved chat. A
//! quarter each: logged-in clients that pipeline requests and never read,
//! slowloris logins (a byte a second), garbage senders, and pre-login
//! floods (the largest frame a connection may declare before login, half
//! sent). Meanwhile pairs chat at a fixed rate; the report is their latency
//! with the server's RSS and open descriptors, to compare with a run
//! without the hostile connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use imkit_proto::{MIN_FRAME_LEN, Packet, PacketId, pb};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::imkit::login_device;
use crate::{Report, Target, imkit_pairs};

/// The largest frame the server reads before login (its default).
const PRELOGIN_FRAME: usize = 4 * 1024;

#[derive(Clone)]
struct Shared {
    stop: Arc<AtomicBool>,
    open: Arc<AtomicUsize>,
}

/// Pipelines Sync requests and never reads: the server must stop reading
/// it rather than queue replies.
async fn never_reads(t: Target, i: usize, s: Shared) {
    let Ok((rd, wr)) = login_device(&t, &format!("abuse-r{i}"), "abuser").await else {
        return;
    };
    s.open.fetch_add(1, Ordering::Relaxed);
    let mut tcp = wr.into_inner();
    let mut batch = BytesMut::new();
    for _ in 0..64 {
        if let Ok(b) = Packet::Sync(pb::SyncRequest::default())
            .to_frame(PacketId::new())
            .to_bytes(usize::MAX)
        {
            batch.extend_from_slice(&b);
        }
    }
    // Blocks for good once the socket buffers are full.
    while !s.stop.load(Ordering::Relaxed) {
        if tcp.write_all(&batch).await.is_err() {
            break;
        }
    }
    drop(rd);
    s.open.fetch_sub(1, Ordering::Relaxed);
}

/// Connects again and again, doing `abuse` on each connection until the
/// server closes it.
async fn repeat(t: Target, s: Shared, kind: usize) {
    while !s.stop.load(Ordering::Relaxed) {
        let Ok(mut tcp) = TcpStream::connect(&t.addr).await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        s.open.fetch_add(1, Ordering::Relaxed);
        let mut sink = [0u8; 512];
        match kind {
            // Slowloris: a login frame's header, one byte a second.
            1 => {
                let mut head = BytesMut::new();
                head.put_u32(200);
                head.put_u16(0x0001);
                head.put_u16(1);
                head.put_u32(0);
                head.put_slice(&PacketId::new().0);
                for b in head.iter().cycle() {
                    if s.stop.load(Ordering::Relaxed) || tcp.write_all(&[*b]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            // Garbage, then wait for the server to hang up.
            2 => {
                let junk: Vec<u8> = (0..2_048u32).map(|i| (i * 7919 % 251) as u8).collect();
                let _ = tcp.write_all(&junk).await;
                while let Ok(n) = tcp.read(&mut sink).await {
                    if n == 0 || s.stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            // A pre-login frame of the largest size, half sent, held.
            _ => {
                let mut head = BytesMut::new();
                head.put_u32(PRELOGIN_FRAME as u32);
                head.put_u16(0x0001);
                head.put_u16(1);
                head.put_u32(0);
                head.put_slice(&PacketId::new().0);
                head.put_bytes(b'x', PRELOGIN_FRAME / 2 - MIN_FRAME_LEN);
                let _ = tcp.write_all(&head).await;
                while let Ok(n) = tcp.read(&mut sink).await {
                    if n == 0 || s.stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
            }
        }
        s.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Open descriptors of a process.
fn fds(pid: Option<u32>) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{}/fd", pid?))
        .ok()
        .map(|d| d.count())
}

/// `hostile` hostile connections (0 for the baseline) beside `pairs`
/// pairs chatting at `rate` messages per second for `secs`.
pub(crate) async fn run(
    t: &Target,
    hostile: usize,
    kinds: &[String],
    pairs: usize,
    rate: u64,
    secs: u64,
) -> Result<Report, String> {
    let names: Vec<&str> = kinds.iter().map(String::as_str).collect();
    let s = Shared {
        stop: Arc::new(AtomicBool::new(false)),
        open: Arc::new(AtomicUsize::new(0)),
    };
    let kinds: Vec<usize> = kinds
        .iter()
        .map(|k| match k.as_str() {
            "never-read" => Ok(0),
            "slowloris" => Ok(1),
            "garbage" => Ok(2),
            "prelogin" => Ok(3),
            other => Err(format!("unknown hostile kind {other}")),
        })
        .collect::<Result<_, _>>()?;
    if kinds.is_empty() {
        return Err("no hostile kind".into());
    }
    let gate = Arc::new(Semaphore::new(256));
    let mut tasks = Vec::with_capacity(hostile);
    for i in 0..hostile {
        let kind = kinds[i % kinds.len()];
        let (t, s, gate) = (t.clone(), s.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            // Connections open a few hundred at a time.
            let permit = gate.acquire_owned().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
            drop(permit);
            match kind {
                0 => never_reads(t, i, s).await,
                kind => repeat(t, s, kind).await,
            }
        }));
    }
    // Let them arrive before measuring.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while s.open.load(Ordering::Relaxed) < hostile * 9 / 10
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let open_before = s.open.load(Ordering::Relaxed);
    let mut report = imkit_pairs::rate(t, pairs, rate, secs).await?;
    let server_fds = fds(t.pid);
    let open_after = s.open.load(Ordering::Relaxed);
    s.stop.store(true, Ordering::Relaxed);
    for task in &tasks {
        task.abort();
    }
    report.scenario = "abuse".into();
    report.connections = pairs * 2 + hostile;
    report.notes = format!(
        "{pairs} pairs at {rate} msg/s beside {hostile} hostile connections ({open_before} open \
         when measuring began, {open_after} at the end; kinds {}); server fds at the end: {}; \
         latency is send to receiver",
        names.join(", "),
        server_fds.map_or("n/a".into(), |n| n.to_string())
    );
    Ok(report)
}
