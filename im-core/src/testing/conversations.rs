//! [`ConversationStore`] conformance: units of work (numbering,
//! de-duplication, atomicity, recall) and the reads around them. Cursors,
//! unread counts and lists are in `cursors.rs` (re-exported here).

use imkit_proto::pb;

pub use super::cursors::{cursors_move_forward_only, lists_and_positions, unread_counts};
use super::{Store, fresh, new_message, recall_of, send, send_unit, seqs, text};
use crate::Error;
use crate::model::*;
use crate::store::*;

/// Seq is gap-free from 1 per conversation; a resend stores nothing and
/// returns the original; another sender may reuse a client id.
pub async fn numbering_and_resends(store: Store) {
    let p = fresh("n");
    let (alice, bob) = (UserId::from(format!("{p}a")), UserId::from(format!("{p}b")));
    let conv = ConversationId::direct(&alice, &bob);
    assert_eq!(store.max_seq(&conv).await.expect("max"), 0);
    for i in 1..=5u64 {
        let sender = if i % 2 == 1 { &alice } else { &bob };
        let a = send(
            &store,
            new_message(&conv, sender, &format!("c{i}"), text(&format!("m{i}"))),
        )
        .await;
        assert!(!a.duplicate);
        assert_eq!(a.message.seq, i, "seq is gap-free from 1");
        assert!(!a.message.recalled);
    }
    assert_eq!(store.max_seq(&conv).await.expect("max"), 5);

    let read_before = store.read(&alice, &conv).await.expect("read");
    let again = store
        .commit(
            send_unit(new_message(&conv, &alice, "c3", text("different body")))
                .list_for([UserId::from(format!("{p}stranger"))]),
        )
        .await
        .expect("resend");
    assert!(again.is_duplicate(), "a resend is reported as one");
    assert!(again.moves.is_empty(), "a resend moves no cursor");
    let original = again.appended.expect("original").message;
    assert_eq!(
        (original.seq, &original.content),
        (3, &text("m3")),
        "the original is returned"
    );
    assert_eq!(
        store.max_seq(&conv).await.expect("max"),
        5,
        "nothing new stored"
    );
    assert_eq!(store.read(&alice, &conv).await.expect("read"), read_before);
    assert!(
        store
            .conversations(&UserId::from(format!("{p}stranger")))
            .await
            .expect("list")
            .is_empty(),
        "a resend lists nothing"
    );
    let other = send(&store, new_message(&conv, &bob, "c3", text("bob's c3"))).await;
    assert!(!other.duplicate, "another sender may reuse the id");
    assert_eq!(other.message.seq, 6);
    // A client id reused in another conversation returns the original,
    // which the caller can tell apart by its conversation.
    let elsewhere = ConversationId::group(&GroupId::from(format!("{p}g")));
    let a = send(&store, new_message(&elsewhere, &alice, "c1", text("x"))).await;
    assert!(a.duplicate);
    assert_eq!(a.message.conversation, conv);
    assert_eq!(store.max_seq(&elsewhere).await.expect("max"), 0);
    // Conversations are numbered independently.
    let conv2 = ConversationId::direct(&alice, &UserId::from(format!("{p}c")));
    assert_eq!(
        send(&store, new_message(&conv2, &alice, "x1", text("hi")))
            .await
            .message
            .seq,
        1
    );
}

/// Lookups by seq, id and client id; pages in both directions.
pub async fn lookups_and_paging(store: Store) {
    let p = fresh("l");
    let (alice, bob) = (UserId::from(format!("{p}a")), UserId::from(format!("{p}b")));
    let conv = ConversationId::direct(&alice, &bob);
    let mut ids = Vec::new();
    for i in 1..=6u64 {
        let sender = if i % 2 == 1 { &alice } else { &bob };
        ids.push(
            send(
                &store,
                new_message(&conv, sender, &format!("c{i}"), text(&format!("m{i}"))),
            )
            .await
            .message
            .id,
        );
    }
    let m2 = store.get(&conv, 2).await.expect("get").expect("exists");
    assert_eq!((&m2.sender, &m2.content), (&bob, &text("m2")));
    assert!(store.get(&conv, 0).await.expect("get").is_none());
    assert!(store.get(&conv, 99).await.expect("get").is_none());
    assert_eq!(
        store.get_by_id(&ids[3]).await.expect("id").map(|m| m.seq),
        Some(4)
    );
    assert!(
        store
            .get_by_id(&MessageId::new())
            .await
            .expect("id")
            .is_none()
    );
    assert_eq!(
        store
            .find_by_client_id(&alice, "c5")
            .await
            .expect("client")
            .map(|m| m.seq),
        Some(5)
    );
    assert!(
        store
            .find_by_client_id(&alice, "c2")
            .await
            .expect("client")
            .is_none()
    );
    let r = |from, dir, n| {
        let store = store.clone();
        let conv = conv.clone();
        async move { seqs(store.range(&conv, from, dir, n).await.expect("range")) }
    };
    use Direction::{Backward, Forward};
    assert_eq!(r(0, Forward, 3).await, [1, 2, 3]);
    assert_eq!(r(3, Forward, 10).await, [4, 5, 6]);
    assert_eq!(r(6, Forward, 10).await, Vec::<u64>::new());
    assert_eq!(r(0, Backward, 2).await, [6, 5]);
    assert_eq!(r(3, Backward, 10).await, [2, 1]);
    assert_eq!(r(1, Backward, 10).await, Vec::<u64>::new());
    assert_eq!(r(100, Backward, 2).await, [6, 5]);
    let empty = ConversationId::group(&GroupId::from(format!("{p}none")));
    assert!(
        store
            .range(&empty, 0, Backward, 10)
            .await
            .expect("range")
            .is_empty()
    );
}

/// A recall event takes the next seq and marks its target in the same unit;
/// a recall of a missing message fails and consumes no seq.
pub async fn recall_marks_its_target(store: Store) {
    let p = fresh("r");
    let (alice, bob) = (UserId::from(format!("{p}a")), UserId::from(format!("{p}b")));
    let conv = ConversationId::direct(&alice, &bob);
    let m1 = send(&store, new_message(&conv, &alice, "c1", text("one")))
        .await
        .message;
    send(&store, new_message(&conv, &bob, "c2", text("two"))).await;
    let ev = send(
        &store,
        new_message(&conv, &alice, "recall:1", recall_of(&m1, &alice)),
    )
    .await;
    assert_eq!(ev.message.seq, 3, "a recall takes the next seq");
    assert_eq!(ev.message.recall_target(), Some(1));
    let target = store.get(&conv, 1).await.expect("get").expect("exists");
    assert!(target.recalled, "target marked recalled");
    assert_eq!(
        target.content,
        pb::Content::default(),
        "recalled content is dropped"
    );
    let page = store
        .range(&conv, 0, Direction::Forward, 10)
        .await
        .expect("range");
    assert!(
        page[0].recalled && !page[1].recalled,
        "pages show the mark too"
    );
    let ghost = Message {
        seq: 999,
        id: MessageId::new(),
        ..m1.clone()
    };
    let err = store
        .commit(UnitOfWork::new(conv.clone()).append(new_message(
            &conv,
            &alice,
            "recall:999",
            recall_of(&ghost, &alice),
        )))
        .await;
    assert!(
        matches!(err, Err(Error::NotFound(_))),
        "missing target: {err:?}"
    );
    assert_eq!(
        store.max_seq(&conv).await.expect("max"),
        3,
        "no seq consumed"
    );
}

/// A unit is all or nothing: when its recall target is missing, its list
/// entries and cursor moves are not written either; a malformed unit writes
/// nothing.
pub async fn units_are_all_or_nothing(store: Store) {
    let p = fresh("x");
    let (alice, bob) = (UserId::from(format!("{p}a")), UserId::from(format!("{p}b")));
    let conv = ConversationId::direct(&alice, &bob);
    let m1 = send(&store, new_message(&conv, &alice, "c1", text("one")))
        .await
        .message;
    send(&store, new_message(&conv, &bob, "c2", text("two"))).await;
    let ghost = Message {
        seq: 50,
        id: MessageId::new(),
        ..m1
    };
    let failing = UnitOfWork::new(conv.clone())
        .append(new_message(
            &conv,
            &bob,
            "recall:50",
            recall_of(&ghost, &bob),
        ))
        .list_for([bob.clone()])
        .read(alice.clone(), MoveTo::Seq(2))
        .delivered(bob.clone(), DeviceId::from("tablet"), MoveTo::Appended);
    assert!(matches!(
        store.commit(failing).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(store.max_seq(&conv).await.expect("max"), 2);
    assert_eq!(
        store.read(&alice, &conv).await.expect("read"),
        1,
        "the read move was not kept"
    );
    assert_eq!(
        store
            .delivered(&bob, &DeviceId::from("tablet"), &conv)
            .await
            .expect("delivered"),
        None
    );
    assert!(
        store.conversations(&bob).await.expect("list").is_empty(),
        "the list entry was not kept"
    );
    assert!(
        store
            .find_by_client_id(&bob, "recall:50")
            .await
            .expect("client")
            .is_none(),
        "the failed unit's client id is free"
    );
    // Moving to the appended seq of a unit that appends nothing is refused.
    let carol = UserId::from(format!("{p}c"));
    let malformed = UnitOfWork::new(conv.clone())
        .read(carol.clone(), MoveTo::Seq(2))
        .delivered(carol.clone(), DeviceId::from("d"), MoveTo::Appended);
    assert!(matches!(
        store.commit(malformed).await,
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(store.read(&carol, &conv).await.expect("read"), 0);
    // So is a message in another conversation than its unit's.
    let other = ConversationId::group(&GroupId::from(format!("{p}g")));
    let wrong = UnitOfWork::new(conv.clone()).append(new_message(&other, &bob, "w", text("w")));
    assert!(matches!(
        store.commit(wrong).await,
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(store.max_seq(&other).await.expect("max"), 0);
    assert_eq!(store.max_seq(&conv).await.expect("max"), 2);
}

/// Concurrent units keep seq gap-free and de-duplication exact, and a
/// cursor that moves to each unit's own seq ends at the highest.
pub async fn concurrent_units_stay_gap_free(store: Store) {
    let p = fresh("k");
    let busy = ConversationId::group(&GroupId::from(format!("{p}busy")));
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let store = store.clone();
        let busy = busy.clone();
        let sender = UserId::from(format!("{p}u{}", i % 7));
        tasks.push(tokio::spawn(async move {
            store
                .commit(send_unit(new_message(
                    &busy,
                    &sender,
                    &format!("k{i}"),
                    text("x"),
                )))
                .await
                .map(|c| c.appended.map(|a| a.message.seq))
        }));
    }
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.expect("task").expect("commit").expect("appended"));
    }
    got.sort_unstable();
    assert_eq!(
        got,
        (1..=1000).collect::<Vec<u64>>(),
        "1,000 distinct, gap-free seqs"
    );
    assert_eq!(store.max_seq(&busy).await.expect("max"), 1000);
    // Each sender's read cursor is at its own last message.
    for u in 0..7 {
        let sender = UserId::from(format!("{p}u{u}"));
        let last = (0..1000).filter(|i| i % 7 == u).count();
        let read = store.read(&sender, &busy).await.expect("read");
        let m = store.get(&busy, read).await.expect("get").expect("exists");
        assert_eq!(
            m.sender, sender,
            "sender {u} reads up to a message of its own"
        );
        assert!(read >= last as u64);
    }
    // 50 concurrent resends of one message store it once.
    let dup = ConversationId::group(&GroupId::from(format!("{p}dup")));
    let alice = UserId::from(format!("{p}alice"));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (store, dup, alice) = (store.clone(), dup.clone(), alice.clone());
        tasks.push(tokio::spawn(async move {
            store
                .commit(send_unit(new_message(&dup, &alice, "same", text("once"))))
                .await
        }));
    }
    let mut stored = 0;
    for t in tasks {
        let c = t.await.expect("task").expect("commit");
        let a = c.appended.expect("appended");
        assert_eq!(a.message.seq, 1);
        stored += usize::from(!a.duplicate);
    }
    assert_eq!(stored, 1, "exactly one unit stored it");
    assert_eq!(store.max_seq(&dup).await.expect("max"), 1);
}
