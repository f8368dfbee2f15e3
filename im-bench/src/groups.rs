//! Scenario 4: many small groups under open-loop rate steps.
//!
//! Every system gets the same shape: `groups` groups of `members`
//! connections each, one of which sends (imkit: the group's owner, who is a
//! member and does not receive its own message; peers: a publish-only
//! connection beside `members - 1` subscribers). A pacer offers `rate`
//! messages per second spread round-robin over the groups, whatever the
//! system answers (open loop): each group's writer has a bounded queue, and
//! a message offered to a full queue is counted as refused, never waited
//! for. The payload carries the time the pacer scheduled it, so queueing in
//! the generator shows up as latency rather than hiding it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt, TryStreamExt};
use imkit_proto::{Frame, Packet};
use indicatif::ProgressBar;
use rumqttc::{Event, Packet as MqttPacket, QoS};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::imkit::{create_group, login_many, send_text_frame, text_of};
use crate::peers::{Shared, mqtt_connect, mqtt_subscribe, run_id};
use crate::stats::{self, finish, histogram, payload};
use crate::{Report, System, Target};

/// Payloads a group's writer may hold before the pacer counts a refusal.
const WRITER_QUEUE: usize = 256;
/// Connections set up at once.
const SETUP_CONCURRENCY: usize = 128;

/// The part every system shares: per-group writer queues, the receivers'
/// counters and the tasks to stop at the end.
struct Rig {
    writers: Vec<mpsc::Sender<String>>,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Runs scenario 4 against `t.system`; one report per rate step.
pub(crate) async fn small_groups(
    t: &Target,
    groups: usize,
    members: usize,
    rates: &[u64],
    secs: u64,
) -> Result<Vec<Report>, String> {
    if members < 2 || groups == 0 {
        return Err("small groups need at least one group of two".into());
    }
    let rig = match t.system {
        System::ImkitTcp | System::ImkitWs => imkit_rig(t, groups, members).await?,
        System::Mqtt => mqtt_rig(t, groups, members).await?,
        System::Nats => nats_rig(t, groups, members).await?,
        System::Amqp => return Err("no small-groups scenario for AMQP".into()),
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut reports = Vec::new();
    for &rate in rates {
        reports.push(step(t, &rig, groups, members, rate, secs).await);
        // Let the backlog of an overloaded step drain before the next.
        rig.shared.measuring.store(false, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(reports)
}

/// One open-loop step: `rate` msg/s for `secs` seconds.
async fn step(
    t: &Target,
    rig: &Rig,
    groups: usize,
    members: usize,
    rate: u64,
    secs: u64,
) -> Report {
    if let Ok(mut h) = rig.shared.hist.lock() {
        h.reset();
    }
    let before = stats::sample(t.pid);
    let base = rig.shared.delivered.load(Ordering::Relaxed);
    rig.shared.measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    let bar = ProgressBar::new(secs).with_message(format!("{rate} msg/s"));
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate.max(1)));
    let total = rate * secs;
    let (mut sent, mut refused) = (0u64, 0u64);
    for ix in 0..total {
        tick.tick().await;
        let w = &rig.writers[(ix % groups as u64) as usize];
        match w.try_send(payload(ix)) {
            Ok(()) => sent += 1,
            Err(_) => refused += 1,
        }
        if ix % rate.max(1) == 0 {
            bar.set_position(ix / rate.max(1));
        }
    }
    let elapsed = start.elapsed();
    let count = rig.shared.delivered.load(Ordering::Relaxed) - base;
    let after = stats::sample(t.pid);
    bar.finish_and_clear();
    let mut r = Report {
        scenario: "small-groups".into(),
        system: format!("{:?}", t.system),
        label: format!("{rate} msg/s"),
        connections: groups * members,
        notes: format!(
            "{groups} groups of {members}; offered {rate} msg/s = {} deliveries/s; \
             sent {sent}, refused by a full writer queue {refused}",
            rate * (members as u64 - 1)
        ),
        ..Report::default()
    };
    let h = rig
        .shared
        .hist
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|_| histogram());
    finish(&mut r, count, elapsed, &h, before, after);
    r
}

/// A receiver's loop body: records one payload straight into the step's
/// histogram, so a step's figures hold exactly that step's deliveries.
fn record(shared: &Shared, payload: &[u8]) {
    if !shared.measuring.load(Ordering::Relaxed) {
        return;
    }
    if let Some((ts, _)) = stats::parse_payload(payload) {
        if let Ok(mut h) = shared.hist.lock() {
            let _ = h.record((stats::now_ns().saturating_sub(ts) / 1000).max(1));
        }
        shared.delivered.fetch_add(1, Ordering::Relaxed);
    }
}

async fn imkit_rig(t: &Target, groups: usize, members: usize) -> Result<Rig, String> {
    let run = run_id();
    let name = |g: usize, m: usize| format!("g{run}-{g}-{m}");
    let users = (0..groups)
        .flat_map(|g| (0..members).map(move |m| (g, m)))
        .map(|(g, m)| name(g, m))
        .collect();
    let mut conns = login_many(t, users).await?.into_iter();
    let shared = Shared::new();
    let mut tasks = Vec::new();
    let mut owners = Vec::new();
    for g in 0..groups {
        owners.push((g, conns.next().ok_or("missing connection")?));
        for _ in 1..members {
            let (mut rd, wr) = conns.next().ok_or("missing connection")?;
            let shared = shared.clone();
            tasks.push(tokio::spawn(async move {
                let _keep = wr;
                while let Some(Ok(f)) = rd.next().await {
                    if let Ok(Packet::MessagePush(m)) = Packet::from_frame(&f) {
                        record(&shared, text_of(&m));
                    }
                }
            }));
        }
    }
    let bar = ProgressBar::new(groups as u64).with_message("creating groups");
    let created: Vec<_> = futures::stream::iter(owners)
        .map(|(g, (mut rd, mut wr))| {
            let names = (1..members).map(|m| name(g, m)).collect();
            let bar = bar.clone();
            async move {
                let id = create_group(&mut rd, &mut wr, &format!("g{g}"), names).await?;
                bar.inc(1);
                Ok::<_, String>((id, rd, wr))
            }
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .try_collect()
        .await?;
    bar.finish_and_clear();
    let mut writers = Vec::new();
    for (group, mut rd, mut wr) in created {
        // The owner's answers (SENT acks, receipts) are read and dropped.
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(_)) = rd.next().await {}
        }));
        let (tx, mut rx) = mpsc::channel::<String>(WRITER_QUEUE);
        writers.push(tx);
        tasks.push(tokio::spawn(async move {
            while let Some(text) = rx.recv().await {
                if wr.feed(send_text_frame(&group, true, text)).await.is_err() {
                    return;
                }
                if rx.is_empty() && SinkExt::<Frame>::flush(&mut wr).await.is_err() {
                    return;
                }
            }
        }));
    }
    Ok(Rig {
        writers,
        shared,
        tasks,
    })
}

async fn mqtt_rig(t: &Target, groups: usize, members: usize) -> Result<Rig, String> {
    let run = run_id();
    let shared = Shared::new();
    let bar = ProgressBar::new(groups as u64).with_message("subscribing");
    let addr = t.addr.clone();
    let built: Vec<_> = futures::stream::iter(0..groups)
        .map(|g| {
            let (shared, addr, run, bar) = (shared.clone(), addr.clone(), run.clone(), bar.clone());
            async move {
                let topic = format!("bench/{run}/g{g}");
                let mut tasks = Vec::new();
                for m in 1..members {
                    let (c, mut el) = mqtt_connect(&addr, &format!("g{run}-{g}-{m}"), 100).await?;
                    mqtt_subscribe(&c, &mut el, &topic).await?;
                    let shared = shared.clone();
                    tasks.push(tokio::spawn(async move {
                        let _keep = c;
                        loop {
                            match el.poll().await {
                                Ok(Event::Incoming(MqttPacket::Publish(p))) => {
                                    record(&shared, &p.payload);
                                }
                                Ok(_) => {}
                                Err(_) => break,
                            }
                        }
                    }));
                }
                let (pc, mut pel) = mqtt_connect(&addr, &format!("g{run}-{g}-0"), 100).await?;
                tasks.push(tokio::spawn(
                    async move { while pel.poll().await.is_ok() {} },
                ));
                let (tx, mut rx) = mpsc::channel::<String>(WRITER_QUEUE);
                tasks.push(tokio::spawn(async move {
                    while let Some(text) = rx.recv().await {
                        if pc
                            .publish(topic.as_str(), QoS::AtLeastOnce, false, text.into_bytes())
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }));
                bar.inc(1);
                Ok::<_, String>((tx, tasks))
            }
        })
        .buffer_unordered(SETUP_CONCURRENCY / members.max(1) + 1)
        .try_collect()
        .await?;
    bar.finish_and_clear();
    let mut rig = Rig {
        writers: Vec::new(),
        shared,
        tasks: Vec::new(),
    };
    for (tx, tasks) in built {
        rig.writers.push(tx);
        rig.tasks.extend(tasks);
    }
    Ok(rig)
}

async fn nats_rig(t: &Target, groups: usize, members: usize) -> Result<Rig, String> {
    let run = run_id();
    let shared = Shared::new();
    let bar = ProgressBar::new(groups as u64).with_message("subscribing");
    let addr = t.addr.clone();
    let built: Vec<_> = futures::stream::iter(0..groups)
        .map(|g| {
            let (shared, addr, run, bar) = (shared.clone(), addr.clone(), run.clone(), bar.clone());
            async move {
                let subject = format!("bench.{run}.g{g}");
                let mut tasks = Vec::new();
                for _ in 1..members {
                    let c = async_nats::connect(&addr)
                        .await
                        .map_err(|e| format!("nats: {e}"))?;
                    let mut sub = c
                        .subscribe(subject.clone())
                        .await
                        .map_err(|e| e.to_string())?;
                    c.flush().await.map_err(|e| e.to_string())?;
                    let shared = shared.clone();
                    tasks.push(tokio::spawn(async move {
                        let _keep = c;
                        while let Some(m) = sub.next().await {
                            record(&shared, &m.payload);
                        }
                    }));
                }
                let pc = async_nats::connect(&addr)
                    .await
                    .map_err(|e| format!("nats: {e}"))?;
                let (tx, mut rx) = mpsc::channel::<String>(WRITER_QUEUE);
                tasks.push(tokio::spawn(async move {
                    while let Some(text) = rx.recv().await {
                        if pc.publish(subject.clone(), text.into()).await.is_err() {
                            return;
                        }
                    }
                }));
                bar.inc(1);
                Ok::<_, String>((tx, tasks))
            }
        })
        .buffer_unordered(SETUP_CONCURRENCY / members.max(1) + 1)
        .try_collect()
        .await?;
    bar.finish_and_clear();
    let mut rig = Rig {
        writers: Vec::new(),
        shared,
        tasks: Vec::new(),
    };
    for (tx, tasks) in built {
        rig.writers.push(tx);
        rig.tasks.extend(tasks);
    }
    Ok(rig)
}
