//! Faults under a stream, with real servers: two nodes with the record in
//! PostgreSQL and presence and wake-ups in Redis, four senders streaming
//! to four receivers on the other node, and one of these in the middle:
//! PostgreSQL crashed and started again, Redis killed and started again
//! (empty), one node cut off from Redis and then healed. (A node killed
//! outright is `im-server/tests/cluster_kill.rs`, with real processes.)
//!
//! Each time: every acknowledged message reaches its receiver exactly
//! once, in seq order 1..=n with no gap; a send that failed is retried
//! with its client message id and is stored once. How long senders saw
//! errors is printed (docs/scaling.md records it).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use imkit::client::Content;
use imkit::client::{Client, Event, Events, Peer};
use imkit::engine::model::{NodeId, UserId};
use imkit::engine::store::PresenceStore;
use imkit::engine::store::redis::{RedisDb, RedisPresence};
use imkit::engine::testing::postgres_server::{OwnPostgres, TestPostgres};
use imkit::engine::testing::redis_server::TestRedis;
use parking_lot::Mutex;

const SENDERS: usize = 4;
const EACH: usize = 100;
const PACE: Duration = Duration::from_millis(15);
/// The test nodes' liveness TTL (common::test_cluster_options); they
/// heartbeat at a third of it.
const HEARTBEAT: Duration = Duration::from_millis(667);

/// What the senders saw.
#[derive(Debug, Default)]
struct Seen {
    /// The longest a send took from the call to SENT (the SDK retries a
    /// refused send itself, so this is what an app waits).
    slowest: Duration,
    /// Sends that took longer than a second.
    slow: usize,
    errors: usize,
    first_error: Option<Instant>,
    last_error: Option<Instant>,
}

impl Seen {
    fn window(&self) -> Duration {
        match (self.first_error, self.last_error) {
            (Some(a), Some(b)) => b - a,
            _ => Duration::ZERO,
        }
    }
}

struct Pair {
    sender: Client,
    receiver: (Client, Events),
    index: usize,
}

async fn pairs(nodes: &[TestServer]) -> Vec<Pair> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut out = Vec::new();
    for i in 0..SENDERS {
        let (sender, _events) =
            login(&nodes[i % 2].tcp.to_string(), &format!("s{i}"), "phone").await;
        let receiver = login(
            &nodes[(i + 1) % 2].tcp.to_string(),
            &format!("r{i}"),
            "phone",
        )
        .await;
        out.push(Pair {
            sender,
            receiver,
            index: i,
        });
    }
    out
}

/// Streams EACH messages per pair while `fault` runs, retrying failed sends
/// with the same client message id; then checks every receiver got every
/// message exactly once, in order. Returns what the senders saw, and every
/// client (still connected).
async fn stream_through<F: std::future::Future<Output = ()>>(
    pairs: Vec<Pair>,
    fault: F,
) -> (Seen, Vec<Client>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for p in pairs {
        let seen = seen.clone();
        let sender = p.sender;
        let to = format!("r{}", p.index);
        let i = p.index;
        senders.push(tokio::spawn(async move {
            let mut seqs = Vec::with_capacity(EACH);
            for j in 0..EACH {
                let cmid = format!("s{i}-{j}");
                let deadline = Instant::now() + Duration::from_secs(60);
                let started = Instant::now();
                loop {
                    match sender
                        .send_with_id(
                            Peer::user(to.clone()),
                            Content::text(cmid.clone()),
                            cmid.clone(),
                        )
                        .await
                    {
                        Ok(ack) => {
                            seqs.push(ack.seq);
                            let took = started.elapsed();
                            let mut s = seen.lock();
                            s.slowest = s.slowest.max(took);
                            s.slow += usize::from(took > Duration::from_secs(1));
                            break;
                        }
                        Err(e) => {
                            assert!(Instant::now() < deadline, "{cmid} never acknowledged: {e}");
                            {
                                let mut s = seen.lock();
                                s.errors += 1;
                                s.first_error.get_or_insert_with(Instant::now);
                                s.last_error = Some(Instant::now());
                            }
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                tokio::time::sleep(PACE).await;
            }
            assert_eq!(
                seqs,
                (1..=EACH as u64).collect::<Vec<_>>(),
                "sender {i}: acknowledged seqs are 1..=n in order"
            );
            sender
        }));
        receivers.push((p.index, p.receiver));
    }
    fault.await;
    let mut keep = Vec::new();
    for s in senders {
        keep.push(s.await.expect("sender"));
    }
    for (i, (client, mut events)) in receivers {
        let mut got: BTreeMap<u64, String> = BTreeMap::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while got.len() < EACH {
            let ev = tokio::time::timeout_at(deadline, events.recv())
                .await
                .unwrap_or_else(|_| panic!("receiver {i} has {} of {EACH}", got.len()))
                .expect("events");
            if let Event::Message(m) = ev {
                let text = text_of(&m).to_owned();
                assert!(
                    got.insert(m.seq, text).is_none(),
                    "receiver {i}: seq {} twice",
                    m.seq
                );
            }
        }
        for (k, (seq, text)) in got.iter().enumerate() {
            assert_eq!(*seq, k as u64 + 1, "receiver {i}: gap-free");
            assert_eq!(
                text,
                &format!("s{i}-{k}"),
                "receiver {i}: each message once, in order"
            );
        }
        keep.push(client);
    }
    let s = std::mem::take(&mut *seen.lock());
    (s, keep)
}

async fn nodes_on(pg_url: &str, schema: &str, redis_urls: [&str; 2], ns: &str) -> Vec<TestServer> {
    let mut out = Vec::new();
    for (i, url) in redis_urls.iter().enumerate() {
        out.push(
            TestServer::postgres_cluster_node(pg_url, schema, url, ns, &format!("n{i}")).await,
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_crashed_and_restarted_during_a_stream() {
    let Some(redis) = TestRedis::start() else {
        return;
    };
    let Some(pg) = OwnPostgres::start() else {
        return;
    };
    let ns = redis.namespace();
    let nodes = nodes_on(&pg.url, "imkit", [&redis.url, &redis.url], &ns).await;
    let pairs = pairs(&nodes).await;
    let (seen, _clients) = stream_through(pairs, async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        pg.crash();
        tokio::time::sleep(Duration::from_secs(1)).await;
        pg.start_again();
    })
    .await;
    eprintln!(
        "postgres crash (down 1 s): slowest send {:?}, {} over 1 s, {} send errors over {:?}",
        seen.slowest,
        seen.slow,
        seen.errors,
        seen.window()
    );
    assert!(
        seen.slowest >= Duration::from_millis(500),
        "the crash was felt: {seen:?}"
    );
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_and_restarted_empty_during_a_stream() {
    let Some(pg) = TestPostgres::start().await else {
        return;
    };
    let Some(mut redis) = TestRedis::own(&[]) else {
        return;
    };
    let ns = redis.namespace();
    let url = redis.url.clone();
    let nodes = nodes_on(&pg.url, &pg.schema, [&url, &url], &ns).await;
    let pairs = pairs(&nodes).await;
    let mut settled = Duration::ZERO;
    let (seen, _clients) = stream_through(pairs, async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        redis.kill();
        tokio::time::sleep(Duration::from_secs(1)).await;
        redis.restart();
        // Presence comes back by itself: every receiver is located on its node.
        settled = settle_time(&url, &ns, Instant::now()).await;
    })
    .await;
    eprintln!(
        "redis restart (down 1 s): slowest send {:?}, {} over 1 s, {} send errors over {:?}",
        seen.slowest,
        seen.slow,
        seen.errors,
        seen.window()
    );
    eprintln!("presence settled {settled:?} after Redis came back");
    assert!(
        settled <= 2 * HEARTBEAT + Duration::from_millis(500),
        "presence settled in {settled:?}"
    );
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_cut_off_from_redis_and_healed_during_a_stream() {
    let Some(pg) = TestPostgres::start().await else {
        return;
    };
    let Some(redis) = TestRedis::own(&[]) else {
        return;
    };
    let upstream = redis
        .url
        .trim_start_matches("redis://")
        .parse()
        .expect("redis addr");
    let proxy = Proxy::start(upstream).await;
    let ns = redis.namespace();
    let cut_url = format!("redis://{}", proxy.addr);
    let nodes = nodes_on(&pg.url, &pg.schema, [&redis.url, &cut_url], &ns).await;
    let pairs = pairs(&nodes).await;
    let mut settled = Duration::ZERO;
    let (seen, _clients) = stream_through(pairs, async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        // Longer than the liveness TTL: node 1 counts as dead meanwhile.
        proxy.block();
        tokio::time::sleep(Duration::from_secs(3)).await;
        proxy.heal();
        settled = settle_time(&redis.url, &ns, Instant::now()).await;
    })
    .await;
    eprintln!(
        "node cut off from redis (3 s): slowest send {:?}, {} over 1 s, {} send errors over {:?}",
        seen.slowest,
        seen.slow,
        seen.errors,
        seen.window()
    );
    eprintln!("presence settled {settled:?} after the cut healed");
    // The node's Redis client reconnects on its own schedule first.
    assert!(
        settled <= 2 * HEARTBEAT + Duration::from_secs(2),
        "presence settled in {settled:?}"
    );
    for n in nodes {
        n.stop().await;
    }
}

/// How long after `since` every receiver is located on its node.
async fn settle_time(url: &str, ns: &str, since: Instant) -> Duration {
    let db = RedisDb::connect(url, ns).await.expect("redis");
    let presence = RedisPresence::with_liveness(db);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut all = true;
        for i in 0..SENDERS {
            let want = NodeId::new(format!("n{}", (i + 1) % 2));
            let at = presence.locate(&UserId::new(format!("r{i}"))).await;
            let here = at
                .as_ref()
                .is_ok_and(|at| at.iter().any(|l| l.node == want));
            if !here && Instant::now() + Duration::from_millis(30) > deadline {
                panic!("r{i} is not located on {want}: {at:?}");
            }
            all &= here;
        }
        if all {
            return since.elapsed();
        }
        assert!(Instant::now() < deadline, "presence never settled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
