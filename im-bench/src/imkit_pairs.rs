//! 1:1 scenarios against imkit: closed-loop pairs (reliable,
//! fire-and-forget, or live-only signals) and a fixed offered rate.
//!
//! The generator is kept cheap so that it is not what limits the figure:
//! sends are patched into a pre-encoded frame ([`SendTemplate`]) and written
//! many per `write`; pushes are read without decoding the protobuf; a
//! receiver acknowledges delivery once per batch of frames it read, up to
//! the highest seq, as the SDK does (receipts are cumulative cursors).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::{FutureExt, StreamExt};
use imkit_proto::{Frame, Packet, PacketKind, pb};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Semaphore;

use crate::imkit::{Rd, login_many, run_id};
use crate::stats::{self, finish, histogram, parse_payload};
use crate::wire::{
    SendTemplate, delivered_up_to, flush, pushed, put_delivered, put_packet, sent_seq, signalled,
};
use crate::{Report, Target};

/// Most sends one write carries.
const MAX_BURST: usize = 64;

/// What every task of a run shares.
struct Run {
    /// Messages that completed while measuring.
    done: AtomicU64,
    measuring: AtomicBool,
    /// Send to receiver.
    delivery: Mutex<hdrhistogram::Histogram<u64>>,
    /// Send to SENT.
    ack: Mutex<hdrhistogram::Histogram<u64>>,
}

impl Run {
    fn new() -> Arc<Run> {
        Arc::new(Run {
            done: AtomicU64::new(0),
            measuring: AtomicBool::new(false),
            delivery: Mutex::new(histogram()),
            ack: Mutex::new(histogram()),
        })
    }

    fn measuring(&self) -> bool {
        self.measuring.load(Ordering::Relaxed)
    }

    fn merge(into: &Mutex<hdrhistogram::Histogram<u64>>, local: &mut hdrhistogram::Histogram<u64>) {
        if local.is_empty() {
            return;
        }
        if let Ok(mut h) = into.lock() {
            let _ = h.add(&*local);
        }
        local.reset();
    }

    /// Records a latency straight into a shared histogram (merging whole
    /// histograms costs a pass over every bucket).
    fn record(into: &Mutex<hdrhistogram::Histogram<u64>>, micros: u64) {
        if let Ok(mut h) = into.lock() {
            let _ = h.record(micros);
        }
    }
}

fn micros_since(ts_ns: u64) -> u64 {
    (stats::now_ns().saturating_sub(ts_ns) / 1000).max(1)
}

/// The send timestamp the server echoes in a response's packet id.
fn echoed_ts(frame: &Frame) -> u64 {
    let id = frame.header.packet_id.0;
    u64::from_be_bytes([id[0], id[1], id[2], id[3], id[4], id[5], id[6], id[7]])
}

/// A receiver: records latency and, when `ack`, acknowledges delivery once
/// per batch of frames read. Counts deliveries when `count` (fire-and-forget).
async fn receive(
    mut rd: Rd,
    mut wr: OwnedWriteHalf,
    conv: String,
    run: Arc<Run>,
    ack: bool,
    count: bool,
) {
    let mut buf = BytesMut::with_capacity(256);
    let mut acked = 0u64;
    let on_frame = |f: &Frame, top: &mut u64| {
        if let Some(data) = signalled(f) {
            if run.measuring()
                && let Some((ts, _)) = parse_payload(data)
            {
                Run::record(&run.delivery, micros_since(ts));
                run.done.fetch_add(1, Ordering::Relaxed);
            }
        } else if let Some((seq, text)) = pushed(f) {
            *top = (*top).max(seq);
            if run.measuring()
                && let Some((ts, _)) = parse_payload(text)
            {
                Run::record(&run.delivery, micros_since(ts));
                if count {
                    run.done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    };
    while let Some(Ok(f)) = rd.next().await {
        let mut top = 0;
        on_frame(&f, &mut top);
        while let Some(Some(Ok(f))) = rd.next().now_or_never() {
            on_frame(&f, &mut top);
        }
        if ack && top > acked {
            acked = top;
            if put_delivered(&mut buf, &conv, top).is_err()
                || flush(&mut wr, &mut buf).await.is_err()
            {
                break;
            }
        }
    }
}

/// The conversation id of two users.
fn direct(a: &str, b: &str) -> String {
    if a < b {
        format!("d:{a}:{b}")
    } else {
        format!("d:{b}:{a}")
    }
}

/// Logs in `pairs` senders and receivers; returns them with the receiver's
/// name.
async fn connect_pairs(
    t: &Target,
    pairs: usize,
) -> Result<Vec<(Rd, OwnedWriteHalf, Rd, OwnedWriteHalf, String, String)>, String> {
    let run = run_id();
    let senders: Vec<String> = (0..pairs).map(|i| format!("s{run}-{i}")).collect();
    let receivers: Vec<String> = (0..pairs).map(|i| format!("r{run}-{i}")).collect();
    let mut senders = login_many(t, senders).await?.into_iter();
    let mut receivers = login_many(&t.receiving(), receivers).await?.into_iter();
    let mut out = Vec::with_capacity(pairs);
    for i in 0..pairs {
        let (s_rd, s_wr) = senders.next().ok_or("missing connection")?;
        let (r_rd, r_wr) = receivers.next().ok_or("missing connection")?;
        let (s, r) = (format!("s{run}-{i}"), format!("r{run}-{i}"));
        out.push((
            s_rd,
            s_wr.into_inner(),
            r_rd,
            r_wr.into_inner(),
            direct(&s, &r),
            r,
        ));
    }
    Ok(out)
}

/// Measures for `secs` after a second of warm-up, stops the scenario's
/// tasks (`stop` first, where its writers check one), and fills `report`
/// with the count, the delivery latencies and the CPU samples.
async fn measure(
    run: &Run,
    t: &Target,
    secs: u64,
    tasks: &[tokio::task::JoinHandle<()>],
    stop: Option<&AtomicBool>,
    mut report: Report,
) -> Report {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = stats::sample(t.pid);
    run.measuring.store(true, Ordering::Relaxed);
    let base = run.done.load(Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let count = run.done.load(Ordering::Relaxed) - base;
    let elapsed = start.elapsed();
    run.measuring.store(false, Ordering::Relaxed);
    let after = stats::sample(t.pid);
    if let Some(stop) = stop {
        stop.store(true, Ordering::Relaxed);
    }
    for task in tasks {
        task.abort();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let h = run
        .delivery
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|_| histogram());
    finish(&mut report, count, elapsed, &h, before, after);
    report
}

/// 1:1 pairs with a window of in-flight messages per sender. Reliable: a
/// message counts when the sender has its SENT and the delivered receipt
/// covering it. Fire-and-forget: when the receiver has it (senders wait only
/// for SENT to keep the window).
pub(crate) async fn pairs(
    t: &Target,
    pairs: usize,
    window: usize,
    secs: u64,
    fire: bool,
) -> Result<Report, String> {
    let run = Run::new();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (s_rd, s_wr, r_rd, r_wr, conv, receiver) in connect_pairs(t, pairs).await? {
        tasks.push(tokio::spawn(receive(
            r_rd,
            r_wr,
            conv,
            run.clone(),
            !fire,
            fire,
        )));
        let gate = Arc::new(Semaphore::new(window));
        tasks.push(tokio::spawn(complete(
            s_rd,
            run.clone(),
            gate.clone(),
            fire,
        )));
        let template = SendTemplate::new(&receiver, false)?;
        tasks.push(tokio::spawn(keep_window_full(
            s_wr,
            template,
            gate,
            stop.clone(),
        )));
    }
    let report = Report {
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
    Ok(measure(&run, t, secs, &tasks, Some(&stop), report).await)
}

/// 1:1 pairs of live-only `Signal`s, imkit's counterpart of NATS core
/// publishing: nothing stored, nothing answered. Each sender writes
/// `window` signals and a `Ping`, then waits for the `Pong` (as the NATS
/// publisher flushes every `window` messages); a signal counts when its
/// receiver has it.
pub(crate) async fn signal_pairs(
    t: &Target,
    pairs: usize,
    window: usize,
    secs: u64,
) -> Result<Report, String> {
    let run = Run::new();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (mut s_rd, mut s_wr, r_rd, r_wr, conv, receiver) in connect_pairs(t, pairs).await? {
        tasks.push(tokio::spawn(receive(
            r_rd,
            r_wr,
            conv,
            run.clone(),
            false,
            true,
        )));
        let template = SendTemplate::signal(&receiver)?;
        let stop = stop.clone();
        let window = window.max(1);
        tasks.push(tokio::spawn(async move {
            let ping = Packet::Ping(pb::Ping { client_time_ms: 0 });
            let mut buf = BytesMut::with_capacity(window * 200);
            let mut index = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..window {
                    index += 1;
                    template.write(&mut buf, index);
                }
                if put_packet(&mut buf, &ping).is_err() || flush(&mut s_wr, &mut buf).await.is_err()
                {
                    break;
                }
                // Up to the Pong; a refused signal's error would come first.
                loop {
                    match s_rd.next().await {
                        Some(Ok(f)) if f.header.kind == PacketKind::Pong as u16 => break,
                        Some(Ok(_)) => {}
                        _ => return,
                    }
                }
            }
        }));
    }
    let report = Report {
        scenario: "fire-and-forget".into(),
        system: format!("{:?}", t.system),
        connections: pairs * 2,
        notes: format!("{pairs} pairs, live-only signals, a ping every {window}"),
        ..Report::default()
    };
    Ok(measure(&run, t, secs, &tasks, Some(&stop), report).await)
}

/// A sender's reader: completes messages and frees window slots.
async fn complete(mut rd: Rd, run: Arc<Run>, gate: Arc<Semaphore>, fire: bool) {
    let mut acked: VecDeque<u64> = VecDeque::new();
    let mut receipt_upto = 0u64;
    while let Some(Ok(f)) = rd.next().await {
        let mut done = 0usize;
        if let Some(seq) = sent_seq(&f) {
            if fire || seq <= receipt_upto {
                done += 1;
            } else {
                acked.push_back(seq);
            }
        } else if let Some(upto) = delivered_up_to(&f) {
            receipt_upto = receipt_upto.max(upto);
            while acked.front().is_some_and(|s| *s <= receipt_upto) {
                acked.pop_front();
                done += 1;
            }
        } else if f.header.kind == imkit_proto::PacketKind::Error as u16 {
            done += 1;
        }
        if done > 0 {
            if !fire && run.measuring() {
                run.done.fetch_add(done as u64, Ordering::Relaxed);
            }
            gate.add_permits(done);
        }
    }
}

/// A sender's writer: keeps the window full, writing every send the window
/// allows in one call.
async fn keep_window_full(
    mut wr: OwnedWriteHalf,
    template: SendTemplate,
    gate: Arc<Semaphore>,
    stop: Arc<AtomicBool>,
) {
    let mut buf = BytesMut::with_capacity(MAX_BURST * 256);
    let mut index = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let Ok(p) = gate.acquire().await else { break };
        p.forget();
        let mut n = 1;
        while n < MAX_BURST {
            match gate.try_acquire() {
                Ok(p) => {
                    p.forget();
                    n += 1;
                }
                Err(_) => break,
            }
        }
        for _ in 0..n {
            index += 1;
            template.write(&mut buf, index);
        }
        if flush(&mut wr, &mut buf).await.is_err() {
            break;
        }
    }
}

/// 1:1 pairs at a fixed offered rate (open loop): each sender sends on its
/// own clock whatever the server answers. Latency: send to SENT, and send
/// to the receiver (which acknowledges delivery as in `pairs`).
pub(crate) async fn rate(t: &Target, pairs: usize, rate: u64, secs: u64) -> Result<Report, String> {
    let run = Run::new();
    let mut tasks = Vec::new();
    let period = Duration::from_secs_f64(pairs as f64 / rate.max(1) as f64);
    for (mut s_rd, mut s_wr, r_rd, r_wr, conv, receiver) in connect_pairs(t, pairs).await? {
        tasks.push(tokio::spawn(receive(
            r_rd,
            r_wr,
            conv,
            run.clone(),
            true,
            true,
        )));
        let run2 = run.clone();
        tasks.push(tokio::spawn(async move {
            let mut local = histogram();
            while let Some(Ok(f)) = s_rd.next().await {
                if sent_seq(&f).is_some() && run2.measuring() {
                    Run::record(&run2.ack, micros_since(echoed_ts(&f)));
                    if local.len() >= 64 {
                        Run::merge(&run2.ack, &mut local);
                    }
                }
            }
        }));
        let template = SendTemplate::new(&receiver, false)?;
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut buf = BytesMut::with_capacity(256);
            let mut index = 0u64;
            loop {
                tick.tick().await;
                index += 1;
                template.write(&mut buf, index);
                if flush(&mut s_wr, &mut buf).await.is_err() {
                    break;
                }
            }
        }));
    }
    let report = Report {
        scenario: "rate".into(),
        system: format!("{:?}", t.system),
        connections: pairs * 2,
        notes: format!(
            "{pairs} pairs, offered {rate} msg/s; p50/p99 are send to receiver, ack_* send to SENT"
        ),
        ..Report::default()
    };
    let mut report = measure(&run, t, secs, &tasks, None, report).await;
    if let Ok(a) = run.ack.lock() {
        report.set_ack(&a);
    }
    Ok(report)
}
