//! The SQLite backend: conformance, migrations, durability settings, group
//! commit and the engine on top of it.

use std::sync::Arc;

use imkit_core::model::*;
use imkit_core::store::Direction;
use imkit_core::store::sqlite::{self, Db, Durability, SqliteOptions};
use imkit_proto::pb;

fn text(s: &str) -> pb::Content {
    pb::Content {
        body: Some(pb::content::Body::Text(pb::Text {
            text: s.into(),
            mentions: vec![],
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_stores_conform_with_full_durability() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stores =
        sqlite::open_stores(dir.path().join("full.db"), SqliteOptions::default()).expect("open");
    imkit_core::testing::run_all(stores).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_stores_conform_with_normal_durability() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = SqliteOptions {
        durability: Durability::Normal,
        ..SqliteOptions::default()
    };
    let stores = sqlite::open_stores(dir.path().join("normal.db"), options).expect("open");
    imkit_core::testing::run_all(stores).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("reopen.db");
    let conv = ConversationId::direct(&UserId::from("a"), &UserId::from("b"));
    {
        let stores = sqlite::open_stores(&path, SqliteOptions::default()).expect("open");
        for i in 0..10 {
            stores
                .history
                .append(NewMessage {
                    id: MessageId::new(),
                    conversation: conv.clone(),
                    sender: UserId::from("a"),
                    sender_device: DeviceId::from("d"),
                    client_msg_id: format!("c{i}"),
                    timestamp_ms: 1,
                    content: text(&format!("m{i}")),
                })
                .await
                .expect("append");
        }
        stores
            .read_state
            .advance_read(&UserId::from("b"), &conv, 4)
            .await
            .expect("read");
    }
    let stores = sqlite::open_stores(&path, SqliteOptions::default()).expect("reopen");
    assert_eq!(stores.history.max_seq(&conv).await.expect("max"), 10);
    let page = stores
        .history
        .range(&conv, 0, Direction::Backward, 3)
        .await
        .expect("range");
    assert_eq!(page.iter().map(|m| m.seq).collect::<Vec<_>>(), [10, 9, 8]);
    assert_eq!(page[0].content, text("m9"));
    assert_eq!(
        stores
            .read_state
            .read(&UserId::from("b"), &conv)
            .await
            .expect("read"),
        4
    );
    // The idempotency index survived too.
    let again = stores
        .history
        .find_by_client_id(&UserId::from("a"), "c3")
        .await
        .expect("find");
    assert_eq!(again.map(|m| m.seq), Some(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_schema_upgrades_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.db");
    {
        // A database as version 1 of imkit left it, with a message in it.
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute_batch(sqlite::MIGRATIONS[0])
            .expect("v1 schema");
        conn.pragma_update(None, "user_version", 1)
            .expect("version");
        let content = prost::Message::encode_to_vec(&text("from v1"));
        conn.execute(
            "INSERT INTO messages VALUES ('d:a:b', 1, ?1, 'a', 'd', 'old-1', 5, ?2, 0, 1)",
            rusqlite::params![MessageId::new().to_string(), content],
        )
        .expect("insert");
    }
    let stores = sqlite::open_stores(&path, SqliteOptions::default()).expect("open upgrades");
    let conv = ConversationId::new("d:a:b");
    let m = stores
        .history
        .get(&conv, 1)
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(m.content, text("from v1"));
    // Tables from version 2 work.
    stores
        .contacts
        .block(&UserId::from("a"), &UserId::from("b"))
        .await
        .expect("v2 table");
    let conn = rusqlite::Connection::open(&path).expect("open");
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(v as usize, sqlite::SCHEMA_VERSION);
    // A database newer than this build is refused, not damaged.
    conn.pragma_update(None, "user_version", 99).expect("bump");
    drop(conn);
    drop(stores);
    let err = sqlite::open_stores(&path, SqliteOptions::default()).expect_err("too new");
    assert!(err.to_string().contains("newer than this build"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_in_a_batch_does_not_undo_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path().join("batch.db"), SqliteOptions::default()).expect("open");
    let stores = sqlite::stores_on(db.clone());
    let conv = ConversationId::new("g:x");
    let mut tasks = Vec::new();
    for i in 0..200 {
        let history = stores.history.clone();
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
            history
                .append(NewMessage {
                    id: MessageId::new(),
                    conversation: conv,
                    sender: UserId::from("u"),
                    sender_device: DeviceId::from("d"),
                    client_msg_id: format!("k{i}"),
                    timestamp_ms: 1,
                    content,
                })
                .await
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
    assert_eq!(
        stores.history.max_seq(&conv).await.expect("max"),
        180,
        "gap-free despite failures"
    );
    let all = stores
        .history
        .range(&conv, 0, Direction::Forward, 1000)
        .await
        .expect("range");
    assert!(all.iter().enumerate().all(|(i, m)| m.seq == i as u64 + 1));
    let _ = Arc::strong_count(&db);
}

use imkit_core::Error;

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
async fn cached_cursors_agree_with_the_database_under_racing_updates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cursors.db");
    let conv = ConversationId::new("d:a|b");
    let (user, device) = (UserId::from("a"), DeviceId::from("phone"));
    let seq_of = |i: u64| (i * 7919) % 1000 + 1;
    let top = (0..300).map(seq_of).max().unwrap_or(0);
    {
        let stores = sqlite::open_stores(&path, SqliteOptions::default()).expect("open");
        let mut tasks = Vec::new();
        // Reads and advances race; the values arrive out of order.
        for i in 0..300u64 {
            let rs = stores.read_state.clone();
            let (conv, user, device) = (conv.clone(), user.clone(), device.clone());
            let seq = seq_of(i);
            tasks.push(tokio::spawn(async move {
                let before = rs.read(&user, &conv).await.expect("read");
                let after = rs.advance_read(&user, &conv, seq).await.expect("advance");
                assert!(after >= seq, "advance_read returned {after} < {seq}");
                let d = rs
                    .advance_delivered(&user, &device, &conv, seq)
                    .await
                    .expect("advance delivered");
                assert!(d >= seq);
                (before, after)
            }));
        }
        for t in tasks {
            let (before, after) = t.await.expect("task");
            assert!(before <= after);
        }
        let rs = &stores.read_state;
        assert_eq!(rs.read(&user, &conv).await.expect("read"), top);
        assert_eq!(
            rs.delivered(&user, &device, &conv)
                .await
                .expect("delivered"),
            top
        );
        // A lower advance never moves a cached cursor back.
        assert_eq!(rs.advance_read(&user, &conv, 5).await.expect("adv"), top);
        assert_eq!(rs.read(&user, &conv).await.expect("read"), top);
    }
    // The database itself holds what the cache said.
    let reopened = sqlite::open_stores(&path, SqliteOptions::default()).expect("reopen");
    assert_eq!(
        reopened.read_state.read(&user, &conv).await.expect("read"),
        top
    );
    assert_eq!(
        reopened
            .read_state
            .delivered(&user, &device, &conv)
            .await
            .expect("delivered"),
        top
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
    let (u, c) = (UserId::from("u"), ConversationId::new("d:u|v"));
    stores
        .read_state
        .advance_read(&u, &c, 7)
        .await
        .expect("write");
    drop(stores);
    // Dropping the last handle waits for the writer, so the lock is free
    // at once and what it wrote is there.
    let again = sqlite::open_stores(&path, SqliteOptions::default()).expect("reopen at once");
    assert_eq!(again.read_state.read(&u, &c).await.expect("read"), 7);
}
