//! The delivery contract, rule by rule: durable before SENT, one gap-free
//! order, resends stored once, receipts forward only, unread from cursors,
//! gaps filled by sync, and recall.

use super::*;

// ───────────────────── Rule 1: durable before SENT ─────────────────────

/// A conversation store that refuses every write, as a full disk would.
struct FailingWrites(imkit_core::store::memory::MemoryConversations);

#[async_trait]
impl ConversationStore for FailingWrites {
    async fn commit(&self, _: UnitOfWork) -> imkit_core::Result<Committed> {
        Err(Error::store("test", "disk full"))
    }
    async fn get(&self, c: &ConversationId, s: u64) -> imkit_core::Result<Option<Message>> {
        self.0.get(c, s).await
    }
    async fn get_by_id(&self, id: &MessageId) -> imkit_core::Result<Option<Message>> {
        self.0.get_by_id(id).await
    }
    async fn find_by_client_id(&self, u: &UserId, c: &str) -> imkit_core::Result<Option<Message>> {
        self.0.find_by_client_id(u, c).await
    }
    async fn range(
        &self,
        c: &ConversationId,
        f: u64,
        d: Direction,
        l: usize,
    ) -> imkit_core::Result<Vec<Message>> {
        self.0.range(c, f, d, l).await
    }
    async fn max_seq(&self, c: &ConversationId) -> imkit_core::Result<u64> {
        self.0.max_seq(c).await
    }
    async fn unread(&self, c: &ConversationId, r: &UserId) -> imkit_core::Result<u64> {
        self.0.unread(c, r).await
    }
    async fn conversations(&self, u: &UserId) -> imkit_core::Result<Vec<ConversationId>> {
        self.0.conversations(u).await
    }
    async fn delivered(
        &self,
        u: &UserId,
        d: &DeviceId,
        c: &ConversationId,
    ) -> imkit_core::Result<Option<u64>> {
        self.0.delivered(u, d, c).await
    }
    async fn read(&self, u: &UserId, c: &ConversationId) -> imkit_core::Result<u64> {
        self.0.read(u, c).await
    }
}

#[tokio::test]
async fn sent_only_after_the_write_is_durable() {
    let w = World::new();
    let alice = w.connect("alice", "phone").await;
    let bob = w.connect("bob", "phone").await;
    let ack = sent(
        w.call(&alice, to_user("c1", "bob", "hi"))
            .await
            .expect("send"),
    );
    // The acknowledged message is in the store at the acknowledged seq.
    let stored = w
        .engine
        .stores()
        .conversations
        .get(&ConversationId::new(ack.conversation_id.clone()), ack.seq)
        .await
        .expect("get")
        .expect("stored before SENT");
    assert_eq!(stored.id.to_string(), ack.message_id);
    assert_eq!(stored.timestamp_ms, ack.timestamp_ms);
    assert_eq!(w.take_messages(&bob).len(), 1);

    // When the store cannot write, there is no SENT and nothing is pushed.
    let mut stores = Stores::memory();
    stores.conversations = Arc::new(FailingWrites(Default::default()));
    let w = World::with_stores(stores);
    let alice = w.connect("alice", "phone").await;
    let bob = w.connect("bob", "phone").await;
    let err = w
        .call(&alice, to_user("c1", "bob", "hi"))
        .await
        .expect_err("no SENT");
    assert_eq!(err.code(), imkit_proto::ErrorCode::Unavailable);
    assert!(
        w.take(&bob).is_empty(),
        "nothing delivered that was not stored"
    );
}

// ───────────────────── Rule 2: gap-free, one order ─────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_group_sends_are_gap_free_in_one_order() {
    let w = World::new();
    let a = w.connect("a", "d").await;
    let b = w.connect("b", "d").await;
    let c = w.connect("c", "d").await;
    let g = create_group(&w, &a, &["b", "c"]).await;
    w.take(&a);
    w.take(&b);
    w.take(&c);
    let mut tasks = Vec::new();
    for sender in [a.clone(), b.clone(), c.clone()] {
        for i in 0..100 {
            let w = w.clone();
            let sender = sender.clone();
            let g = g.clone();
            tasks.push(tokio::spawn(async move {
                let cmid = format!("{}-{i}", sender.user);
                sent(
                    w.call(&sender, to_group(&cmid, &g, &cmid))
                        .await
                        .expect("send"),
                )
                .seq
            }));
        }
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.push(t.await.expect("task"));
    }
    acked.sort_unstable();
    // Seq 1 is the "created" event; the 300 sends take 2..=301.
    assert_eq!(
        acked,
        (2..=301).collect::<Vec<_>>(),
        "acknowledged seqs are gap-free"
    );
    // Every member's view, sorted by seq, is the same sequence of message ids.
    let view = |msgs: Vec<pb::Message>| {
        let mut v: Vec<(u64, String)> = msgs.into_iter().map(|m| (m.seq, m.message_id)).collect();
        v.sort();
        v
    };
    let conv = format!("g:{g}");
    let full = view(history(&w, &a, &conv).await.expect("history"));
    assert_eq!(full.len(), 301);
    assert!(
        full.iter()
            .enumerate()
            .all(|(i, (s, _))| *s == i as u64 + 1)
    );
    // Each member received every message sent by the others (and not their own).
    for m in [&a, &b, &c] {
        let got = view(w.take_messages(m));
        assert_eq!(got.len(), 200, "{} receives the others' 200", m.user);
        for (seq, id) in &got {
            assert_eq!(
                &full[*seq as usize - 1].1,
                id,
                "same message at seq {seq} for everyone"
            );
        }
    }
}

// ───────────────────── Rule 3: idempotent resends ─────────────────────

#[tokio::test]
async fn resend_with_same_client_id_is_stored_once() {
    let w = World::new();
    let alice = w.connect("alice", "phone").await;
    let bob = w.connect("bob", "phone").await;
    let first = sent(
        w.call(&alice, to_user("c1", "bob", "hi"))
            .await
            .expect("send"),
    );
    assert!(!first.duplicate);
    let again = sent(
        w.call(&alice, to_user("c1", "bob", "hi"))
            .await
            .expect("resend"),
    );
    assert!(again.duplicate);
    assert_eq!(
        (again.seq, &again.message_id, again.timestamp_ms),
        (first.seq, &first.message_id, first.timestamp_ms),
        "the original acknowledgement"
    );
    let conv = first.conversation_id.clone();
    assert_eq!(history(&w, &alice, &conv).await.expect("history").len(), 1);
    // The same client id towards another conversation is a conflict, not a new message.
    let err = w
        .call(&alice, to_user("c1", "carol", "hi"))
        .await
        .expect_err("conflict");
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    // Bob may see the push twice (re-fanned out), but it is one message.
    let got = w.take_messages(&bob);
    assert!(
        got.iter()
            .all(|m| m.seq == 1 && m.message_id == first.message_id)
    );
}

// ───────────────────── Rule 4: forward-only receipts ─────────────────────

#[tokio::test]
async fn receipts_never_move_backwards() {
    let w = World::new();
    let alice = w.connect("alice", "phone").await;
    let bob = w.connect("bob", "phone").await;
    let mut conv = String::new();
    for i in 0..5 {
        conv = sent(
            w.call(&alice, to_user(&format!("c{i}"), "bob", "x"))
                .await
                .expect("send"),
        )
        .conversation_id;
    }
    use pb::ReceiptKind::{Delivered, Read};
    assert_eq!(receipt(&w, &bob, &conv, Delivered, 4).await, 4);
    assert_eq!(
        receipt(&w, &bob, &conv, Delivered, 2).await,
        4,
        "delivered stays"
    );
    assert_eq!(receipt(&w, &bob, &conv, Read, 3).await, 3);
    assert_eq!(receipt(&w, &bob, &conv, Read, 1).await, 3, "read stays");
    assert_eq!(
        receipt(&w, &bob, &conv, Read, 99).await,
        5,
        "capped at the latest message"
    );
    w.take(&alice);
    // A backward receipt pushes nothing.
    receipt(&w, &bob, &conv, Read, 2).await;
    assert!(w.take(&alice).is_empty());
}

// ───────────────────── Rule 5: unread from cursors ─────────────────────

#[tokio::test]
async fn unread_is_computed_from_cursors() {
    let w = World::new();
    let alice = w.connect("alice", "phone").await;
    let alice2 = w.connect("alice", "laptop").await;
    let bob = w.connect("bob", "phone").await;
    let mut conv = String::new();
    for i in 0..3 {
        conv = sent(
            w.call(&bob, to_user(&format!("b{i}"), "alice", "x"))
                .await
                .expect("send"),
        )
        .conversation_id;
    }
    let unread = |l: &pb::ConversationListResponse| l.conversations[0].unread;
    assert_eq!(unread(&conv_list(&w, &alice).await), 3);
    assert_eq!(
        unread(&conv_list(&w, &alice2).await),
        3,
        "same on every device"
    );
    assert_eq!(
        unread(&conv_list(&w, &bob).await),
        0,
        "own messages are not unread"
    );

    // Reading on one device clears it everywhere and tells the other device.
    w.take(&alice2);
    receipt(&w, &alice, &conv, pb::ReceiptKind::Read, 2).await;
    assert_eq!(unread(&conv_list(&w, &alice2).await), 1);
    let pushed = w.take(&alice2);
    assert!(
        pushed
            .iter()
            .any(|p| matches!(p, Packet::ReceiptPush(r) if r.user_id == "alice" && r.seq == 2)),
        "the other device learns the read cursor: {pushed:?}"
    );

    // Reconnecting changes nothing.
    w.disconnect(&alice).await;
    let alice = w.connect("alice", "phone").await;
    assert_eq!(unread(&conv_list(&w, &alice).await), 1);

    // Replying marks everything before it read; own messages never count.
    sent(
        w.call(&alice, to_user("a1", "bob", "reply"))
            .await
            .expect("send"),
    );
    let l = conv_list(&w, &alice).await;
    assert_eq!((unread(&l), l.total_unread), (0, 0));
    assert_eq!(unread(&conv_list(&w, &bob).await), 1);

    // A recalled message stops counting, and the recall event never counts.
    let m = sent(
        w.call(&alice, to_user("a2", "bob", "oops"))
            .await
            .expect("send"),
    );
    assert_eq!(unread(&conv_list(&w, &bob).await), 2);
    w.call(
        &alice,
        pb::RecallRequest {
            conversation_id: conv.clone(),
            message_id: m.message_id,
        },
    )
    .await
    .expect("recall");
    assert_eq!(unread(&conv_list(&w, &bob).await), 1);
}

// ───────────────────── Rule 6: gaps are filled by sync ─────────────────────

#[tokio::test]
async fn sync_returns_what_a_device_missed() {
    let w = World::new();
    let alice = w.connect("alice", "phone").await;
    let bob = w.connect("bob", "phone").await;
    let mut conv = String::new();
    for i in 1..=10 {
        conv = sent(
            w.call(&alice, to_user(&format!("c{i}"), "bob", &format!("m{i}")))
                .await
                .expect("send"),
        )
        .conversation_id;
    }
    // Bob saw up to 4 (say, pushes 5..10 were lost), and asks from there.
    let r = match w
        .call(
            &bob,
            pb::SyncRequest {
                cursors: vec![pb::Cursor {
                    conversation_id: conv.clone(),
                    seq: 4,
                }],
                limit: 3,
            },
        )
        .await
        .expect("sync")
    {
        Packet::SyncResponse(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(r.conversations.len(), 1);
    let c = &r.conversations[0];
    assert_eq!(
        c.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [5, 6, 7]
    );
    assert!(c.has_more);
    assert_eq!(c.max_seq, 10);
    // Without a cursor, the server uses the device's delivered cursor.
    receipt(&w, &bob, &conv, pb::ReceiptKind::Delivered, 8).await;
    let r = match w
        .call(&bob, pb::SyncRequest::default())
        .await
        .expect("sync")
    {
        Packet::SyncResponse(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        r.conversations[0]
            .messages
            .iter()
            .map(|m| m.seq)
            .collect::<Vec<_>>(),
        [9, 10]
    );
    assert!(!r.conversations[0].has_more);
    // Up to date: nothing to report.
    receipt(&w, &bob, &conv, pb::ReceiptKind::Delivered, 10).await;
    let r = match w
        .call(&bob, pb::SyncRequest::default())
        .await
        .expect("sync")
    {
        Packet::SyncResponse(r) => r,
        other => panic!("{other:?}"),
    };
    assert!(r.conversations.is_empty());
}

// ───────────────────── Rule 7: recall ─────────────────────

#[tokio::test]
async fn recall_rules() {
    let w = World::new();
    let alice = w.connect("alice", "phone").await;
    let bob = w.connect("bob", "phone").await;
    let carol = w.connect("carol", "phone").await;
    let m = sent(
        w.call(&alice, to_user("c1", "bob", "secret"))
            .await
            .expect("send"),
    );
    let conv = m.conversation_id.clone();
    let recall = |id: &str| pb::RecallRequest {
        conversation_id: conv.clone(),
        message_id: id.into(),
    };

    // Not the sender.
    let err = w
        .call(&bob, recall(&m.message_id))
        .await
        .expect_err("forbidden");
    assert_eq!(err.code(), imkit_proto::ErrorCode::Forbidden);
    // Not in the conversation at all.
    let err = w
        .call(&carol, recall(&m.message_id))
        .await
        .expect_err("forbidden");
    assert_eq!(err.code(), imkit_proto::ErrorCode::Forbidden);
    // The sender, within the window.
    w.take(&bob);
    let ev = match w.call(&alice, recall(&m.message_id)).await.expect("recall") {
        Packet::RecallResponse(r) => r.event.expect("event"),
        other => panic!("{other:?}"),
    };
    assert_eq!(ev.seq, 2);
    let pushed = w.take_messages(&bob);
    assert_eq!(pushed.len(), 1);
    assert!(matches!(
        pushed[0].content.as_ref().and_then(|c| c.body.as_ref()),
        Some(pb::content::Body::Recall(r)) if r.target_seq == 1 && r.target_message_id == m.message_id
    ));
    let h = history(&w, &bob, &conv).await.expect("history");
    assert!(
        h[0].recalled && body(&h[0]).is_empty(),
        "content gone from history"
    );
    // Recalling again returns the same event and stores nothing.
    let again = match w
        .call(&alice, recall(&m.message_id))
        .await
        .expect("recall again")
    {
        Packet::RecallResponse(r) => r.event.expect("event"),
        other => panic!("{other:?}"),
    };
    assert_eq!(again.seq, 2);
    assert_eq!(history(&w, &bob, &conv).await.expect("history").len(), 2);

    // After the window.
    let m2 = sent(
        w.call(&alice, to_user("c2", "bob", "late"))
            .await
            .expect("send"),
    );
    w.clock.advance_ms(120_001);
    let err = w
        .call(&alice, recall(&m2.message_id))
        .await
        .expect_err("too late");
    assert!(matches!(err, Error::RecallWindowExpired { .. }), "{err:?}");
    // Unknown message.
    let err = w
        .call(&alice, recall(&MessageId::new().to_string()))
        .await
        .expect_err("missing");
    assert_eq!(err.code(), imkit_proto::ErrorCode::NotFound);

    // In a group, an admin may recall anyone's message at any time, and the
    // event reaches offline members.
    let g = create_group(&w, &alice, &["bob", "carol"]).await;
    let gconv = format!("g:{g}");
    w.call(
        &alice,
        pb::GroupSetRoleRequest {
            group_id: g.clone(),
            user_id: "bob".into(),
            role: pb::GroupRole::Admin as i32,
        },
    )
    .await
    .expect("make admin");
    let cm = sent(
        w.call(&carol, to_group("g1", &g, "carol says"))
            .await
            .expect("send"),
    );
    w.disconnect(&carol).await;
    w.clock.advance_ms(10 * 60_000);
    let err = w
        .call(
            &carol,
            pb::RecallRequest {
                conversation_id: gconv.clone(),
                message_id: cm.message_id.clone(),
            },
        )
        .await
        .expect_err("carol's own window passed");
    assert!(matches!(err, Error::RecallWindowExpired { .. }));
    w.call(
        &bob,
        pb::RecallRequest {
            conversation_id: gconv.clone(),
            message_id: cm.message_id.clone(),
        },
    )
    .await
    .expect("admin recalls");
    w.take(&carol);
    let carol = w.connect("carol", "phone").await;
    let drained = w.take_messages(&carol);
    assert!(
        drained.iter().any(|m| matches!(
            m.content.as_ref().and_then(|c| c.body.as_ref()),
            Some(pb::content::Body::Recall(r)) if r.target_message_id == cm.message_id && r.recalled_by == "bob"
        )),
        "offline member receives the recall at login: {drained:?}"
    );
}
