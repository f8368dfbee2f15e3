//! [`ConversationStore`] conformance: units of work (numbering,
//! de-duplication, atomicity, cursors, lists) and the reads around them.

use std::collections::BTreeSet;
use std::sync::Arc;

use imkit_proto::pb;

use super::{fresh, new_message, text};
use crate::Error;
use crate::model::*;
use crate::store::*;

type Store = Arc<dyn ConversationStore>;

/// A unit that appends `m` the way a send does: the sender reads up to it
/// and the sending device holds it.
fn send_unit(m: NewMessage) -> UnitOfWork {
    let (sender, device) = (m.sender.clone(), m.sender_device.clone());
    UnitOfWork::new(m.conversation.clone())
        .append(m)
        .read(sender.clone(), MoveTo::Appended)
        .delivered(sender, device, MoveTo::Appended)
}

async fn send(store: &Store, m: NewMessage) -> Appended {
    store
        .commit(send_unit(m))
        .await
        .expect("commit")
        .appended
        .expect("appended")
}

fn recall_of(target: &Message, by: &UserId) -> pb::Content {
    pb::Content {
        body: Some(pb::content::Body::Recall(pb::Recall {
            target_message_id: target.id.to_string(),
            target_seq: target.seq,
            recalled_by: by.to_string(),
        })),
    }
}

fn seqs(v: Vec<Message>) -> Vec<u64> {
    v.into_iter().map(|m| m.seq).collect()
}

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

/// Unread is others' user content after the reader's read cursor, not
/// recalled; system events and recall events never count.
pub async fn unread_counts(store: Store) {
    let p = fresh("u");
    let (alice, bob) = (UserId::from(format!("{p}a")), UserId::from(format!("{p}b")));
    let conv = ConversationId::direct(&alice, &bob);
    let mut sent = Vec::new();
    for i in 1..=6u64 {
        let sender = if i % 2 == 1 { &alice } else { &bob };
        sent.push(
            send(
                &store,
                new_message(&conv, sender, &format!("c{i}"), text("x")),
            )
            .await
            .message,
        );
    }
    // Alice sent 5, so she read up to 5: only bob's 6 is unread for her.
    assert_eq!(store.unread(&conv, &alice).await.expect("unread"), 1);
    // Bob sent 6: he read everything.
    assert_eq!(store.unread(&conv, &bob).await.expect("unread"), 0);
    let carol = UserId::from(format!("{p}c"));
    assert_eq!(
        store.unread(&conv, &carol).await.expect("unread"),
        6,
        "no cursor: all of it"
    );
    // A system event is not unread.
    let event = pb::Content {
        body: Some(pb::content::Body::System(pb::SystemEvent {
            kind: "updated".into(),
            data: "{}".into(),
        })),
    };
    store
        .commit(UnitOfWork::new(conv.clone()).append(new_message(&conv, &bob, "sys1", event)))
        .await
        .expect("event");
    assert_eq!(store.unread(&conv, &alice).await.expect("unread"), 1);
    assert_eq!(store.unread(&conv, &carol).await.expect("unread"), 6);
    // Recalling bob's 4 takes it out of carol's count, and the recall event
    // does not count.
    store
        .commit(UnitOfWork::new(conv.clone()).append(new_message(
            &conv,
            &bob,
            "recall:4",
            recall_of(&sent[3], &bob),
        )))
        .await
        .expect("recall");
    assert_eq!(store.unread(&conv, &carol).await.expect("unread"), 5);
    assert_eq!(store.unread(&conv, &alice).await.expect("unread"), 1);
    // Reading moves the count.
    store
        .commit(UnitOfWork::new(conv.clone()).read(carol.clone(), MoveTo::Seq(4)))
        .await
        .expect("read");
    assert_eq!(
        store.unread(&conv, &carol).await.expect("unread"),
        2,
        "5 and 6 remain"
    );
    // Recalling one already read changes nothing; one after the cursor does.
    store
        .commit(UnitOfWork::new(conv.clone()).append(new_message(
            &conv,
            &alice,
            "recall:1",
            recall_of(&sent[0], &alice),
        )))
        .await
        .expect("recall");
    assert_eq!(store.unread(&conv, &carol).await.expect("unread"), 2);
    store
        .commit(UnitOfWork::new(conv.clone()).append(new_message(
            &conv,
            &alice,
            "recall:5",
            recall_of(&sent[4], &alice),
        )))
        .await
        .expect("recall");
    assert_eq!(store.unread(&conv, &carol).await.expect("unread"), 1);
    // Recalling the same message twice counts it once.
    store
        .commit(UnitOfWork::new(conv.clone()).append(new_message(
            &conv,
            &bob,
            "recall:5b",
            recall_of(&sent[4], &bob),
        )))
        .await
        .expect("recall again");
    assert_eq!(store.unread(&conv, &carol).await.expect("unread"), 1);
    let empty = ConversationId::group(&GroupId::from(format!("{p}none")));
    assert_eq!(store.unread(&empty, &carol).await.expect("unread"), 0);
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

/// Cursors move forward only, are clamped to the highest seq, report where
/// they were and are, and are per device (delivered) or per user (read).
pub async fn cursors_move_forward_only(store: Store) {
    let p = fresh("c");
    let (alice, bob) = (UserId::from(format!("{p}a")), UserId::from(format!("{p}b")));
    let (phone, laptop) = (DeviceId::from("phone"), DeviceId::from("laptop"));
    let conv = ConversationId::direct(&alice, &bob);
    for i in 1..=9u64 {
        send(
            &store,
            new_message(&conv, &bob, &format!("c{i}"), text("x")),
        )
        .await;
    }
    let mv = |cursor: Cursor, to: u64| {
        let (store, conv) = (store.clone(), conv.clone());
        async move {
            let mut unit = UnitOfWork::new(conv);
            unit.moves.push(CursorMove {
                cursor,
                to: MoveTo::Seq(to),
            });
            store.commit(unit).await.expect("move").moves[0]
        }
    };
    assert_eq!(store.read(&alice, &conv).await.expect("read"), 0);
    assert_eq!(
        store.delivered(&alice, &phone, &conv).await.expect("d"),
        None
    );
    assert_eq!(
        mv(Cursor::Read(alice.clone()), 5).await,
        Moved {
            before: 0,
            after: 5
        }
    );
    assert_eq!(
        mv(Cursor::Read(alice.clone()), 3).await,
        Moved {
            before: 5,
            after: 5
        },
        "never backwards"
    );
    assert_eq!(
        mv(Cursor::Read(alice.clone()), 50).await,
        Moved {
            before: 5,
            after: 9
        },
        "clamped to the end"
    );
    assert_eq!(store.read(&alice, &conv).await.expect("read"), 9);
    let d = Cursor::Delivered(alice.clone(), phone.clone());
    assert_eq!(
        mv(d.clone(), 7).await,
        Moved {
            before: 0,
            after: 7
        }
    );
    assert_eq!(
        mv(d.clone(), 2).await,
        Moved {
            before: 7,
            after: 7
        }
    );
    assert_eq!(
        store.delivered(&alice, &phone, &conv).await.expect("d"),
        Some(7)
    );
    assert_eq!(
        store.delivered(&alice, &laptop, &conv).await.expect("d"),
        None,
        "per device"
    );
    assert_eq!(
        store
            .read_many(
                &conv,
                &[bob.clone(), alice.clone(), UserId::from(format!("{p}z"))]
            )
            .await
            .expect("many"),
        vec![9, 9, 0]
    );
    // Several moves in one unit, reported in order.
    let unit = UnitOfWork::new(conv.clone())
        .delivered(alice.clone(), laptop.clone(), MoveTo::Seq(4))
        .read(bob.clone(), MoveTo::Seq(1));
    let done = store.commit(unit).await.expect("moves");
    assert_eq!(
        done.moves,
        vec![
            Moved {
                before: 0,
                after: 4
            },
            Moved {
                before: 9,
                after: 9
            }
        ]
    );
    assert!(done.appended.is_none());
    // A member joining with an event starts reading just before it.
    let carol = UserId::from(format!("{p}c"));
    let joined = store
        .commit(
            UnitOfWork::new(conv.clone())
                .append(new_message(&conv, &bob, "joined", text("joined")))
                .read(carol.clone(), MoveTo::BeforeAppended),
        )
        .await
        .expect("join");
    assert_eq!(joined.appended.expect("event").message.seq, 10);
    assert_eq!(
        joined.moves,
        vec![Moved {
            before: 0,
            after: 9
        }]
    );
    assert_eq!(
        store.unread(&conv, &carol).await.expect("unread"),
        1,
        "the event's text"
    );
    // Concurrent moves end at the maximum.
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let fut = mv(
            Cursor::Delivered(bob.clone(), phone.clone()),
            (i * 7919) % 10,
        );
        tasks.push(tokio::spawn(fut));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let max = (0..200u64)
        .map(|i| (i * 7919) % 10)
        .max()
        .unwrap_or(0)
        .min(10);
    assert_eq!(
        store.delivered(&bob, &phone, &conv).await.expect("d"),
        Some(max)
    );
}

/// Lists gain entries idempotently; positions agree with the single reads.
pub async fn lists_and_positions(store: Store) {
    let p = fresh("p");
    let (alice, bob, carol) = (
        UserId::from(format!("{p}a")),
        UserId::from(format!("{p}b")),
        UserId::from(format!("{p}c")),
    );
    let ab = ConversationId::direct(&alice, &bob);
    let ac = ConversationId::direct(&alice, &carol);
    let g = ConversationId::group(&GroupId::from(format!("{p}g")));
    for (conv, n) in [(&ab, 3u64), (&ac, 2), (&g, 4)] {
        for i in 0..n {
            let unit = send_unit(new_message(conv, &carol, &format!("{conv}-{i}"), text("x")));
            let unit = if conv.is_direct() {
                unit.list_for([alice.clone(), carol.clone()])
            } else {
                unit
            };
            store.commit(unit).await.expect("send");
        }
    }
    store
        .commit(UnitOfWork::new(ab.clone()).list_for([alice.clone(), alice.clone()]))
        .await
        .expect("list twice");
    let listed: BTreeSet<ConversationId> = store
        .conversations(&alice)
        .await
        .expect("list")
        .into_iter()
        .collect();
    assert_eq!(
        listed,
        BTreeSet::from([ab.clone(), ac.clone()]),
        "groups are not listed, entries are unique"
    );
    let phone = DeviceId::from("phone");
    store
        .commit(
            UnitOfWork::new(ac.clone())
                .delivered(alice.clone(), phone.clone(), MoveTo::Seq(1))
                .read(alice.clone(), MoveTo::Seq(1)),
        )
        .await
        .expect("cursors");
    let convs = [
        ab.clone(),
        ac.clone(),
        g.clone(),
        ConversationId::group(&GroupId::from(format!("{p}none"))),
    ];
    let positions = store
        .positions(&alice, &phone, &convs)
        .await
        .expect("positions");
    assert_eq!(positions.len(), 4);
    for (pos, conv) in positions.iter().zip(&convs) {
        assert_eq!(&pos.conversation, conv);
        assert_eq!(pos.max_seq, store.max_seq(conv).await.expect("max"));
        assert_eq!(
            pos.delivered,
            store.delivered(&alice, &phone, conv).await.expect("d")
        );
        assert_eq!(pos.read, store.read(&alice, conv).await.expect("read"));
        assert_eq!(
            pos.unread,
            store.unread(conv, &alice).await.expect("unread")
        );
    }
    assert_eq!(
        positions
            .iter()
            .map(|p| (p.max_seq, p.delivered, p.read, p.unread))
            .collect::<Vec<_>>(),
        vec![
            (3, None, 0, 3),
            (2, Some(1), 1, 1),
            (4, None, 0, 4),
            (0, None, 0, 0)
        ]
    );
    assert!(
        store
            .positions(&alice, &phone, &[])
            .await
            .expect("none")
            .is_empty()
    );
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
