//! SQLite throughput: persisted 1:1 sends through the engine (group
//! commit, 64 concurrent senders) at FULL and NORMAL durability; history
//! page reads and unread counts on a conversation of 1,000,000 messages.
//!
//! `cargo bench -p imkit-core --bench sqlite --features sqlite`

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use imkit_core::model::{ConversationId, UserId};
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
                                let _ = engine.send(&caller, req).await.expect("send");
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
        // Fill directly, in one statement: building a million rows through
        // the engine would take far longer than the measurement. Senders
        // alternate; the running unread count is the seq (all text).
        let conn = rusqlite::Connection::open(&path).expect("open");
        let content = prost::Message::encode_to_vec(&text(&"x".repeat(100)).unwrap_or_default());
        conn.execute(
            &format!(
                "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {MESSAGES})
                 INSERT INTO messages (conversation, seq, id, sender, sender_device, client_msg_id, timestamp_ms, content, recalled, countable, countable_upto)
                 SELECT ?1, n, printf('00000000-0000-7000-8000-%012x', n), CASE n % 2 WHEN 0 THEN 'a' ELSE 'b' END,
                        'd', 'c' || n, n, ?2, 0, 1, n FROM s"
            ),
            rusqlite::params![conv.as_str(), content],
        )
        .expect("fill");
    }
    let history = stores.conversations.clone();
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
    let reader = UserId::from("c");
    group.bench_function("unread_of_1m", |b| {
        b.iter_custom(|iters| {
            let history = history.clone();
            let (conv, reader) = (conv.clone(), reader.clone());
            rt.block_on(async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let n = history.unread(&conv, &reader).await.expect("unread");
                    assert_eq!(n, MESSAGES as u64);
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
