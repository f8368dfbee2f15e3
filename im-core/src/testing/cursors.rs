//! [`ConversationStore`] conformance, continued: cursors that only move
//! forward, unread counts computed from them, and conversation lists.

use std::collections::BTreeSet;

use imkit_proto::pb;

use super::{Store, fresh, new_message, recall_of, send, send_unit, text};
use crate::model::*;
use crate::store::*;

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
