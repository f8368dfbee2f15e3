//! The same scenarios against Mosquitto (MQTT, rumqttc), so every system
//! is driven by the same generator, and what the peers' drivers share
//! (counters, pacing, the broadcast record). NATS is in nats.rs.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use indicatif::ProgressBar;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet as MqttPacket, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::mqtt_wire;
use crate::stats::{self, finish, histogram, parse_payload, payload};
use crate::{Report, Target};

pub(crate) fn run_id() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    )
}

fn host_port(addr: &str) -> Result<(String, u16), String> {
    let (h, p) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("bad address {addr}"))?;
    Ok((
        h.to_owned(),
        p.parse().map_err(|e| format!("bad port in {addr}: {e}"))?,
    ))
}

/// An MQTT connection whose event loop has completed CONNECT.
pub(crate) async fn mqtt_connect(
    addr: &str,
    id: &str,
    inflight: u16,
) -> Result<(AsyncClient, EventLoop), String> {
    mqtt_session(addr, id, inflight, true).await
}

/// An MQTT connection; `clean` false resumes (or starts) a persistent
/// session whose QoS 1 messages the broker queues while it is away.
pub(crate) async fn mqtt_session(
    addr: &str,
    id: &str,
    inflight: u16,
    clean: bool,
) -> Result<(AsyncClient, EventLoop), String> {
    let (host, port) = host_port(addr)?;
    let mut opts = MqttOptions::new(id, host, port);
    opts.set_keep_alive(Duration::from_secs(60));
    opts.set_inflight(inflight.max(1));
    opts.set_clean_session(clean);
    let (client, mut el) = AsyncClient::new(opts, 1024);
    loop {
        match el.poll().await {
            Ok(Event::Incoming(MqttPacket::ConnAck(_))) => return Ok((client, el)),
            Ok(_) => continue,
            Err(e) => return Err(format!("mqtt connect: {e}")),
        }
    }
}

pub(crate) async fn mqtt_subscribe(
    client: &AsyncClient,
    el: &mut EventLoop,
    topic: &str,
) -> Result<(), String> {
    client
        .subscribe(topic, QoS::AtLeastOnce)
        .await
        .map_err(|e| e.to_string())?;
    loop {
        match el.poll().await {
            Ok(Event::Incoming(MqttPacket::SubAck(_))) => return Ok(()),
            Ok(_) => continue,
            Err(e) => return Err(format!("mqtt subscribe: {e}")),
        }
    }
}

/// Idle MQTT connections.
pub(crate) async fn mqtt_idle(t: &Target, conns: usize) -> Result<Report, String> {
    let run = run_id();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = stats::sample(t.pid);
    let bar = ProgressBar::new(conns as u64).with_message("connecting");
    let mut held = Vec::with_capacity(conns);
    for i in 0..conns {
        let (c, mut el) = mqtt_connect(&t.addr, &format!("i{run}-{i}"), 10).await?;
        // Keep each event loop polled so keep-alives flow.
        held.push((
            c,
            tokio::spawn(async move { while el.poll().await.is_ok() {} }),
        ));
        bar.inc(1);
    }
    bar.finish_and_clear();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = stats::sample(t.pid);
    for (_, task) in &held {
        task.abort();
    }
    let mut r = Report {
        scenario: "idle".into(),
        system: "Mqtt".into(),
        connections: conns,
        ..Report::default()
    };
    if let (Some(b), Some(a)) = (before, after) {
        r.rss_bytes = Some(a.rss);
        r.rss_per_connection = Some((a.rss as f64 - b.rss as f64) / conns as f64);
    }
    Ok(r)
}

/// Counters shared by every receiver of a scenario: deliveries inside
/// the measured window and their latency.
pub(crate) struct Shared {
    pub(crate) delivered: AtomicU64,
    pub(crate) measuring: AtomicBool,
    pub(crate) hist: Mutex<hdrhistogram::Histogram<u64>>,
}

impl Shared {
    pub(crate) fn new() -> Arc<Shared> {
        Arc::new(Shared {
            delivered: AtomicU64::new(0),
            measuring: AtomicBool::new(false),
            hist: Mutex::new(histogram()),
        })
    }

    /// Counts a delivery and records its latency (straight into the shared
    /// histogram: merging whole histograms costs a pass over every bucket).
    /// `_local` is kept for the callers that batch; it stays empty.
    pub(crate) fn record(&self, _local: &mut hdrhistogram::Histogram<u64>, payload: &[u8]) {
        if !self.measuring.load(Ordering::Relaxed) {
            return;
        }
        if let Some((ts, _)) = parse_payload(payload) {
            if let Ok(mut h) = self.hist.lock() {
                let _ = h.record((stats::now_ns().saturating_sub(ts) / 1000).max(1));
            }
            self.delivered.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Adds what a task recorded on its own (nothing, if it used
    /// [`Shared::record`]).
    pub(crate) fn merge(&self, local: &hdrhistogram::Histogram<u64>) {
        if local.is_empty() {
            return;
        }
        if let Ok(mut h) = self.hist.lock() {
            let _ = h.add(local);
        }
    }
}

pub(crate) async fn measure(
    shared: &Shared,
    pid: Option<u32>,
    secs: u64,
) -> (
    u64,
    Duration,
    Option<stats::ProcSample>,
    Option<stats::ProcSample>,
) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = stats::sample(pid);
    shared.measuring.store(true, Ordering::Relaxed);
    let base = shared.delivered.load(Ordering::Relaxed);
    let start = Instant::now();
    let bar = ProgressBar::new(secs).with_message("measuring");
    for _ in 0..secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let count = shared.delivered.load(Ordering::Relaxed) - base;
    let elapsed = start.elapsed();
    shared.measuring.store(false, Ordering::Relaxed);
    (count, elapsed, before, stats::sample(pid))
}

/// MQTT pairs: QoS 1, one topic per pair, at most `window` publishes
/// awaiting their PUBACK per sender; a message counts when its subscriber
/// has it (and acknowledges it). Driven by [`crate::mqtt_wire`], a client
/// that writes many packets per call, as the imkit generator does.
pub(crate) async fn mqtt_pairs(
    t: &Target,
    pairs: usize,
    window: usize,
    secs: u64,
    fire: bool,
) -> Result<Report, String> {
    if fire {
        return Err("fire-and-forget is measured against NATS core, not MQTT".into());
    }
    let run = run_id();
    let shared = Shared::new();
    let mut tasks = Vec::new();
    for i in 0..pairs {
        let topic = format!("bench/{run}/{i}");
        let (mut rrd, mut rwr, mut rbuf) =
            mqtt_wire::connect(&t.addr, &format!("r{run}-{i}")).await?;
        mqtt_wire::subscribe(&mut rrd, &mut rwr, &mut rbuf, &topic).await?;
        tasks.push(tokio::spawn(mqtt_subscriber(
            rrd,
            rwr,
            rbuf,
            shared.clone(),
        )));
        let (mut srd, mut swr, mut sbuf) =
            mqtt_wire::connect(&t.addr, &format!("s{run}-{i}")).await?;
        let gate = Arc::new(tokio::sync::Semaphore::new(window.max(1)));
        let acks = gate.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                while let Some(p) = mqtt_wire::parse(&mut sbuf) {
                    if p.kind == mqtt_wire::PUBACK {
                        acks.add_permits(1);
                    }
                }
                if !matches!(srd.read_buf(&mut sbuf).await, Ok(n) if n > 0) {
                    break;
                }
            }
        }));
        tasks.push(tokio::spawn(async move {
            let mut out = BytesMut::with_capacity(64 * 160);
            let mut body = [0u8; 100];
            let mut ix = 0u64;
            loop {
                let Ok(p) = gate.acquire().await else { break };
                p.forget();
                let mut n = 1;
                while n < 64 {
                    match gate.try_acquire() {
                        Ok(p) => {
                            p.forget();
                            n += 1;
                        }
                        Err(_) => break,
                    }
                }
                for _ in 0..n {
                    ix += 1;
                    stats::write_payload(&mut body, ix);
                    mqtt_wire::put_publish(
                        &mut out,
                        topic.as_bytes(),
                        (ix % 65_535 + 1) as u16,
                        &body,
                    );
                }
                if swr.write_all(&out).await.is_err() {
                    break;
                }
                out.clear();
            }
        }));
    }
    let (count, elapsed, before, after) = measure(&shared, t.pid, secs).await;
    for task in &tasks {
        task.abort();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut r = Report {
        scenario: "reliable".into(),
        system: "Mqtt".into(),
        connections: pairs * 2,
        notes: format!("{pairs} pairs, window {window}, QoS 1"),
        ..Report::default()
    };
    let h = shared
        .hist
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|_| histogram());
    finish(&mut r, count, elapsed, &h, before, after);
    Ok(r)
}

/// An MQTT subscriber: records each message and acknowledges every
/// publish of a read in one write.
async fn mqtt_subscriber(
    mut rd: tokio::net::tcp::OwnedReadHalf,
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    mut buf: BytesMut,
    shared: Arc<Shared>,
) {
    let mut local = histogram();
    let mut out = BytesMut::with_capacity(4 * 1024);
    loop {
        while let Some(p) = mqtt_wire::parse(&mut buf) {
            if let Some((pid, payload)) = p.publish() {
                shared.record(&mut local, payload);
                if pid != 0 {
                    mqtt_wire::put_puback(&mut out, pid);
                }
            }
        }
        if local.len() >= 64 {
            shared.merge(&local);
            local.reset();
        }
        if !out.is_empty() {
            if wr.write_all(&out).await.is_err() {
                break;
            }
            out.clear();
        }
        if !matches!(rd.read_buf(&mut buf).await, Ok(n) if n > 0) {
            break;
        }
    }
    shared.merge(&local);
}

/// MQTT pairs at a fixed offered rate (open loop), QoS 1. Latency: publish
/// to PUBACK (the broker has it), and publish to the subscriber.
pub(crate) async fn mqtt_rate(
    t: &Target,
    pairs: usize,
    rate: u64,
    secs: u64,
) -> Result<Report, String> {
    let run = run_id();
    let shared = Shared::new();
    let acks = Arc::new(Mutex::new(histogram()));
    let mut tasks = Vec::new();
    let period = Duration::from_secs_f64(pairs as f64 / rate.max(1) as f64);
    for i in 0..pairs {
        let topic = format!("bench/{run}/{i}");
        let (mut rrd, mut rwr, mut rbuf) =
            mqtt_wire::connect(&t.addr, &format!("r{run}-{i}")).await?;
        mqtt_wire::subscribe(&mut rrd, &mut rwr, &mut rbuf, &topic).await?;
        tasks.push(tokio::spawn(mqtt_subscriber(
            rrd,
            rwr,
            rbuf,
            shared.clone(),
        )));
        let (mut srd, mut swr, mut sbuf) =
            mqtt_wire::connect(&t.addr, &format!("s{run}-{i}")).await?;
        // PUBACKs come back in publish order: a queue of send times.
        let sent_at = Arc::new(Mutex::new(std::collections::VecDeque::<u64>::new()));
        let (shared2, acks2, sent2) = (shared.clone(), acks.clone(), sent_at.clone());
        tasks.push(tokio::spawn(async move {
            let mut local = histogram();
            loop {
                while let Some(p) = mqtt_wire::parse(&mut sbuf) {
                    if p.kind != mqtt_wire::PUBACK {
                        continue;
                    }
                    let ts = sent2.lock().ok().and_then(|mut q| q.pop_front());
                    if let Some(ts) = ts
                        && shared2.measuring.load(Ordering::Relaxed)
                    {
                        let _ = local.record((stats::now_ns().saturating_sub(ts) / 1000).max(1));
                    }
                }
                if local.len() >= 64
                    && let Ok(mut h) = acks2.lock()
                {
                    let _ = h.add(&local);
                    local.reset();
                }
                if !matches!(srd.read_buf(&mut sbuf).await, Ok(n) if n > 0) {
                    break;
                }
            }
            if let Ok(mut h) = acks2.lock() {
                let _ = h.add(&local);
            }
        }));
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut out = BytesMut::with_capacity(256);
            let mut body = [0u8; 100];
            let mut ix = 0u64;
            loop {
                tick.tick().await;
                ix += 1;
                stats::write_payload(&mut body, ix);
                if let Ok(mut q) = sent_at.lock() {
                    q.push_back(stats::now_ns());
                }
                mqtt_wire::put_publish(&mut out, topic.as_bytes(), (ix % 65_535 + 1) as u16, &body);
                if swr.write_all(&out).await.is_err() {
                    break;
                }
                out.clear();
            }
        }));
    }
    let (count, elapsed, before, after) = measure(&shared, t.pid, secs).await;
    for task in &tasks {
        task.abort();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut r = Report {
        scenario: "rate".into(),
        system: "Mqtt".into(),
        connections: pairs * 2,
        notes: format!(
            "{pairs} pairs, offered {rate} msg/s, QoS 1; p50/p99 are publish to subscriber, ack_* publish to PUBACK"
        ),
        ..Report::default()
    };
    let h = shared
        .hist
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|_| histogram());
    finish(&mut r, count, elapsed, &h, before, after);
    if let Ok(a) = acks.lock() {
        r.set_ack(&a);
    }
    Ok(r)
}

/// Broadcast state: per message, when it was sent and when the last member got it.
pub(crate) struct Fanout {
    sent_at: Vec<AtomicU64>,
    last_seen: Vec<AtomicU64>,
    received: AtomicU64,
}

impl Fanout {
    pub(crate) fn new(total: usize) -> Arc<Fanout> {
        Arc::new(Fanout {
            sent_at: (0..=total).map(|_| AtomicU64::new(0)).collect(),
            last_seen: (0..=total).map(|_| AtomicU64::new(0)).collect(),
            received: AtomicU64::new(0),
        })
    }

    pub(crate) fn seen(&self, payload: &[u8]) {
        if let Some((_, ix)) = parse_payload(payload)
            && let Some(slot) = self.last_seen.get(ix as usize)
        {
            slot.fetch_max(stats::now_ns(), Ordering::Relaxed);
            self.received.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn report(
        &self,
        system: &str,
        members: usize,
        rate: u64,
        elapsed: Duration,
        before: Option<stats::ProcSample>,
        after: Option<stats::ProcSample>,
    ) -> Report {
        let mut hist = histogram();
        for ix in 1..self.sent_at.len() {
            let (s, l) = (
                self.sent_at[ix].load(Ordering::Relaxed),
                self.last_seen[ix].load(Ordering::Relaxed),
            );
            if l > s {
                let _ = hist.record(((l - s) / 1000).max(1));
            }
        }
        let got = self.received.load(Ordering::Relaxed);
        let expected = (self.sent_at.len() as u64 - 1) * members as u64;
        let mut r = Report {
            scenario: "broadcast".into(),
            system: system.into(),
            connections: members + 1,
            notes: format!("{members} members, {rate} msg/s, {got}/{expected} deliveries"),
            ..Report::default()
        };
        finish(&mut r, got, elapsed, &hist, before, after);
        r
    }
}

pub(crate) async fn pace(
    f: &Fanout,
    rate: u64,
    mut send: impl AsyncFnMut(u64) -> Result<(), String>,
) -> Result<(), String> {
    let total = f.sent_at.len() - 1;
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate.max(1)));
    for ix in 1..=total as u64 {
        tick.tick().await;
        f.sent_at[ix as usize].store(stats::now_ns(), Ordering::Relaxed);
        send(ix).await?;
    }
    Ok(())
}

pub(crate) async fn settle(f: &Fanout, members: usize) {
    let expected = (f.sent_at.len() as u64 - 1) * members as u64;
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One MQTT topic with `members` QoS 1 subscribers.
pub(crate) async fn mqtt_broadcast(
    t: &Target,
    members: usize,
    rate: u64,
    secs: u64,
) -> Result<Report, String> {
    let run = run_id();
    let topic = format!("bench/{run}/all");
    let f = Fanout::new((rate * secs) as usize);
    let mut tasks = Vec::new();
    let bar = ProgressBar::new(members as u64).with_message("subscribing");
    for i in 0..members {
        let (c, mut el) = mqtt_connect(&t.addr, &format!("m{run}-{i}"), 100).await?;
        mqtt_subscribe(&c, &mut el, &topic).await?;
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let _keep = c;
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(MqttPacket::Publish(p))) => f.seen(&p.payload),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let (sc, mut sel) = mqtt_connect(&t.addr, &format!("ms{run}"), 1000).await?;
    tasks.push(tokio::spawn(
        async move { while sel.poll().await.is_ok() {} },
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = stats::sample(t.pid);
    let start = Instant::now();
    pace(&f, rate, async |ix| {
        sc.publish(
            topic.as_str(),
            QoS::AtLeastOnce,
            false,
            payload(ix).into_bytes(),
        )
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
    Ok(f.report("Mqtt", members, rate, elapsed, before, after))
}
