//! RabbitMQ, the durable peer: what a team would otherwise use for "stored
//! before acknowledged". Per pair a durable queue; persistent messages;
//! publisher confirms (the broker has written the message); manual,
//! cumulative acks at the consumer (one per batch read, as imkit's
//! delivered receipts are). Pairs share a few AMQP connections, one channel
//! per publisher and per consumer: RabbitMQ here runs with a 1,024 file
//! limit.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio::sync::Semaphore;

use crate::peers::{Shared, measure, run_id};
use crate::stats::{self, finish, histogram, payload};
use crate::{Report, Target};

/// AMQP connections the pairs share.
const CONNECTIONS: usize = 8;

fn e(err: lapin::Error) -> String {
    format!("amqp: {err}")
}

async fn connect(t: &Target) -> Result<Vec<Connection>, String> {
    let uri = if t.addr.starts_with("amqp://") {
        t.addr.clone()
    } else {
        format!("amqp://guest:guest@{}/%2f", t.addr)
    };
    let mut conns = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        conns.push(
            Connection::connect(&uri, ConnectionProperties::default())
                .await
                .map_err(e)?,
        );
    }
    Ok(conns)
}

/// One pair's channels: a durable queue, a confirming publisher channel and
/// a consumer channel that may hold `prefetch` unacknowledged messages.
async fn pair(
    conn: &Connection,
    queue: &str,
    prefetch: u16,
) -> Result<(Channel, lapin::Consumer), String> {
    let publisher = conn.create_channel().await.map_err(e)?;
    publisher
        .queue_declare(
            queue.into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .map_err(e)?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(e)?;
    let consumer = conn.create_channel().await.map_err(e)?;
    consumer
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .map_err(e)?;
    let deliveries = consumer
        .basic_consume(
            queue.into(),
            format!("c-{queue}").as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(e)?;
    Ok((publisher, deliveries))
}

/// A consumer: records latency, counts deliveries while measuring, and acks
/// each batch it read with one cumulative ack.
async fn consume(mut deliveries: lapin::Consumer, shared: Arc<Shared>) {
    let mut local = histogram();
    while let Some(Ok(first)) = deliveries.next().await {
        let mut last = first;
        shared.record(&mut local, &last.data);
        while let Some(Some(Ok(d))) = deliveries.next().now_or_never() {
            shared.record(&mut local, &d.data);
            last = d;
        }
        if local.len() >= 64 {
            shared.merge(&local);
            local.reset();
        }
        if last.ack(BasicAckOptions { multiple: true }).await.is_err() {
            break;
        }
    }
    shared.merge(&local);
}

fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

async fn delete_queues(conns: &[Connection], queues: &[String]) {
    let Some(conn) = conns.first() else { return };
    if let Ok(ch) = conn.create_channel().await {
        for q in queues {
            let _ = ch
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
    }
}

/// RabbitMQ pairs: at most `window` publishes awaiting their confirm per
/// publisher; a message counts when its consumer has it.
pub(crate) async fn pairs(
    t: &Target,
    pairs: usize,
    window: usize,
    secs: u64,
) -> Result<Report, String> {
    let run = run_id();
    let conns = connect(t).await?;
    let shared = Shared::new();
    let mut tasks = Vec::new();
    let mut queues = Vec::new();
    for i in 0..pairs {
        let queue = format!("bench.{run}.{i}");
        let conn = &conns[i % conns.len()];
        let prefetch = u16::try_from(window * 4).unwrap_or(u16::MAX);
        let (publisher, deliveries) = pair(conn, &queue, prefetch).await?;
        tasks.push(tokio::spawn(consume(deliveries, shared.clone())));
        let gate = Arc::new(Semaphore::new(window.max(1)));
        // Confirms come back in publish order: one task awaits them and
        // frees a window slot for each.
        let (confirms_tx, mut confirms_rx) =
            tokio::sync::mpsc::unbounded_channel::<lapin::PublisherConfirm>();
        let freed = gate.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(c) = confirms_rx.recv().await {
                if c.await.is_err() {
                    break;
                }
                freed.add_permits(1);
            }
        }));
        let q = queue.clone();
        tasks.push(tokio::spawn(async move {
            let mut ix = 0u64;
            loop {
                let Ok(p) = gate.acquire().await else { break };
                p.forget();
                ix += 1;
                let body = payload(ix);
                let Ok(confirm) = publisher
                    .basic_publish(
                        "".into(),
                        q.as_str().into(),
                        BasicPublishOptions::default(),
                        body.as_bytes(),
                        persistent(),
                    )
                    .await
                else {
                    break;
                };
                if confirms_tx.send(confirm).is_err() {
                    break;
                }
            }
        }));
        queues.push(queue);
    }
    let (count, elapsed, before, after) = measure(&shared, t.pid, secs).await;
    for task in &tasks {
        task.abort();
    }
    delete_queues(&conns, &queues).await;
    let mut r = Report {
        scenario: "reliable".into(),
        system: "Amqp".into(),
        connections: CONNECTIONS,
        notes: format!(
            "{pairs} pairs over {CONNECTIONS} connections, window {window}, durable queues, persistent messages, publisher confirms, manual acks"
        ),
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

/// RabbitMQ pairs at a fixed offered rate (open loop). Latency: publish to
/// confirm, and publish to the consumer.
pub(crate) async fn rate(t: &Target, pairs: usize, rate: u64, secs: u64) -> Result<Report, String> {
    let run = run_id();
    let conns = connect(t).await?;
    let shared = Shared::new();
    let acks = Arc::new(Mutex::new(histogram()));
    let period = Duration::from_secs_f64(pairs as f64 / rate.max(1) as f64);
    let mut tasks = Vec::new();
    let mut queues = Vec::new();
    for i in 0..pairs {
        let queue = format!("bench.{run}.{i}");
        let (publisher, deliveries) = pair(&conns[i % conns.len()], &queue, 1_000).await?;
        tasks.push(tokio::spawn(consume(deliveries, shared.clone())));
        let (confirms_tx, mut confirms_rx) =
            tokio::sync::mpsc::unbounded_channel::<(u64, lapin::PublisherConfirm)>();
        let (shared2, acks2) = (shared.clone(), acks.clone());
        tasks.push(tokio::spawn(async move {
            let mut local = histogram();
            while let Some((ts, c)) = confirms_rx.recv().await {
                if c.await.is_err() {
                    break;
                }
                if shared2.measuring.load(Ordering::Relaxed) {
                    let _ = local.record((stats::now_ns().saturating_sub(ts) / 1000).max(1));
                    if local.len() >= 64
                        && let Ok(mut h) = acks2.lock()
                    {
                        let _ = h.add(&local);
                        local.reset();
                    }
                }
            }
        }));
        let q = queue.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut ix = 0u64;
            loop {
                tick.tick().await;
                ix += 1;
                let body = payload(ix);
                let sent = stats::now_ns();
                let Ok(confirm) = publisher
                    .basic_publish(
                        "".into(),
                        q.as_str().into(),
                        BasicPublishOptions::default(),
                        body.as_bytes(),
                        persistent(),
                    )
                    .await
                else {
                    break;
                };
                if confirms_tx.send((sent, confirm)).is_err() {
                    break;
                }
            }
        }));
        queues.push(queue);
    }
    let (count, elapsed, before, after) = measure(&shared, t.pid, secs).await;
    for task in &tasks {
        task.abort();
    }
    delete_queues(&conns, &queues).await;
    let mut r = Report {
        scenario: "rate".into(),
        system: "Amqp".into(),
        connections: CONNECTIONS,
        notes: format!(
            "{pairs} pairs over {CONNECTIONS} connections, offered {rate} msg/s, durable; p50/p99 are publish to consumer, ack_* publish to confirm"
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
