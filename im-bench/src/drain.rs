//! Scenario 6b: an offline drain. `users` users who logged in once and went
//! away are sent `messages` each (by ten senders, so a user's backlog
//! spans conversations); then they all log in at once, and each is timed
//! from its connect until it holds every message it was sent. With one
//! user and 100,000 messages it is the backlog scenario: how long one
//! returning user takes to catch up.
//!
//! An imkit client catches up the way the protocol says (docs/protocol.md,
//! "Catching up"): it takes the pushes of a small backlog, or, told by a
//! `SyncNotice` that more waits, pulls `Sync` pages until none is left.
//! Mosquitto's persistent sessions (clean session off, QoS 1) replay
//! their queues on reconnect.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt, TryStreamExt};
use imkit_proto::{Packet, PacketId, pb};
use indicatif::ProgressBar;
use rumqttc::{Event, Packet as MqttPacket, QoS};
use tokio::sync::Semaphore;

use crate::imkit::{Rd, Wr, login, login_many, send_text_frame};
use crate::peers::{mqtt_connect, mqtt_session, mqtt_subscribe, run_id};
use crate::stats::{self, finish, histogram, payload};
use crate::{Report, Target};

/// How long one user's drain may take before it is reported as missing.
const DRAIN_DEADLINE: Duration = Duration::from_secs(300);
/// In-flight sends per sender while the offline queues are filled.
const FILL_WINDOW: usize = 64;
/// Senders filling the backlogs.
const SENDERS: usize = 10;

/// Scenario 6b against imkit: fill `users` offline inboxes with `messages`
/// each, then log everyone in at once and time the drain.
pub(crate) async fn imkit_drain(
    t: &Target,
    users: usize,
    messages: usize,
) -> Result<Report, String> {
    let run = run_id();
    let names: Vec<String> = (0..users).map(|i| format!("d{run}-{i}")).collect();
    // Log in once so each user's device is known, then go away.
    drop(login_many(t, names.clone()).await?);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Ten senders, each writing its share of every user's messages.
    let total = users * messages;
    let senders = SENDERS.min(total).max(1);
    let bar = ProgressBar::new(total as u64).with_message("filling backlogs");
    let mut fills = Vec::new();
    for s in 0..senders {
        let (mut rd, mut wr) = login(t, &format!("ds{run}-{s}")).await?;
        let jobs: Vec<(String, usize)> = (0..messages)
            .flat_map(|ix| names.iter().map(move |u| (u.clone(), ix)))
            .skip(s)
            .step_by(senders)
            .collect();
        let gate = Arc::new(Semaphore::new(FILL_WINDOW));
        let total = jobs.len();
        let bar = bar.clone();
        let acks = {
            let gate = gate.clone();
            tokio::spawn(async move {
                let mut acked = 0;
                while acked < total {
                    match rd.next().await {
                        Some(Ok(f)) => {
                            if let Ok(Packet::SendResponse(_) | Packet::Error(_)) =
                                Packet::from_frame(&f)
                            {
                                acked += 1;
                                bar.inc(1);
                                gate.add_permits(1);
                            }
                        }
                        _ => return Err(format!("sender closed after {acked} of {total} acks")),
                    }
                }
                Ok(())
            })
        };
        fills.push(tokio::spawn(async move {
            for (to, ix) in jobs {
                let Ok(p) = gate.acquire().await else {
                    return Err("window closed".to_string());
                };
                p.forget();
                wr.send(send_text_frame(&to, false, payload(ix as u64)))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            acks.await.map_err(|e| e.to_string())?
        }));
    }
    for f in fills {
        f.await.map_err(|e| e.to_string())??;
    }
    bar.finish_and_clear();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let got = Arc::new(AtomicU64::new(0));
    let hist = Arc::new(Mutex::new(histogram()));
    let before = stats::sample(t.pid);
    let start = Instant::now();
    let bar = ProgressBar::new(users as u64).with_message("draining");
    let tasks: Vec<_> = names
        .into_iter()
        .map(|u| {
            let (t, got, hist, bar) = (t.clone(), got.clone(), hist.clone(), bar.clone());
            tokio::spawn(async move {
                let began = Instant::now();
                let (mut rd, mut wr) = login(&t, &u).await?;
                let have =
                    tokio::time::timeout(DRAIN_DEADLINE, catch_up(&mut rd, &mut wr, messages))
                        .await
                        .unwrap_or(Ok(0))?;
                got.fetch_add(have as u64, Ordering::Relaxed);
                if have == messages
                    && let Ok(mut h) = hist.lock()
                {
                    let _ = h.record((began.elapsed().as_micros() as u64).max(1));
                }
                bar.inc(1);
                Ok::<_, String>((rd, wr))
            })
        })
        .collect();
    let mut held = Vec::new();
    for task in tasks {
        held.push(task.await.map_err(|e| e.to_string())??);
    }
    let elapsed = start.elapsed();
    let after = stats::sample(t.pid);
    bar.finish_and_clear();
    let got = got.load(Ordering::Relaxed);
    let mut r = Report {
        scenario: scenario_name(users).into(),
        system: format!("{:?}", t.system),
        label: "offline drain".into(),
        connections: users,
        notes: format!(
            "{users} users x {messages} queued messages; {got}/{} drained; \
             latency is connect to last message, per user",
            users * messages
        ),
        ..Report::default()
    };
    let h = hist
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|_| histogram());
    finish(&mut r, got, elapsed, &h, before, after);
    Ok(r)
}

/// The report's scenario: one user's backlog, or many users' drain.
fn scenario_name(users: usize) -> &'static str {
    if users == 1 { "backlog" } else { "drain" }
}

/// Takes what a returning device is owed until it holds `messages`
/// distinct ones: pushes, and Sync pages when a notice says more waits.
/// Acknowledges delivery after each page, as the SDK does. Returns how
/// many it got.
async fn catch_up(rd: &mut Rd, wr: &mut Wr, messages: usize) -> Result<usize, String> {
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut have = 0usize;
    let mut syncing = false;
    let mut again = false;
    let sync = |last: &HashMap<String, u64>| {
        let cursors = last
            .iter()
            .map(|(c, s)| pb::Cursor {
                conversation_id: c.clone(),
                seq: *s,
            })
            .collect();
        Packet::Sync(pb::SyncRequest { cursors, limit: 0 }).to_frame(PacketId::new())
    };
    // Counts a message the first time it is seen.
    fn take(last: &mut HashMap<String, u64>, m: pb::Message) -> usize {
        let seen = last.entry(m.conversation_id).or_default();
        if m.seq > *seen {
            *seen = m.seq;
            1
        } else {
            0
        }
    }
    while have < messages {
        let frame = match rd.next().await {
            Some(Ok(f)) => f,
            _ => break,
        };
        match Packet::from_frame(&frame) {
            Ok(Packet::MessagePush(p)) => {
                if let Some(m) = p.message {
                    have += take(&mut last, m);
                }
            }
            Ok(Packet::SyncNotice(_)) if syncing => again = true,
            Ok(Packet::SyncNotice(_)) => {
                syncing = true;
                wr.send(sync(&last)).await.map_err(|e| e.to_string())?;
            }
            Ok(Packet::SyncResponse(r)) => {
                let mut more = r.more || std::mem::take(&mut again);
                for conv in r.conversations {
                    more |= conv.has_more;
                    for m in conv.messages {
                        have += take(&mut last, m);
                    }
                }
                for (conversation_id, seq) in &last {
                    let receipt = Packet::Receipt(pb::ReceiptRequest {
                        conversation_id: conversation_id.clone(),
                        kind: pb::ReceiptKind::Delivered as i32,
                        seq: *seq,
                    });
                    wr.feed(receipt.to_frame(PacketId::new()))
                        .await
                        .map_err(|e| e.to_string())?;
                }
                syncing = more;
                if more {
                    wr.send(sync(&last)).await.map_err(|e| e.to_string())?;
                } else {
                    SinkExt::<imkit_proto::Frame>::flush(wr)
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
            _ => {}
        }
    }
    Ok(have)
}

/// Scenario 6b against Mosquitto: persistent sessions (clean session off)
/// with a QoS 1 subscription each; the broker queues while they are away.
pub(crate) async fn mqtt_drain(
    t: &Target,
    users: usize,
    messages: usize,
) -> Result<Report, String> {
    let run = run_id();
    let topic = |i: usize| format!("bench/{run}/d{i}");
    let id = |i: usize| format!("d{run}-{i}");
    // Subscribe once with a persistent session, then disconnect.
    let bar = ProgressBar::new(users as u64).with_message("subscribing");
    futures::stream::iter(0..users)
        .map(|i| {
            let (addr, topic, id, bar) = (t.addr.clone(), topic(i), id(i), bar.clone());
            async move {
                let (c, mut el) = mqtt_session(&addr, &id, 100, false).await?;
                mqtt_subscribe(&c, &mut el, &topic).await?;
                c.disconnect().await.map_err(|e| e.to_string())?;
                while el.poll().await.is_ok() {}
                bar.inc(1);
                Ok::<_, String>(())
            }
        })
        .buffer_unordered(128)
        .try_collect::<Vec<()>>()
        .await?;
    bar.finish_and_clear();
    // One publisher fills every queue with QoS 1, waiting for all PUBACKs.
    let total = users * messages;
    let (pc, mut pel) = mqtt_connect(&t.addr, &format!("dp{run}"), 1000).await?;
    let acks = tokio::spawn(async move {
        let mut acked = 0;
        while acked < total {
            match pel.poll().await {
                Ok(Event::Incoming(MqttPacket::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => return Err(format!("publisher: {e} after {acked} of {total}")),
            }
        }
        Ok(())
    });
    let bar = ProgressBar::new(total as u64).with_message("filling queues");
    for ix in 0..messages {
        for i in 0..users {
            pc.publish(
                topic(i),
                QoS::AtLeastOnce,
                false,
                payload(ix as u64).into_bytes(),
            )
            .await
            .map_err(|e| e.to_string())?;
            bar.inc(1);
        }
    }
    acks.await.map_err(|e| e.to_string())??;
    bar.finish_and_clear();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let got = Arc::new(AtomicU64::new(0));
    let hist = Arc::new(Mutex::new(histogram()));
    let before = stats::sample(t.pid);
    let start = Instant::now();
    let tasks: Vec<_> = (0..users)
        .map(|i| {
            let (addr, id, got, hist) = (t.addr.clone(), id(i), got.clone(), hist.clone());
            tokio::spawn(async move {
                let began = Instant::now();
                let (c, mut el) = mqtt_session(&addr, &id, 100, false).await?;
                let mut have = 0usize;
                let deadline = tokio::time::sleep(DRAIN_DEADLINE);
                tokio::pin!(deadline);
                while have < messages {
                    tokio::select! {
                        e = el.poll() => match e {
                            Ok(Event::Incoming(MqttPacket::Publish(_))) => have += 1,
                            Ok(_) => {}
                            Err(_) => break,
                        },
                        () = &mut deadline => break,
                    }
                }
                got.fetch_add(have as u64, Ordering::Relaxed);
                if have == messages
                    && let Ok(mut h) = hist.lock()
                {
                    let _ = h.record((began.elapsed().as_micros() as u64).max(1));
                }
                // Let the last PUBACKs go out, then leave.
                let _ = tokio::time::timeout(Duration::from_millis(50), el.poll()).await;
                Ok::<_, String>((c, el))
            })
        })
        .collect();
    let mut held = Vec::new();
    for task in tasks {
        held.push(task.await.map_err(|e| e.to_string())??);
    }
    let elapsed = start.elapsed();
    let after = stats::sample(t.pid);
    let got = got.load(Ordering::Relaxed);
    let mut r = Report {
        scenario: scenario_name(users).into(),
        system: "Mqtt".into(),
        label: "persistent sessions, QoS 1".into(),
        connections: users,
        notes: format!(
            "{users} users x {messages} queued messages; {got}/{total} drained; \
             latency is connect to last message, per user"
        ),
        ..Report::default()
    };
    let h = hist
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|_| histogram());
    finish(&mut r, got, elapsed, &h, before, after);
    Ok(r)
}
