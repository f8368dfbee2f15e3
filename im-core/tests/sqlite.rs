//! The SQLite backend: conformance, migrations, durability settings, group
//! commit, the writer's memory against the file, a conversation of 10^6
//! messages, and the engine on top of it.

use std::time::{Duration, Instant};

use imkit_core::model::*;
use imkit_core::store::sqlite::{self, Db, SqliteOptions};
use imkit_core::store::{Direction, MoveTo, Stores, UnitOfWork};
use imkit_core::{Caller, Engine, EngineConfig, Error};
use imkit_proto::pb;

fn text(s: &str) -> pb::Content {
    pb::Content {
        body: Some(pb::content::Body::Text(pb::Text {
            text: s.into(),
            mentions: vec![],
        })),
    }
}

fn message(conv: &ConversationId, sender: &str, cmid: &str, content: pb::Content) -> NewMessage {
    NewMessage {
        id: MessageId::new(),
        conversation: conv.clone(),
        sender: UserId::from(sender),
        sender_device: DeviceId::from("d"),
        client_msg_id: cmid.into(),
        timestamp_ms: 1,
        content,
    }
}

async fn append(stores: &Stores, m: NewMessage) -> imkit_core::Result<Appended> {
    let unit = UnitOfWork::new(m.conversation.clone()).append(m);
    let c = stores.conversations.commit(unit).await?;
    c.appended
        .ok_or_else(|| Error::store("test", "nothing appended"))
}

mod full_durability {
    imkit_core::conformance_tests!(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let stores = imkit_core::store::sqlite::open_stores(
            dir.path().join("full.db"),
            imkit_core::store::sqlite::SqliteOptions::default(),
        )
        .expect("open");
        Some((dir, stores))
    });
}

mod normal_durability {
    imkit_core::conformance_tests!(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = imkit_core::store::sqlite::SqliteOptions {
            durability: imkit_core::store::sqlite::Durability::Normal,
            ..Default::default()
        };
        let stores = imkit_core::store::sqlite::open_stores(dir.path().join("normal.db"), options)
            .expect("open");
        Some((dir, stores))
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("reopen.db");
    let conv = ConversationId::direct(&UserId::from("a"), &UserId::from("b"));
    {
        let stores = sqlite::open_stores(&path, SqliteOptions::default()).expect("open");
        for i in 0..10 {
            append(
                &stores,
                message(&conv, "a", &format!("c{i}"), text(&format!("m{i}"))),
            )
            .await
            .expect("append");
        }
        stores
            .conversations
            .commit(UnitOfWork::new(conv.clone()).read(UserId::from("b"), MoveTo::Seq(4)))
            .await
            .expect("read");
    }
    let stores = sqlite::open_stores(&path, SqliteOptions::default()).expect("reopen");
    let c = &stores.conversations;
    assert_eq!(c.max_seq(&conv).await.expect("max"), 10);
    let page = c
        .range(&conv, 0, Direction::Backward, 3)
        .await
        .expect("range");
    assert_eq!(page.iter().map(|m| m.seq).collect::<Vec<_>>(), [10, 9, 8]);
    assert_eq!(page[0].content, text("m9"));
    assert_eq!(c.read(&UserId::from("b"), &conv).await.expect("read"), 4);
    assert_eq!(
        c.unread(&conv, &UserId::from("b")).await.expect("unread"),
        6
    );
    // The idempotency index and the writer's tail survived too.
    let again = c
        .find_by_client_id(&UserId::from("a"), "c3")
        .await
        .expect("find");
    assert_eq!(again.map(|m| m.seq), Some(4));
    let next = append(&stores, message(&conv, "b", "n", text("next")))
        .await
        .expect("append");
    assert_eq!(next.message.seq, 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_schema_upgrades_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.db");
    {
        // A database as version 3 of the schema left it: messages, an inbox,
        // and a sender whose read cursor lags their own last message (a
        // crash between two commits could leave that before units of work).
        let conn = rusqlite::Connection::open(&path).expect("open");
        for m in &sqlite::MIGRATIONS[..3] {
            conn.execute_batch(m).expect("old schema");
        }
        conn.pragma_update(None, "user_version", 3)
            .expect("version");
        let content = prost::Message::encode_to_vec(&text("old"));
        for (seq, sender, countable) in [(1, "a", 1), (2, "b", 1), (3, "b", 0), (4, "a", 1)] {
            conn.execute(
                "INSERT INTO messages VALUES ('d:a:b', ?1, ?2, ?3, 'd', ?4, 5, ?5, 0, ?6)",
                rusqlite::params![
                    seq,
                    MessageId::new().to_string(),
                    sender,
                    format!("old-{seq}"),
                    content,
                    countable
                ],
            )
            .expect("insert");
        }
        conn.execute("INSERT INTO read_cursors VALUES ('a', 'd:a:b', 1)", [])
            .expect("cursor");
        conn.execute("INSERT INTO inbox VALUES ('b', 'p', 'd:a:b', 4)", [])
            .expect("inbox");
    }
    let stores = sqlite::open_stores(&path, SqliteOptions::default()).expect("open upgrades");
    let conv = ConversationId::new("d:a:b");
    let c = &stores.conversations;
    let m = c.get(&conv, 1).await.expect("get").expect("kept");
    assert_eq!(m.content, text("old"));
    // Unread from the backfilled running counts: b wrote 2 (and 3, not
    // counted); a's read cursor was brought up to a's own 4.
    assert_eq!(c.read(&UserId::from("a"), &conv).await.expect("read"), 4);
    assert_eq!(
        c.unread(&conv, &UserId::from("a")).await.expect("unread"),
        0
    );
    assert_eq!(
        c.unread(&conv, &UserId::from("b")).await.expect("unread"),
        1
    );
    let next = append(&stores, message(&conv, "a", "new", text("new")))
        .await
        .expect("append");
    assert_eq!(next.message.seq, 5);
    assert_eq!(
        c.unread(&conv, &UserId::from("b")).await.expect("unread"),
        2
    );
    let conn = rusqlite::Connection::open(&path).expect("open");
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(v as usize, sqlite::SCHEMA_VERSION);
    let inbox: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'inbox'",
            [],
            |r| r.get(0),
        )
        .expect("schema");
    assert_eq!(inbox, 0, "the inbox table is gone");
    // A database newer than this build is refused, not damaged.
    conn.pragma_update(None, "user_version", 99).expect("bump");
    drop(conn);
    drop(stores);
    let err = sqlite::open_stores(&path, SqliteOptions::default()).expect_err("too new");
    assert!(err.to_string().contains("newer than this build"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_unit_in_a_batch_does_not_undo_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path().join("batch.db"), SqliteOptions::default()).expect("open");
    let stores = sqlite::stores_on(db.clone());
    let conv = ConversationId::new("g:x");
    let mut tasks = Vec::new();
    for i in 0..200 {
        let stores = stores.clone();
        let conv = conv.clone();
        tasks.push(tokio::spawn(async move {
            // Every tenth is a recall of a message that does not exist: it fails.
            let content = if i % 10 == 0 {
                pb::Content {
                    body: Some(pb::content::Body::Recall(pb::Recall {
                        target_message_id: String::new(),
                        target_seq: 100_000,
                        recalled_by: "u".into(),
                    })),
                }
            } else {
                text("ok")
            };
            append(&stores, message(&conv, "u", &format!("k{i}"), content)).await
        }));
    }
    let mut ok = 0;
    let mut failed = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) => ok += 1,
            Err(Error::NotFound(_)) => failed += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!((ok, failed), (180, 20));
    let c = &stores.conversations;
    assert_eq!(
        c.max_seq(&conv).await.expect("max"),
        180,
        "gap-free despite failures"
    );
    let all = c
        .range(&conv, 0, Direction::Forward, 1000)
        .await
        .expect("range");
    assert!(all.iter().enumerate().all(|(i, m)| m.seq == i as u64 + 1));
    assert!(
        db.writer_stats().transactions() < 200,
        "the units shared transactions ({} for 200)",
        db.writer_stats().transactions()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_read_is_an_error_and_the_readers_carry_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = SqliteOptions {
        read_pool: 1,
        ..SqliteOptions::default()
    };
    let db = Db::open(dir.path().join("panic.db"), options).expect("open");
    let r: Result<(), Error> = db
        .read(|_| -> imkit_core::Result<()> { panic!("a read job that panics") })
        .await;
    assert!(matches!(r, Err(Error::Store { .. })), "got {r:?}");
    // The single reader thread survived and still answers.
    let n: i64 = db
        .read(|c| {
            c.query_row("SELECT 41 + 1", [], |r| r.get(0))
                .map_err(|e| Error::store("sqlite", e))
        })
        .await
        .expect("read after a panic");
    assert_eq!(n, 42);
    // Many concurrent reads through a small pool all complete.
    let mut tasks = Vec::new();
    for i in 0..500i64 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            db.read(move |c| {
                c.query_row("SELECT ?1 * 2", [i], |r| r.get::<_, i64>(0))
                    .map_err(|e| Error::store("sqlite", e))
            })
            .await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.expect("task").expect("read"), i as i64 * 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_writers_memory_agrees_with_the_file_under_racing_units() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cursors.db");
    let conv = ConversationId::new("g:race");
    let (user, device) = (UserId::from("a"), DeviceId::from("phone"));
    let seq_of = |i: u64| (i * 7919) % 1000 + 1;
    let top = (0..300).map(seq_of).max().unwrap_or(0);
    {
        let stores = sqlite::open_stores(&path, SqliteOptions::default()).expect("open");
        for i in 0..1000 {
            append(&stores, message(&conv, "w", &format!("m{i}"), text("x")))
                .await
                .expect("append");
        }
        let mut tasks = Vec::new();
        // Reads and moves race; the targets arrive out of order, and every
        // tenth unit fails (a missing recall target) after its moves were
        // queued, so the writer must forget what it did not commit.
        for i in 0..300u64 {
            let stores = stores.clone();
            let (conv, user, device) = (conv.clone(), user.clone(), device.clone());
            let seq = seq_of(i);
            tasks.push(tokio::spawn(async move {
                let c = &stores.conversations;
                let before = c.read(&user, &conv).await.expect("read");
                let mut unit = UnitOfWork::new(conv.clone())
                    .read(user.clone(), MoveTo::Seq(seq))
                    .delivered(user.clone(), device.clone(), MoveTo::Seq(seq));
                if i % 10 == 0 {
                    let recall = pb::Content {
                        body: Some(pb::content::Body::Recall(pb::Recall {
                            target_message_id: String::new(),
                            target_seq: 5_000,
                            recalled_by: "a".into(),
                        })),
                    };
                    unit = unit.append(message(&conv, "a", &format!("r{i}"), recall));
                    assert!(c.commit(unit).await.is_err());
                    return (before, before, 0);
                }
                let done = c.commit(unit).await.expect("commit");
                assert!(done.moves[0].after >= seq);
                assert!(done.moves[1].after >= seq);
                (before, done.moves[0].after, seq)
            }));
        }
        let mut kept = 0;
        for t in tasks {
            let (before, after, seq) = t.await.expect("task");
            assert!(before <= after);
            kept = kept.max(seq);
        }
        let c = &stores.conversations;
        assert_eq!(c.read(&user, &conv).await.expect("read"), kept);
        assert_eq!(
            c.delivered(&user, &device, &conv).await.expect("delivered"),
            Some(kept)
        );
        assert!(kept <= top);
        // A lower move never takes a cursor back.
        let low = c
            .commit(UnitOfWork::new(conv.clone()).read(user.clone(), MoveTo::Seq(5)))
            .await
            .expect("low");
        assert_eq!(low.moves[0].after, kept);
    }
    // The file holds what the writer remembered.
    let reopened = sqlite::open_stores(&path, SqliteOptions::default()).expect("reopen");
    let c = &reopened.conversations;
    let kept = c.read(&user, &conv).await.expect("read");
    assert_eq!(
        c.delivered(&user, &device, &conv).await.expect("delivered"),
        Some(kept)
    );
    assert_eq!(
        c.max_seq(&conv).await.expect("max"),
        1000,
        "no failed unit left a message"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_owner_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("owned.db");
    let first = Db::open(&path, SqliteOptions::default()).expect("open");
    let err = Db::open(&path, SqliteOptions::default()).expect_err("second owner");
    assert!(
        err.to_string().contains("already open"),
        "unexpected error: {err}"
    );
    let stores = sqlite::stores_on(first);
    let c = ConversationId::new("d:u:v");
    append(&stores, message(&c, "u", "x", text("x")))
        .await
        .expect("write");
    drop(stores);
    // Dropping the last handle waits for the writer, so the lock is free
    // at once and what it wrote is there.
    let again = sqlite::open_stores(&path, SqliteOptions::default()).expect("reopen at once");
    assert_eq!(again.conversations.max_seq(&c).await.expect("max"), 1);
}

/// Fills a group conversation with `n` text messages straight through
/// SQL (as the writer would have stored them), with `reader` a member who
/// has read none of them.
fn fill_large_group(path: &std::path::Path, n: u64) {
    let mut conn = rusqlite::Connection::open(path).expect("open");
    sqlite::migrate(&mut conn).expect("schema");
    // Content { text: Text { text: "x" } }
    let sql = format!(
        "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {n})
         INSERT INTO messages (conversation, seq, id, sender, sender_device, client_msg_id, timestamp_ms, content, recalled, countable, countable_upto)
         SELECT 'g:big', n, printf('00000000-0000-7000-8000-%012x', n), 'w' || (n % 10), 'd',
                'c' || n, 1700000000000 + n, X'0a030a0178', 0, 1, n FROM s;
         INSERT INTO groups VALUES ('big', 'big', '', 'w0', 1);
         INSERT INTO group_members VALUES ('big', 'reader', 'member', 1);"
    );
    conn.execute_batch(&sql).expect("fill");
}

/// Unread, the conversation list, login and sync cost O(log n) in the
/// conversation's length, not a scan: with 10^6 unread they take about as
/// long as with none. (The bound below is loose on purpose, 200 ms where a
/// scan of 10^6 rows takes seconds in a debug build; BENCHMARKS.md has the
/// measured figures.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_unread_cost_what_a_few_do() {
    const N: u64 = 1_000_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("large.db");
    fill_large_group(&path, N);
    let stores = sqlite::open_stores(&path, SqliteOptions::default()).expect("open");
    let engine = Engine::new(stores.clone(), EngineConfig::default());
    let reader = Caller::new("reader", "phone");
    let conv = ConversationId::new("g:big");
    let bound = Duration::from_millis(200);
    let timed = |what: &str, started: Instant| {
        let took = started.elapsed();
        eprintln!("{what} with {N} unread: {took:?}");
        assert!(took < bound, "{what} took {took:?}");
    };

    let t = Instant::now();
    let unread = stores
        .conversations
        .unread(&conv, &reader.user)
        .await
        .expect("unread");
    timed("unread", t);
    assert_eq!(unread, N);

    let t = Instant::now();
    let list = engine
        .conversations(&reader, pb::ConversationListRequest::default())
        .await
        .expect("list");
    timed("conversation list", t);
    assert_eq!(list.total_unread, N as u32);
    assert_eq!(list.conversations[0].max_seq, N);

    let t = Instant::now();
    let login = engine
        .login(&reader.user, &reader.device)
        .await
        .expect("login");
    timed("login", t);
    assert!(
        login.pushes.is_empty(),
        "a login pushes nothing of a backlog"
    );
    let notice = login.notice.expect("a login with a backlog gets a notice");
    assert_eq!(notice.reason, pb::SyncReason::Login as i32);
    assert_eq!(
        (
            notice.conversations[0].max_seq,
            notice.conversations[0].resume_seq,
            notice.conversations[0].unread
        ),
        (N, 0, N as u32),
        "the notice says what waits"
    );

    let t = Instant::now();
    let sync = engine
        .sync(&reader, pb::SyncRequest::default())
        .await
        .expect("sync");
    timed("sync", t);
    assert_eq!(sync.conversations[0].messages[0].seq, 1);
    assert!(sync.conversations[0].has_more);

    // Reading half of it: the count follows the cursor.
    let half = engine
        .receipt(
            &reader,
            pb::ReceiptRequest {
                conversation_id: conv.to_string(),
                kind: pb::ReceiptKind::Read as i32,
                seq: N / 2,
            },
        )
        .await
        .expect("read");
    assert_eq!(half.reply.seq, N / 2);
    let t = Instant::now();
    assert_eq!(
        stores
            .conversations
            .unread(&conv, &reader.user)
            .await
            .expect("unread"),
        N / 2
    );
    timed("unread after reading half", t);

    // A send into it costs what a send into a small one does.
    let t = Instant::now();
    let sent = engine
        .send(
            &Caller::new("w1", "d"),
            pb::SendRequest {
                client_msg_id: "into-the-big-one".into(),
                to: Some(pb::send_request::To::GroupId("big".into())),
                content: Some(text("one more")),
            },
        )
        .await;
    // w1 is not a member: refused, having looked up the group only.
    assert!(matches!(sent, Err(Error::NotMember { .. })), "{sent:?}");
    let sent = engine
        .send(
            &reader,
            pb::SendRequest {
                client_msg_id: "into-the-big-one".into(),
                to: Some(pb::send_request::To::GroupId("big".into())),
                content: Some(text("one more")),
            },
        )
        .await
        .expect("send");
    timed("send", t);
    assert_eq!(sent.reply.seq, N + 1);
    assert_eq!(
        stores
            .conversations
            .unread(&conv, &reader.user)
            .await
            .expect("unread"),
        0,
        "sending reads everything before"
    );
}
