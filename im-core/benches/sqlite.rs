//! SQLite throughput: persisted 1:1 sends through the engine (group
//! commit, 64 concurrent senders) at FULL and NORMAL durability, and
//! history page reads on a conversation of 1,000,000 messages.
//!
//! `cargo bench -p imkit-core --bench sqlite --features sqlite`

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use imkit_core::model::{ConversationId, MessageId, UserId};
use imkit_core::store::Direction;
use imkit_core::store::sqlite::{Durability, SqliteOptions, open_stores};
use imkit_core::{Caller, Engine, EngineConfig};
use imkit_proto::pb;
use rand::Rng;

const SENDERS: usize = 64;

fn text(s: &str) -> Option<pb::Content> {
    Some(pb::Content {
        body: Some(pb::content::Body::Text(pb::Text {
            text: s.into(),
            mentions: vec![],
        })),
    })
}

fn sends(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut group = c.benchmark_group("sqlite_send");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    for (name, durability) in [("full", Durability::Full), ("normal", Durability::Normal)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = SqliteOptions {
            durability,
            ..SqliteOptions::default()
        };
        let stores = open_stores(dir.path().join("bench.db"), options).expect("open");
        let engine = Engine::new(stores, EngineConfig::default());
        let body = "x".repeat(100);
        let mut counter = 0u64;
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                counter += 1;
                let run = counter;
                let engine = engine.clone();
                let body = body.clone();
                rt.block_on(async move {
                    let start = Instant::now();
                    let per = iters.div_ceil(SENDERS as u64);
                    let mut tasks = Vec::new();
                    for s in 0..SENDERS {
                        let engine = engine.clone();
                        let body = body.clone();
                        tasks.push(tokio::spawn(async move {
                            let caller = Caller::new(format!("s{s}"), "d");
                            for i in 0..per {
                                let req = pb::SendRequest {
                                    client_msg_id: format!("r{run}-{i}"),
                                    to: Some(pb::send_request::To::UserId(format!("r{s}"))),
                                    content: text(&body),
                                };
                                engine.send(&caller, req).await.expect("send");
                            }
                        }));
                    }
                    for t in tasks {
                        t.await.expect("task");
                    }
                    start
                        .elapsed()
                        .mul_f64(iters as f64 / (per * SENDERS as u64) as f64)
                })
            })
        });
    }
    group.finish();
}

fn history_pages(c: &mut Criterion) {
    const MESSAGES: i64 = 1_000_000;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("history.db");
    let stores = open_stores(&path, SqliteOptions::default()).expect("open");
    let conv = ConversationId::direct(&UserId::from("a"), &UserId::from("b"));
    {
        // Fill directly, in one transaction: building a million rows through
        // the engine would take far longer than the measurement.
        let mut conn = rusqlite::Connection::open(&path).expect("open");
        let tx = conn.transaction().expect("tx");
        {
            let content =
                prost::Message::encode_to_vec(&text(&"x".repeat(100)).unwrap_or_default());
            let mut stmt = tx
                .prepare("INSERT INTO messages VALUES (?1, ?2, ?3, ?4, 'd', ?5, ?6, ?7, 0, 1)")
                .expect("prepare");
            for seq in 1..=MESSAGES {
                let sender = if seq % 2 == 0 { "a" } else { "b" };
                stmt.execute(rusqlite::params![
                    conv.as_str(),
                    seq,
                    MessageId::new().to_string(),
                    sender,
                    format!("c{seq}"),
                    seq,
                    content
                ])
                .expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    let history = stores.history.clone();
    let mut group = c.benchmark_group("sqlite_history");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(6));
    group.bench_function("page_of_50_in_1m", |b| {
        let mut rng = rand::rng();
        b.iter_custom(|iters| {
            let starts: Vec<u64> = (0..iters)
                .map(|_| rng.random_range(51..=MESSAGES as u64))
                .collect();
            let history = history.clone();
            let conv = conv.clone();
            rt.block_on(async move {
                let start = Instant::now();
                // Eight readers at once, as eight connections paging would.
                let chunks: Vec<Vec<u64>> = starts
                    .chunks(starts.len().div_ceil(8).max(1))
                    .map(<[u64]>::to_vec)
                    .collect();
                let mut tasks = Vec::new();
                for chunk in chunks {
                    let history = history.clone();
                    let conv = conv.clone();
                    tasks.push(tokio::spawn(async move {
                        for from in chunk {
                            let page = history
                                .range(&conv, from, Direction::Backward, 50)
                                .await
                                .expect("page");
                            assert_eq!(page.len(), 50);
                        }
                    }));
                }
                for t in tasks {
                    t.await.expect("task");
                }
                start.elapsed()
            })
        })
    });
    group.finish();
    drop(Arc::new(()));
}

criterion_group!(benches, sends, history_pages);
criterion_main!(benches);
