//! The PostgreSQL backend against a real PostgreSQL: the conformance
//! suite, migrations, group commit across many callers, and two "nodes"
//! (two store sets on one database) writing one conversation.

mod conformance {
    use imkit_core::testing::postgres_server::TestPostgres;

    imkit_core::conformance_tests!(async {
        let pg = TestPostgres::start().await?;
        let stores = pg.stores().await;
        Some((pg, stores))
    });
}

use std::collections::HashSet;
use std::sync::Arc;

use imkit_core::model::*;
use imkit_core::store::postgres::{PgDb, stores_on};
use imkit_core::store::{ConversationStore, Direction, MoveTo, UnitOfWork};
use imkit_core::testing::postgres_server::TestPostgres;
use imkit_proto::pb;

fn text(s: &str) -> pb::Content {
    pb::Content {
        body: Some(pb::content::Body::Text(pb::Text {
            text: s.into(),
            mentions: vec![],
        })),
    }
}

fn send_unit(conv: &ConversationId, sender: &UserId, cmid: &str) -> UnitOfWork {
    UnitOfWork::new(conv.clone())
        .append(NewMessage {
            id: MessageId::new(),
            conversation: conv.clone(),
            sender: sender.clone(),
            sender_device: DeviceId::from("phone"),
            client_msg_id: cmid.into(),
            timestamp_ms: 1_700_000_000_000,
            content: text(cmid),
        })
        .read(sender.clone(), MoveTo::Appended)
}

async fn sql(pg: &TestPostgres, statements: &str) {
    let (client, conn) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
        .batch_execute(&format!("SET search_path TO {}; {statements}", pg.schema))
        .await
        .expect("sql");
}

/// Two nodes (two writers on one database) send into one conversation at
/// once, and each resends what the other sent: every message is stored
/// once, numbered 1..=n with no gap, and each node's writer committed many
/// units per transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_writing_one_conversation_stay_gap_free_and_send_once() {
    let Some(pg) = TestPostgres::start().await else {
        return;
    };
    let a = PgDb::connect(&pg.url, pg.options()).await.expect("node a");
    let b = PgDb::connect(&pg.url, pg.options()).await.expect("node b");
    let nodes = [stores_on(a.clone()), stores_on(b.clone())];
    let conv = ConversationId::new("g:busy");
    const SENDERS: usize = 16;
    const EACH: usize = 100;
    let mut tasks = Vec::new();
    for s in 0..SENDERS {
        let (own, other) = (
            nodes[s % 2].conversations.clone(),
            nodes[(s + 1) % 2].conversations.clone(),
        );
        let conv = conv.clone();
        tasks.push(tokio::spawn(async move {
            let sender = UserId::new(format!("u{s}"));
            let mut seqs = Vec::new();
            for i in 0..EACH {
                let cmid = format!("m{i}");
                let first = own
                    .commit(send_unit(&conv, &sender, &cmid))
                    .await
                    .expect("send");
                let again = other
                    .commit(send_unit(&conv, &sender, &cmid))
                    .await
                    .expect("resend");
                let (first, again) = (first.appended.expect("a"), again.appended.expect("b"));
                assert!(
                    !first.duplicate && again.duplicate,
                    "the resend is the duplicate"
                );
                assert_eq!(
                    first.message.seq, again.message.seq,
                    "the resend answers the original"
                );
                assert_eq!(first.message.id, again.message.id);
                seqs.push(first.message.seq);
            }
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "one sender's messages in order"
            );
        }));
    }
    for t in tasks {
        t.await.expect("sender");
    }
    let n = (SENDERS * EACH) as u64;
    let store = nodes[0].conversations.clone();
    assert_eq!(store.max_seq(&conv).await.expect("max"), n);
    let mut seen = HashSet::new();
    let mut next = 1;
    let mut from = 0;
    loop {
        let page = store
            .range(&conv, from, Direction::Forward, 500)
            .await
            .expect("range");
        if page.is_empty() {
            break;
        }
        for m in &page {
            assert_eq!(m.seq, next, "gap-free");
            next += 1;
            assert!(
                seen.insert((m.sender.clone(), m.client_msg_id.clone())),
                "stored once"
            );
        }
        from = page.last().map_or(0, |m| m.seq);
    }
    assert_eq!(next - 1, n);
    let (sa, sb) = (a.writer_stats(), b.writer_stats());
    assert_eq!(
        sa.units + sb.units,
        2 * n,
        "every send and resend committed"
    );
    assert_eq!(sa.failed + sb.failed, 0);
    eprintln!("writer a {sa:?}, writer b {sb:?}");
}

/// Many callers on one node: the writer commits them in far fewer
/// transactions than units (group commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_share_commits() {
    let Some(pg) = TestPostgres::start().await else {
        return;
    };
    let db = PgDb::connect(&pg.url, pg.options()).await.expect("connect");
    let store = stores_on(db.clone()).conversations;
    let tasks: Vec<_> = (0..500)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let conv = ConversationId::new(format!("d:{}", i % 50));
                for j in 0..4 {
                    store
                        .commit(send_unit(
                            &conv,
                            &UserId::new(format!("s{i}")),
                            &format!("c{j}"),
                        ))
                        .await
                        .expect("commit");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let stats = db.writer_stats();
    assert_eq!(stats.units, 2_000);
    assert!(
        stats.batches * 4 <= stats.units,
        "group commit: {stats:?} (at least four units per transaction on average)"
    );
}

/// Nodes starting together migrate once; a database migrated by a newer
/// build is refused with a message that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrations_run_once_and_a_newer_schema_is_refused() {
    let Some(pg) = TestPostgres::start().await else {
        return;
    };
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let (url, options) = (pg.url.clone(), pg.options());
            tokio::spawn(async move { PgDb::connect(&url, options).await.map(drop) })
        })
        .collect();
    for s in starts {
        s.await
            .expect("task")
            .expect("concurrent starts all succeed");
    }
    sql(&pg, "UPDATE schema_version SET version = 999").await;
    let err = PgDb::connect(&pg.url, pg.options())
        .await
        .expect_err("a newer schema is refused");
    assert!(err.to_string().contains("newer than this build"), "{err}");
    let bad = PgDb::connect(&pg.url, pg.options().in_schema("no; drop"))
        .await
        .expect_err("a bad schema name is refused");
    assert!(bad.to_string().contains("schema"), "{bad}");
}

/// A conversation of 10^6 messages: pages, lookups and unread cost the
/// same as in a small one (index lookups in one partition), and sends go
/// on numbering it without a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_conversation_of_a_million_messages() {
    let Some(pg) = TestPostgres::start().await else {
        return;
    };
    let db = PgDb::connect(&pg.url, pg.options()).await.expect("connect");
    let stores = stores_on(db);
    let store: Arc<dyn ConversationStore> = stores.conversations.clone();
    const N: i64 = 1_000_000;
    // Written in bulk with SQL: the same rows the writer makes, faster.
    sql(
        &pg,
        &format!(
            "INSERT INTO messages (conversation, seq, id, sender, sender_device, client_msg_id,
                                   timestamp_ms, content, countable, countable_upto)
             SELECT 'g:big', s, gen_random_uuid(), 'u' || (s % 100), 'phone', 'bulk' || s,
                    1700000000000 + s, '\\x0a030a0178'::bytea, true, s
             FROM generate_series(1, {N}) AS s;
             INSERT INTO conversations (id, max_seq, countable_upto) VALUES ('g:big', {N}, {N});
             INSERT INTO cursors (conversation, \"user\", device, seq) VALUES ('g:big', 'reader', '', {N} - 10);
             ANALYZE messages;"
        ),
    )
    .await;
    let conv = ConversationId::new("g:big");
    let reader = UserId::from("reader");
    assert_eq!(store.unread(&conv, &reader).await.expect("unread"), 10);
    let next = store
        .commit(send_unit(&conv, &UserId::from("writer"), "after-bulk"))
        .await
        .expect("send")
        .appended
        .expect("appended");
    assert_eq!(
        next.message.seq,
        N as u64 + 1,
        "numbering goes on without a gap"
    );
    assert_eq!(store.unread(&conv, &reader).await.expect("unread"), 11);
    let newest = store
        .range(&conv, 0, Direction::Backward, 50)
        .await
        .expect("page");
    assert_eq!(newest.first().map(|m| m.seq), Some(N as u64 + 1));
    assert_eq!(newest.len(), 50);
    let middle = store
        .range(&conv, 500_000, Direction::Forward, 100)
        .await
        .expect("page");
    assert_eq!(
        middle.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (500_001..=500_100).collect::<Vec<_>>()
    );
    assert_eq!(
        store
            .get(&conv, 1)
            .await
            .expect("get")
            .map(|m| m.client_msg_id),
        Some("bulk1".to_owned())
    );
    // The plan of a page reads one partition, by index.
    let (client, c) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(c);
    let plan: Vec<String> = client
        .query(
            &format!(
                "EXPLAIN SELECT seq FROM {}.messages WHERE conversation = 'g:big' AND seq > 500000 ORDER BY seq LIMIT 100",
                pg.schema
            ),
            &[],
        )
        .await
        .expect("explain")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let plan = plan.join("\n");
    assert_eq!(
        plan.matches(" on messages_").count(),
        1,
        "one partition:\n{plan}"
    );
    assert!(plan.contains("Index"), "an index scan:\n{plan}");
}
