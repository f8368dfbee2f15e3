//! A conversation of many messages against an empty one (imkit only):
//! is the cost of a send, or of a history page, flat in the conversation's
//! length?
//!
//! One user sends from `senders` devices (each with `window` sends in
//! flight) to a user who stays offline, so nothing fans out but to the
//! sender's own other devices (the same in every step). Steps: fill the
//! large conversation; send closed-loop into an empty conversation, then
//! into the large one (throughput and send-to-SENT latency); page the
//! history of the large one from random points in its middle, then of the
//! small one (pages per second and request-to-answer latency).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::StreamExt;
use imkit_proto::{Frame, Packet, PacketId, PacketKind, pb};
use rand::Rng;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Semaphore;

use crate::imkit::{Rd, login_device, run_id};
use crate::stats::{self, finish, histogram};
use crate::wire::{SendTemplate, flush, sent_seq};
use crate::{Report, Target};

/// What the tasks of one step share.
struct Step {
    done: AtomicU64,
    /// Answers that were errors (a refused send is not a send).
    refused: AtomicU64,
    /// The first refusal's code and message.
    first_refusal: Mutex<Option<String>>,
    /// Stop issuing once this many were issued (filling), or never (0).
    budget: u64,
    issued: AtomicU64,
    stop: AtomicBool,
    hist: Mutex<hdrhistogram::Histogram<u64>>,
}

impl Step {
    fn new(budget: u64) -> Arc<Step> {
        Arc::new(Step {
            done: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            first_refusal: Mutex::new(None),
            budget,
            issued: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            hist: Mutex::new(histogram()),
        })
    }

    /// Takes one unit of the budget; false once it is spent or stopped.
    fn take(&self) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return false;
        }
        self.budget == 0 || self.issued.fetch_add(1, Ordering::Relaxed) < self.budget
    }
}

fn echoed_ts(frame: &Frame) -> u64 {
    let id = frame.header.packet_id.0;
    u64::from_be_bytes([id[0], id[1], id[2], id[3], id[4], id[5], id[6], id[7]])
}

/// One sending device: its reader and writer halves.
struct Device {
    rd: Rd,
    wr: OwnedWriteHalf,
}

/// Runs a closed-loop step over every device: `issue` writes one request
/// into the buffer, `answers` recognises the answer to it. Returns the step
/// after `secs` (or once its budget is answered) and the devices back.
/// Runs one step: each device keeps `window` requests in flight. Request
/// indexes (and so client message ids) start at `phase << 44`, so every
/// step sends ids of its own: a resend of an earlier step's id would be
/// answered as a duplicate (or refused, in another conversation) and
/// measure nothing. A step with refused requests fails.
async fn closed_loop(
    devices: Vec<Device>,
    window: usize,
    step: Arc<Step>,
    (phase, secs): (u64, Option<u64>),
    issue: impl Fn(&mut BytesMut, u64) + Send + Sync + Clone + 'static,
    answers: fn(&Frame) -> bool,
) -> Result<(Vec<Device>, Duration), String> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (n, Device { mut rd, mut wr }) in devices.into_iter().enumerate() {
        let gate = Arc::new(Semaphore::new(window));
        let (step_r, gate_r) = (step.clone(), gate.clone());
        let reader = tokio::spawn(async move {
            let mut local = histogram();
            loop {
                // All answers are in once the step stopped and every slot
                // of the window is free again.
                if step_r.stop.load(Ordering::Relaxed) && gate_r.available_permits() >= window {
                    break;
                }
                let f = tokio::select! {
                    f = rd.next() => match f {
                        Some(Ok(f)) => f,
                        _ => break,
                    },
                    _ = tokio::time::sleep(Duration::from_millis(20)) => continue,
                };
                let refused = f.header.kind == PacketKind::Error as u16;
                if refused {
                    step_r.refused.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut first) = step_r.first_refusal.lock()
                        && first.is_none()
                    {
                        let e = Packet::from_frame(&f);
                        *first = Some(format!("{e:?}"));
                    }
                }
                if answers(&f) || refused {
                    let _ =
                        local.record((stats::now_ns().saturating_sub(echoed_ts(&f)) / 1000).max(1));
                    let done = step_r.done.fetch_add(1, Ordering::Relaxed) + 1;
                    gate_r.add_permits(1);
                    if step_r.budget > 0 && done >= step_r.budget {
                        step_r.stop.store(true, Ordering::Relaxed);
                    }
                }
            }
            if let Ok(mut h) = step_r.hist.lock() {
                let _ = h.add(&local);
            }
            rd
        });
        let (step_w, issue) = (step.clone(), issue.clone());
        let writer = tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(64 * 256);
            let mut index = (phase << 44) | ((n as u64) << 40);
            'send: loop {
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
                let mut used = 0;
                while used < n && step_w.take() {
                    index += 1;
                    issue(&mut buf, index);
                    used += 1;
                }
                if flush(&mut wr, &mut buf).await.is_err() {
                    break;
                }
                if used < n {
                    // Give the unused slots back, so the reader can tell
                    // when every answer is in.
                    gate.add_permits(n - used);
                    break 'send;
                }
            }
            wr
        });
        tasks.push((reader, writer));
    }
    if let Some(secs) = secs {
        tokio::time::sleep(Duration::from_secs(secs)).await;
        step.stop.store(true, Ordering::Relaxed);
    }
    let mut back = Vec::new();
    for (reader, writer) in tasks {
        let wr = writer.await.map_err(|e| e.to_string())?;
        let rd = tokio::time::timeout(Duration::from_secs(60), reader)
            .await
            .map_err(|_| "answers did not arrive within 60 s".to_string())?
            .map_err(|e| e.to_string())?;
        back.push(Device { rd, wr });
    }
    let refused = step.refused.load(Ordering::Relaxed);
    if refused > 0 {
        let first = step.first_refusal.lock().ok().and_then(|f| f.clone());
        return Err(format!(
            "{refused} requests were refused (first: {})",
            first.unwrap_or_default()
        ));
    }
    Ok((back, started.elapsed()))
}

fn history_request(
    conv: String,
    span: (u64, u64),
) -> impl Fn(&mut BytesMut, u64) + Send + Sync + Clone + 'static {
    move |buf: &mut BytesMut, index: u64| {
        let from = rand::rng().random_range(span.0..=span.1);
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&stats::now_ns().to_be_bytes());
        id[8..].copy_from_slice(&index.to_be_bytes());
        let packet = Packet::History(pb::HistoryRequest {
            conversation_id: conv.clone(),
            from_seq: from,
            backward: true,
            limit: 50,
        });
        let _ = packet.to_frame(PacketId(id)).encode(buf, usize::MAX);
    }
}

fn is_history(f: &Frame) -> bool {
    f.header.kind == PacketKind::HistoryResponse as u16
}

fn is_sent(f: &Frame) -> bool {
    sent_seq(f).is_some()
}

/// CPU and RSS samples around a step.
type Samples = (Option<stats::ProcSample>, Option<stats::ProcSample>);

fn report(
    t: &Target,
    what: &str,
    step: &Step,
    elapsed: Duration,
    (before, after): Samples,
    notes: String,
    connections: usize,
) -> Report {
    let mut r = Report {
        scenario: "big-conversation".into(),
        system: format!("{:?}", t.system),
        connections,
        notes: format!("{what}: {notes}"),
        ..Report::default()
    };
    let h = step
        .hist
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|_| histogram());
    finish(
        &mut r,
        step.done.load(Ordering::Relaxed),
        elapsed,
        &h,
        before,
        after,
    );
    r
}

/// Fills, then measures; see the module doc.
pub(crate) async fn run(
    t: &Target,
    messages: u64,
    senders: usize,
    window: usize,
    secs: u64,
) -> Result<Vec<Report>, String> {
    let run = run_id();
    let (me, big_peer, small_peer) = (
        format!("bc{run}-a"),
        format!("bc{run}-b"),
        format!("bc{run}-c"),
    );
    let conv_of = |peer: &str| {
        if me.as_str() < peer {
            format!("d:{me}:{peer}")
        } else {
            format!("d:{peer}:{me}")
        }
    };
    let (big, small) = (conv_of(&big_peer), conv_of(&small_peer));
    let mut devices = Vec::new();
    for d in 0..senders.max(1) {
        let (rd, wr) = login_device(t, &me, &format!("dev{d}")).await?;
        devices.push(Device {
            rd,
            wr: wr.into_inner(),
        });
    }
    let to_big = SendTemplate::new(&big_peer, false)?;
    let to_small = SendTemplate::new(&small_peer, false)?;
    let mut out = Vec::new();

    // Fill.
    let step = Step::new(messages);
    let before = stats::sample(t.pid);
    let tpl = to_big.clone();
    let (devices, took) = closed_loop(
        devices,
        window,
        step.clone(),
        (1, None),
        move |b, i| tpl.write(b, i),
        is_sent,
    )
    .await?;
    out.push(report(
        t,
        "fill",
        &step,
        took,
        (before, stats::sample(t.pid)),
        format!("{messages} messages into one conversation"),
        senders,
    ));

    // Sends into the empty conversation, then into the large one.
    let mut devices = devices;
    for (phase, label, tpl) in [
        (2, "send into an empty conversation", to_small),
        (3, "send into the large conversation", to_big),
    ] {
        let step = Step::new(0);
        let before = stats::sample(t.pid);
        let (back, took) = closed_loop(
            devices,
            window,
            step.clone(),
            (phase, Some(secs)),
            move |b, i| tpl.write(b, i),
            is_sent,
        )
        .await?;
        devices = back;
        let notes = format!("{senders} devices x window {window}; latency is send to SENT");
        out.push(report(
            t,
            label,
            &step,
            took,
            (before, stats::sample(t.pid)),
            notes,
            senders,
        ));
    }

    // History pages from the middle of each.
    let small_len = out.get(1).map_or(0, |r| r.delivered);
    for (label, conv, span) in [
        (
            "history pages from the middle of the large conversation",
            big,
            (messages / 4, 3 * messages / 4),
        ),
        (
            "history pages from the middle of the small conversation",
            small,
            (51, small_len.max(52)),
        ),
    ] {
        let step = Step::new(0);
        let before = stats::sample(t.pid);
        let (back, took) = closed_loop(
            devices,
            4,
            step.clone(),
            (4, Some(secs)),
            history_request(conv, span),
            is_history,
        )
        .await?;
        devices = back;
        let notes = format!(
            "pages of 50, backward from seq {}..{}; {senders} devices x 4 in flight; latency is request to answer",
            span.0, span.1
        );
        out.push(report(
            t,
            label,
            &step,
            took,
            (before, stats::sample(t.pid)),
            notes,
            senders,
        ));
    }
    drop(devices);
    Ok(out)
}
