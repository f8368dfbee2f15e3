//! Scenarios against imkit, speaking its protocol directly.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use imkit_core::auth::HmacAuthenticator;
use imkit_core::model::UserId;
use imkit_proto::{Frame, FrameCodec, FrameLimits, Packet, PacketId, pb};
use indicatif::ProgressBar;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Semaphore;
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::peers::{Fanout, pace, settle};
use crate::stats::{self, payload};
use crate::{Report, System, Target};

pub(crate) type Rd = FramedRead<OwnedReadHalf, FrameCodec>;
pub(crate) type Wr = FramedWrite<OwnedWriteHalf, FrameCodec>;

pub(crate) fn token(secret: &str, user: &str) -> String {
    HmacAuthenticator::new(secret).mint(&UserId::from(user), 3_600)
}

pub(crate) fn run_id() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    )
}

/// Connects and logs in over TCP; returns the split connection.
pub(crate) async fn login(t: &Target, user: &str) -> Result<(Rd, Wr), String> {
    login_device(t, user, "bench").await
}

/// [`login`] with a device id of choice.
pub(crate) async fn login_device(t: &Target, user: &str, device: &str) -> Result<(Rd, Wr), String> {
    let tcp = TcpStream::connect(&t.addr)
        .await
        .map_err(|e| format!("connect {}: {e}", t.addr))?;
    let _ = tcp.set_nodelay(true);
    let (r, w) = tcp.into_split();
    let mut rd = FramedRead::new(r, FrameCodec::new(FrameLimits::client()));
    let mut wr = FramedWrite::new(w, FrameCodec::new(FrameLimits::client()));
    let req = Packet::Login(pb::LoginRequest {
        token: token(&t.secret, user),
        device_id: device.into(),
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

/// A live-only `Signal` to a group carrying [`payload`] `index`.
fn group_signal_frame(group: &str, index: u64) -> Frame {
    Packet::Signal(pb::Signal {
        to: Some(pb::signal::To::ToGroupId(group.into())),
        kind: "bench".into(),
        data: payload(index).into_bytes().into(),
        ..Default::default()
    })
    .to_frame(PacketId::new())
}

/// One group of `members` online members; one sender at `rate` msg/s
/// (with `signals`, live-only signals instead of messages). Latency is
/// time to the last member, per message.
pub(crate) async fn broadcast(
    t: &Target,
    members: usize,
    rate: u64,
    secs: u64,
    signals: bool,
) -> Result<Report, String> {
    let run = run_id();
    let names: Vec<String> = (0..members).map(|i| format!("b{run}-{i}")).collect();
    let sender_name = format!("bs{run}");
    let (mut s_rd, mut s_wr) = login(t, &sender_name).await?;
    let conns = login_many(&t.receiving(), names.clone()).await?;
    let group = create_group(&mut s_rd, &mut s_wr, "broadcast", names).await?;
    let f = Fanout::new((rate * secs) as usize);
    let mut tasks = Vec::new();
    for (mut rd, wr) in conns {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let _keep = wr;
            while let Some(Ok(frame)) = rd.next().await {
                match Packet::from_frame(&frame) {
                    Ok(Packet::MessagePush(m)) => f.seen(text_of(&m)),
                    Ok(Packet::Signal(s)) => f.seen(&s.data),
                    _ => {}
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
        let frame = if signals {
            group_signal_frame(&group, ix)
        } else {
            send_frame(&group, true, ix)
        };
        s_wr.send(frame).await.map_err(|e| e.to_string())
    })
    .await?;
    settle(&f, members).await;
    let elapsed = start.elapsed();
    let after = stats::sample(t.pid);
    for task in &tasks {
        task.abort();
    }
    let mut report = f.report(
        &format!("{:?}", t.system),
        members,
        rate,
        elapsed,
        before,
        after,
    );
    if signals {
        report.label = "signals".into();
    }
    Ok(report)
}
