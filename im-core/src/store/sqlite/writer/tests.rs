//! The writer's own tests: group commit, failures, shutdown.

use std::sync::Arc;

use super::super::{Db, SqliteOptions};
use crate::Error;

async fn db(max_batch: usize, max_wait_ms: u64) -> (tempfile::TempDir, Arc<Db>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = SqliteOptions {
        max_batch,
        max_wait: std::time::Duration::from_millis(max_wait_ms),
        ..SqliteOptions::default()
    };
    let db = Db::open(dir.path().join("w.db"), options).expect("open");
    db.write(|c| {
        c.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
            .map_err(super::super::db_err)
    })
    .await
    .expect("create");
    (dir, db)
}

/// Queues `n` inserts at once (they pile up while the writer is busy)
/// and waits for all of them.
async fn insert_many(db: &Arc<Db>, n: i64) -> Vec<crate::Result<()>> {
    let mut tasks = Vec::new();
    for k in 0..n {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            db.write(move |c| {
                c.execute("INSERT INTO t (k, v) VALUES (?1, 'x')", [k])
                    .map(drop)
                    .map_err(super::super::db_err)
            })
            .await
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    out
}

async fn count(db: &Arc<Db>) -> i64 {
    db.read(|c| {
        c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .map_err(super::super::db_err)
    })
    .await
    .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiting_writes_share_a_transaction_split_at_max_batch() {
    // A linger of 50 ms lets all 300 writes queue before the first
    // commit, so the batches are full ones of 64 and a remainder.
    let (_dir, db) = db(64, 50).await;
    let before = db.writer_stats().transactions();
    let results = insert_many(&db, 300).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(count(&db).await, 300);
    let stats = db.writer_stats();
    let txs = stats.transactions() - before;
    assert!(
        (5..=10).contains(&txs),
        "300 writes at max_batch 64 took {txs} transactions"
    );
    assert_eq!(stats.largest_batch(), 64, "no batch exceeds max_batch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_write_fails_alone() {
    let (_dir, db) = db(1_024, 50).await;
    let mut tasks = Vec::new();
    for k in 0..20i64 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            db.write(move |c| {
                c.execute("INSERT INTO t (k, v) VALUES (?1, 'x')", [k])
                    .map_err(super::super::db_err)?;
                if k == 7 {
                    // Wrote a row, then failed: the row must go too.
                    return Err(Error::InvalidArgument("seven fails".into()));
                }
                Ok(())
            })
            .await
        }));
    }
    let mut failed = Vec::new();
    for (k, t) in tasks.into_iter().enumerate() {
        if t.await.expect("task").is_err() {
            failed.push(k);
        }
    }
    assert_eq!(
        failed,
        vec![7],
        "only the failing write's caller sees an error"
    );
    assert_eq!(
        count(&db).await,
        19,
        "its row was rolled back, the others kept"
    );
    let seven: i64 = db
        .read(|c| {
            c.query_row("SELECT COUNT(*) FROM t WHERE k = 7", [], |r| r.get(0))
                .map_err(super::super::db_err)
        })
        .await
        .expect("read");
    assert_eq!(seven, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_panicking_write_fails_alone_and_the_writer_carries_on() {
    let (_dir, db) = db(1_024, 20).await;
    let panicking = {
        let db = db.clone();
        tokio::spawn(async move {
            db.write(|_| -> crate::Result<()> { panic!("a bug in a write") })
                .await
        })
    };
    let results = insert_many(&db, 10).await;
    assert!(panicking.await.expect("task").is_err());
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(count(&db).await, 10);
}

#[tokio::test]
async fn a_read_waits_until_what_it_may_have_seen_is_durable() {
    let d = std::sync::Arc::new(super::Durable::new(true));
    d.begun.store(3, std::sync::atomic::Ordering::Release);
    d.synced.send_replace(1);
    let waiting = {
        let d = d.clone();
        tokio::spawn(async move { d.wait_for_reads().await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(
        !waiting.is_finished(),
        "batches 2 and 3 are not durable yet"
    );
    d.synced.send_replace(2);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "batch 3 is not durable yet");
    d.synced.send_replace(3);
    let r = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
        .await
        .expect("released once synced")
        .expect("task");
    assert!(r.is_ok());
}

#[test]
fn a_failed_fsync_fails_its_callers_and_breaks_the_database() {
    let d = super::Durable::new(true);
    let (tx, rx) = std::sync::mpsc::channel();
    let (reply_tx, mut reply_rx) = tokio::sync::oneshot::channel::<crate::Result<u8>>();
    tx.send(super::Committed {
        id: 1,
        answers: vec![(super::answer(Ok(7), reply_tx), Ok(()))],
    })
    .expect("send");
    drop(tx);
    super::sync_loop(&rx, &d, std::path::Path::new("/nonexistent/imkit.db-wal"));
    assert!(d.broken.load(std::sync::atomic::Ordering::Acquire));
    assert_eq!(*d.synced.borrow(), 1, "settled, so readers do not hang");
    let answer = reply_rx.try_recv().expect("answered");
    assert!(answer.is_err(), "not acknowledged: it may not be on disk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lone_write_does_not_wait_without_linger() {
    let (_dir, db) = db(1_024, 0).await;
    let before = db.writer_stats().transactions();
    for k in 0..5i64 {
        db.write(move |c| {
            c.execute("INSERT INTO t (k, v) VALUES (?1, 'x')", [k])
                .map(drop)
                .map_err(super::super::db_err)
        })
        .await
        .expect("write");
        assert_eq!(count(&db).await, k + 1);
    }
    assert_eq!(
        db.writer_stats().transactions() - before,
        5,
        "sequential writes commit one by one"
    );
}
