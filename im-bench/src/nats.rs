//! The scenarios against NATS core (async-nats): idle connections, pairs
//! without acknowledgements, and broadcast to one subject.

use std::time::{Duration, Instant};

use futures::StreamExt;
use indicatif::ProgressBar;

use crate::peers::{Fanout, Shared, measure, pace, run_id, settle};
use crate::stats::{self, finish, histogram, payload};
use crate::{Report, Target};

/// Idle NATS connections.
pub(crate) async fn nats_idle(t: &Target, conns: usize) -> Result<Report, String> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = stats::sample(t.pid);
    let bar = ProgressBar::new(conns as u64).with_message("connecting");
    let mut held = Vec::with_capacity(conns);
    for _ in 0..conns {
        held.push(
            async_nats::connect(&t.addr)
                .await
                .map_err(|e| format!("nats connect: {e}"))?,
        );
        bar.inc(1);
    }
    bar.finish_and_clear();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = stats::sample(t.pid);
    let mut r = Report {
        scenario: "idle".into(),
        system: "Nats".into(),
        connections: conns,
        ..Report::default()
    };
    if let (Some(b), Some(a)) = (before, after) {
        r.rss_bytes = Some(a.rss);
        r.rss_per_connection = Some((a.rss as f64 - b.rss as f64) / conns as f64);
    }
    drop(held);
    Ok(r)
}

/// NATS core pairs: one subject per pair, no acknowledgements. The
/// publisher flushes every `window` messages to stay bounded.
pub(crate) async fn nats_pairs(
    t: &Target,
    pairs: usize,
    window: usize,
    secs: u64,
) -> Result<Report, String> {
    let run = run_id();
    let shared = Shared::new();
    let mut tasks = Vec::new();
    let bar = ProgressBar::new(pairs as u64).with_message("connecting");
    for i in 0..pairs {
        let subject = format!("bench.{run}.{i}");
        let rc = async_nats::connect(&t.addr)
            .await
            .map_err(|e| format!("nats: {e}"))?;
        let mut sub = rc
            .subscribe(subject.clone())
            .await
            .map_err(|e| format!("nats subscribe: {e}"))?;
        rc.flush().await.map_err(|e| e.to_string())?;
        let shared2 = shared.clone();
        tasks.push(tokio::spawn(async move {
            let _keep = rc;
            let mut local = histogram();
            while let Some(m) = sub.next().await {
                shared2.record(&mut local, &m.payload);
                if local.len() >= 16 {
                    shared2.merge(&local);
                    local.reset();
                }
            }
        }));
        let sc = async_nats::connect(&t.addr)
            .await
            .map_err(|e| format!("nats: {e}"))?;
        let window = window.max(1) as u64;
        tasks.push(tokio::spawn(async move {
            let mut ix = 0u64;
            loop {
                ix += 1;
                if sc
                    .publish(subject.clone(), payload(ix).into())
                    .await
                    .is_err()
                {
                    break;
                }
                if ix.is_multiple_of(window) && sc.flush().await.is_err() {
                    break;
                }
            }
        }));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let (count, elapsed, before, after) = measure(&shared, t.pid, secs).await;
    for task in &tasks {
        task.abort();
    }
    let mut r = Report {
        scenario: "fire-and-forget".into(),
        system: "Nats".into(),
        connections: pairs * 2,
        notes: format!("{pairs} pairs, flush every {window}"),
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

/// One NATS subject with `members` subscribers.
pub(crate) async fn nats_broadcast(
    t: &Target,
    members: usize,
    rate: u64,
    secs: u64,
) -> Result<Report, String> {
    let run = run_id();
    let subject = format!("bench.{run}.all");
    let f = Fanout::new((rate * secs) as usize);
    let mut tasks = Vec::new();
    let bar = ProgressBar::new(members as u64).with_message("subscribing");
    for _ in 0..members {
        let c = async_nats::connect(&t.addr)
            .await
            .map_err(|e| format!("nats: {e}"))?;
        let mut sub = c
            .subscribe(subject.clone())
            .await
            .map_err(|e| e.to_string())?;
        c.flush().await.map_err(|e| e.to_string())?;
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let _keep = c;
            while let Some(m) = sub.next().await {
                f.seen(&m.payload);
            }
        }));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let sc = async_nats::connect(&t.addr)
        .await
        .map_err(|e| format!("nats: {e}"))?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = stats::sample(t.pid);
    let start = Instant::now();
    pace(&f, rate, async |ix| {
        sc.publish(subject.clone(), payload(ix).into())
            .await
            .map_err(|e| e.to_string())?;
        sc.flush().await.map_err(|e| e.to_string())
    })
    .await?;
    settle(&f, members).await;
    let elapsed = start.elapsed();
    let after = stats::sample(t.pid);
    for task in &tasks {
        task.abort();
    }
    Ok(f.report("Nats", members, rate, elapsed, before, after))
}
