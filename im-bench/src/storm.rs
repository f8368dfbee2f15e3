//! Scenario 6: a reconnect storm, then an offline drain.
//!
//! *Storm*: `conns` clients connect and log in as fast as the generator can
//! (`concurrency` at once); each login is timed from the TCP connect to the
//! server's answer. *Drain*: `users` users who logged in once and went away
//! are sent `messages` each; then they all log in at once, and each is
//! timed from its connect until it holds every message it was sent.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt, TryStreamExt};
use imkit_proto::{Packet, PacketId, pb};
use indicatif::ProgressBar;
use rumqttc::{Event, Packet as MqttPacket, QoS};
use tokio::sync::Semaphore;

use crate::imkit::{login, login_many, send_text_frame};
use crate::peers::{mqtt_connect, mqtt_session, mqtt_subscribe, run_id};
use crate::stats::{self, finish, histogram, payload};
use crate::{Report, System, Target};

/// How long one user's drain may take before it is reported as missing.
const DRAIN_DEADLINE: Duration = Duration::from_secs(60);
/// In-flight sends per sender while the offline queues are filled.
const FILL_WINDOW: usize = 64;

/// Scenario 6a: `conns` logins, `concurrency` at a time.
pub(crate) async fn storm(t: &Target, conns: usize, concurrency: usize) -> Result<Report, String> {
    let run = run_id();
    let hist = Arc::new(Mutex::new(histogram()));
    let bar = ProgressBar::new(conns as u64).with_message("storm");
    let before = stats::sample(t.pid);
    let start = Instant::now();
    let held: Vec<Box<dyn std::any::Any + Send>> = futures::stream::iter(0..conns)
        .map(|i| {
            let (t, run, hist, bar) = (t.clone(), run.clone(), hist.clone(), bar.clone());
            async move {
                let began = Instant::now();
                let conn: Box<dyn std::any::Any + Send> = match t.system {
                    System::ImkitTcp | System::ImkitWs => {
                        Box::new(login(&t, &format!("st{run}-{i}")).await?)
                    }
                    System::Mqtt => {
                        let (c, mut el) =
                            mqtt_connect(&t.addr, &format!("st{run}-{i}"), 10).await?;
                        let task = tokio::spawn(async move { while el.poll().await.is_ok() {} });
                        Box::new((c, AbortOnDrop(task)))
                    }
                    System::Nats => Box::new(
                        async_nats::connect(&t.addr)
                            .await
                            .map_err(|e| format!("nats connect: {e}"))?,
                    ),
                    System::Amqp => return Err("no storm scenario for AMQP".to_string()),
                };
                let us = began.elapsed().as_micros() as u64;
                if let Ok(mut h) = hist.lock() {
                    let _ = h.record(us.max(1));
                }
                bar.inc(1);
                Ok::<_, String>(conn)
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await?;
    let elapsed = start.elapsed();
    let after = stats::sample(t.pid);
    bar.finish_and_clear();
    let mut r = Report {
        scenario: "storm".into(),
        system: format!("{:?}", t.system),
        label: "logins".into(),
        connections: conns,
        notes: format!(
            "{conns} logins, {concurrency} at a time; latency is connect to login answer"
        ),
        ..Report::default()
    };
    let h = hist
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|_| histogram());
    finish(&mut r, held.len() as u64, elapsed, &h, before, after);
    drop(held);
    Ok(r)
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

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
    // Ten senders, each writing to its share of the users.
    let senders = 10.min(users).max(1);
    let bar = ProgressBar::new((users * messages) as u64).with_message("filling inboxes");
    let mut fills = Vec::new();
    for s in 0..senders {
        let (mut rd, mut wr) = login(t, &format!("ds{run}-{s}")).await?;
        let targets: Vec<String> = names.iter().skip(s).step_by(senders).cloned().collect();
        let gate = Arc::new(Semaphore::new(FILL_WINDOW));
        let total = targets.len() * messages;
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
            for ix in 0..messages {
                for to in &targets {
                    let Ok(p) = gate.acquire().await else {
                        return Err("window closed".to_string());
                    };
                    p.forget();
                    wr.send(send_text_frame(to, false, payload(ix as u64)))
                        .await
                        .map_err(|e| e.to_string())?;
                }
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
                let mut have = 0usize;
                let mut last = None;
                let deadline = tokio::time::sleep(DRAIN_DEADLINE);
                tokio::pin!(deadline);
                while have < messages {
                    tokio::select! {
                        f = rd.next() => match f {
                            Some(Ok(f)) => {
                                if let Ok(Packet::MessagePush(m)) = Packet::from_frame(&f) {
                                    have += 1;
                                    last = m.message.map(|m| (m.conversation_id, m.seq));
                                }
                            }
                            _ => break,
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
                // Acknowledge the drain once, as the SDK does.
                if let Some((conversation_id, seq)) = last {
                    let receipt = Packet::Receipt(pb::ReceiptRequest {
                        conversation_id,
                        kind: pb::ReceiptKind::Delivered as i32,
                        seq,
                    });
                    let _ = wr.send(receipt.to_frame(PacketId::new())).await;
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
        scenario: "drain".into(),
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
        scenario: "drain".into(),
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
