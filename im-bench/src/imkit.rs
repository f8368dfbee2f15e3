//! Scenarios against imkit, speaking its protocol directly.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use imkit_core::auth::HmacAuthenticator;
use imkit_core::model::UserId;
use imkit_proto::{Frame, FrameCodec, FrameLimits, Packet, PacketId, pb};
use indicatif::ProgressBar;
use std::sync::Mutex;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Semaphore;
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::peers::{Fanout, pace, settle};
use crate::stats::{self, finish, histogram, parse_payload, payload};
use crate::{Report, System, Target};

pub(crate) type Rd = FramedRead<OwnedReadHalf, FrameCodec>;
pub(crate) type Wr = FramedWrite<OwnedWriteHalf, FrameCodec>;

pub(crate) fn token(secret: &str, user: &str) -> String {
    HmacAuthenticator::new(secret).mint(&UserId::from(user), 3_600)
}

fn run_id() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    )
}

/// Connects and logs in over TCP; returns the split connection.
pub(crate) async fn login(t: &Target, user: &str) -> Result<(Rd, Wr), String> {
    let tcp = TcpStream::connect(&t.addr)
        .await
        .map_err(|e| format!("connect {}: {e}", t.addr))?;
    let _ = tcp.set_nodelay(true);
    let (r, w) = tcp.into_split();
    let mut rd = FramedRead::new(r, FrameCodec::new(FrameLimits::client()));
    let mut wr = FramedWrite::new(w, FrameCodec::new(FrameLimits::client()));
    let req = Packet::Login(pb::LoginRequest {
        token: token(&t.secret, user),
        device_id: "bench".into(),
        ..Default::default()
    });
    wr.send(req.to_frame(PacketId::new()))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let f = rd
            .next()
            .await
            .ok_or("closed during login")?
            .map_err(|e| e.to_string())?;
        match Packet::from_frame(&f) {
            Ok(Packet::LoginResponse(_)) => return Ok((rd, wr)),
            Ok(Packet::Error(e)) => return Err(format!("login refused: {}", e.message)),
            _ => continue,
        }
    }
}

/// Logs in many users with bounded concurrency.
pub(crate) async fn login_many(t: &Target, users: Vec<String>) -> Result<Vec<(Rd, Wr)>, String> {
    let bar = ProgressBar::new(users.len() as u64).with_message("logging in");
    let gate = Arc::new(Semaphore::new(256));
    let mut tasks = Vec::with_capacity(users.len());
    for u in users {
        let t = t.clone();
        let gate = gate.clone();
        let bar = bar.clone();
        tasks.push(tokio::spawn(async move {
            let _p = gate.acquire().await.map_err(|e| e.to_string())?;
            let r = login(&t, &u).await;
            bar.inc(1);
            r
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.map_err(|e| e.to_string())??);
    }
    bar.finish_and_clear();
    Ok(out)
}

/// Idle logged-in connections: RSS per connection.
pub(crate) async fn idle(t: &Target, conns: usize) -> Result<Report, String> {
    let run = run_id();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = stats::sample(t.pid);
    let mut held: Vec<Box<dyn std::any::Any + Send>> = Vec::with_capacity(conns);
    let bar = ProgressBar::new(conns as u64).with_message("connecting");
    match t.system {
        System::ImkitWs => {
            let url = format!("ws://{}/", t.addr);
            for i in 0..conns {
                let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
                    .await
                    .map_err(|e| e.to_string())?;
                let login = Packet::Login(pb::LoginRequest {
                    token: token(&t.secret, &format!("i{run}-{i}")),
                    device_id: "bench".into(),
                    ..Default::default()
                });
                let bytes = login
                    .to_frame(PacketId::new())
                    .to_bytes(usize::MAX)
                    .map_err(|e| e.to_string())?;
                ws.send(tokio_tungstenite::tungstenite::Message::Binary(bytes))
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = ws.next().await;
                held.push(Box::new(ws));
                bar.inc(1);
            }
        }
        _ => {
            let users = (0..conns).map(|i| format!("i{run}-{i}")).collect();
            for c in login_many(t, users).await? {
                held.push(Box::new(c));
            }
        }
    }
    bar.finish_and_clear();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = stats::sample(t.pid);
    let mut report = Report {
        scenario: "idle".into(),
        system: format!("{:?}", t.system),
        connections: conns,
        ..Report::default()
    };
    if let (Some(b), Some(a)) = (before, after) {
        report.rss_bytes = Some(a.rss);
        report.rss_per_connection = Some((a.rss as f64 - b.rss as f64) / conns as f64);
    }
    drop(held);
    Ok(report)
}

pub(crate) fn send_frame(to: &str, group: bool, index: u64) -> Frame {
    send_text_frame(to, group, payload(index))
}

/// Client message ids: unique within one generator run (users are too).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A `Send` of `text` to a user or a group.
pub(crate) fn send_text_frame(to: &str, group: bool, text: String) -> Frame {
    use pb::send_request::To;
    let to = if group {
        To::GroupId(to.into())
    } else {
        To::UserId(to.into())
    };
    Packet::Send(pb::SendRequest {
        client_msg_id: format!("{:x}", NEXT_ID.fetch_add(1, Ordering::Relaxed)),
        to: Some(to),
        content: Some(pb::Content {
            body: Some(pb::content::Body::Text(pb::Text {
                text,
                mentions: vec![],
            })),
        }),
    })
    .to_frame(PacketId::new())
}

/// Creates a group owned by the connection's user; returns its id.
pub(crate) async fn create_group(
    rd: &mut Rd,
    wr: &mut Wr,
    name: &str,
    members: Vec<String>,
) -> Result<String, String> {
    let create = Packet::GroupCreate(pb::GroupCreateRequest {
        name: name.into(),
        avatar: String::new(),
        member_ids: members,
    });
    let id = PacketId::new();
    wr.send(create.to_frame(id))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let f = rd
            .next()
            .await
            .ok_or("closed")?
            .map_err(|e| e.to_string())?;
        if f.header.packet_id == id {
            return match Packet::from_frame(&f) {
                Ok(Packet::GroupCreateResponse(r)) => Ok(r.group.ok_or("no group")?.group_id),
                other => Err(format!("group create failed: {other:?}")),
            };
        }
    }
}

pub(crate) fn text_of(m: &pb::MessagePush) -> &[u8] {
    match m
        .message
        .as_ref()
        .and_then(|m| m.content.as_ref())
        .and_then(|c| c.body.as_ref())
    {
        Some(pb::content::Body::Text(t)) => t.text.as_bytes(),
        _ => &[],
    }
}

/// 1:1 pairs with a window of in-flight messages per sender. Reliable: a
/// message counts when the sender has its SENT ack and the delivered
/// receipt. Fire-and-forget: when the receiver has it (senders wait only
/// for SENT acks to keep the window).
pub(crate) async fn pairs(
    t: &Target,
    pairs: usize,
    window: usize,
    secs: u64,
    fire: bool,
) -> Result<Report, String> {
    let run = run_id();
    let mut users = Vec::new();
    for i in 0..pairs {
        users.push(format!("s{run}-{i}"));
        users.push(format!("r{run}-{i}"));
    }
    let mut conns = login_many(t, users).await?.into_iter();
    let delivered = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let hist = Arc::new(Mutex::new(histogram()));
    let mut tasks = Vec::new();
    for i in 0..pairs {
        let (s_rd, mut s_wr) = conns.next().ok_or("missing connection")?;
        let (mut r_rd, mut r_wr) = conns.next().ok_or("missing connection")?;
        let receiver = format!("r{run}-{i}");
        let gate = Arc::new(Semaphore::new(window));
        // Receiver: records latency; in reliable mode acknowledges delivery.
        {
            let (delivered, measuring, hist, stop) = (
                delivered.clone(),
                measuring.clone(),
                hist.clone(),
                stop.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut local = histogram();
                while let Some(Ok(f)) = r_rd.next().await {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(Packet::MessagePush(m)) = Packet::from_frame(&f) else {
                        continue;
                    };
                    if let Some((ts, _)) = parse_payload(text_of(&m))
                        && measuring.load(Ordering::Relaxed)
                    {
                        let _ = local.record((stats::now_ns().saturating_sub(ts) / 1000).max(1));
                        if fire {
                            delivered.fetch_add(1, Ordering::Relaxed);
                        }
                        // Merge as we go: the task is aborted, not ended.
                        if local.len() >= 16 {
                            if let Ok(mut h) = hist.lock() {
                                let _ = h.add(&local);
                            }
                            local.reset();
                        }
                    }
                    if !fire {
                        let Some(msg) = m.message else { continue };
                        let receipt = Packet::Receipt(pb::ReceiptRequest {
                            conversation_id: msg.conversation_id,
                            kind: pb::ReceiptKind::Delivered as i32,
                            seq: msg.seq,
                        });
                        if r_wr.send(receipt.to_frame(PacketId::new())).await.is_err() {
                            break;
                        }
                    }
                }
                if let Ok(mut h) = hist.lock() {
                    let _ = h.add(&local);
                }
            }));
        }
        // Sender's reader: completes messages and frees window slots.
        {
            let (delivered, measuring, gate) = (delivered.clone(), measuring.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                let mut s_rd = s_rd;
                let mut acked: std::collections::VecDeque<u64> = std::collections::VecDeque::new();
                let mut receipt_upto = 0u64;
                while let Some(Ok(f)) = s_rd.next().await {
                    let mut done = 0usize;
                    match Packet::from_frame(&f) {
                        Ok(Packet::SendResponse(a)) => {
                            if fire || a.seq <= receipt_upto {
                                done += 1;
                            } else {
                                acked.push_back(a.seq);
                            }
                        }
                        Ok(Packet::ReceiptPush(r))
                            if r.kind == pb::ReceiptKind::Delivered as i32 =>
                        {
                            receipt_upto = receipt_upto.max(r.seq);
                            while acked.front().is_some_and(|s| *s <= receipt_upto) {
                                acked.pop_front();
                                done += 1;
                            }
                        }
                        Ok(Packet::Error(_)) => done += 1,
                        _ => {}
                    }
                    if done > 0 {
                        if !fire && measuring.load(Ordering::Relaxed) {
                            delivered.fetch_add(done as u64, Ordering::Relaxed);
                        }
                        gate.add_permits(done);
                    }
                }
            }));
        }
        // Sender's writer: keeps the window full.
        {
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut index = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let Ok(p) = gate.acquire().await else { break };
                    p.forget();
                    index += 1;
                    if s_wr
                        .send(send_frame(&receiver, false, index))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = stats::sample(t.pid);
    measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    let base = delivered.load(Ordering::Relaxed);
    let bar = ProgressBar::new(secs).with_message("measuring");
    for _ in 0..secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
        bar.inc(1);
    }
    let count = delivered.load(Ordering::Relaxed) - base;
    let elapsed = start.elapsed();
    measuring.store(false, Ordering::Relaxed);
    let after = stats::sample(t.pid);
    bar.finish_and_clear();
    stop.store(true, Ordering::Relaxed);
    for task in &tasks {
        task.abort();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut report = Report {
        scenario: if fire {
            "fire-and-forget".into()
        } else {
            "reliable".into()
        },
        system: format!("{:?}", t.system),
        connections: pairs * 2,
        notes: format!("{pairs} pairs, window {window}"),
        ..Report::default()
    };
    let h = hist
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|_| histogram());
    finish(&mut report, count, elapsed, &h, before, after);
    Ok(report)
}

/// One group of `members` online members; one sender at `rate` msg/s.
/// Latency is time to the last member, per message.
pub(crate) async fn broadcast(
    t: &Target,
    members: usize,
    rate: u64,
    secs: u64,
) -> Result<Report, String> {
    let run = run_id();
    let names: Vec<String> = (0..members).map(|i| format!("b{run}-{i}")).collect();
    let sender_name = format!("bs{run}");
    let (mut s_rd, mut s_wr) = login(t, &sender_name).await?;
    let conns = login_many(t, names.clone()).await?;
    let group = create_group(&mut s_rd, &mut s_wr, "broadcast", names).await?;
    let f = Fanout::new((rate * secs) as usize);
    let mut tasks = Vec::new();
    for (mut rd, wr) in conns {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let _keep = wr;
            while let Some(Ok(frame)) = rd.next().await {
                if let Ok(Packet::MessagePush(m)) = Packet::from_frame(&frame) {
                    f.seen(text_of(&m));
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Drain the sender's own answers in the background.
    tasks.push(tokio::spawn(async move {
        while let Some(Ok(_)) = s_rd.next().await {}
    }));
    let before = stats::sample(t.pid);
    let start = Instant::now();
    pace(&f, rate, async |ix| {
        s_wr.send(send_frame(&group, true, ix))
            .await
            .map_err(|e| e.to_string())
    })
    .await?;
    settle(&f, members).await;
    let elapsed = start.elapsed();
    let after = stats::sample(t.pid);
    for task in &tasks {
        task.abort();
    }
    Ok(f.report(
        &format!("{:?}", t.system),
        members,
        rate,
        elapsed,
        before,
        after,
    ))
}
