//! The delivery contract, the authorization matrix and whole conversations,
//! run through the engine with no network. A tiny in-test transport keeps a
//! mailbox per connected device and routes pushes the way a server would.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use imkit_core::model::*;
use imkit_core::store::{Committed, ConversationStore, Direction, Stores, UnitOfWork};
use imkit_core::{Caller, Clock, Engine, EngineConfig, Error};
use imkit_proto::{Packet, pb};
use parking_lot::Mutex;

struct World {
    engine: Engine,
    clock: Clock,
    connected: Mutex<HashSet<(UserId, DeviceId)>>,
    mailboxes: Mutex<HashMap<(UserId, DeviceId), Vec<Packet>>>,
}

impl World {
    fn new() -> Arc<World> {
        Self::with_stores(Stores::memory())
    }

    fn with_stores(stores: Stores) -> Arc<World> {
        let clock = Clock::manual(1_700_000_000_000);
        let config = EngineConfig {
            clock: clock.clone(),
            ..EngineConfig::default()
        };
        Arc::new(World {
            engine: Engine::new(stores, config),
            clock,
            connected: Mutex::default(),
            mailboxes: Mutex::default(),
        })
    }

    async fn connect(&self, user: &str, device: &str) -> Caller {
        let caller = Caller::new(user, device);
        self.connected
            .lock()
            .insert((caller.user.clone(), caller.device.clone()));
        let login = self
            .engine
            .login(&caller.user, &caller.device)
            .await
            .expect("login");
        self.route(login.pushes).await;
        caller
    }

    async fn disconnect(&self, caller: &Caller) {
        self.connected
            .lock()
            .remove(&(caller.user.clone(), caller.device.clone()));
        self.engine
            .logout(&caller.user, &caller.device)
            .await
            .expect("logout");
    }

    async fn route(&self, pushes: Vec<imkit_core::Push>) {
        for push in pushes {
            for t in push.targets.iter() {
                let key = (t.user.clone(), t.device.clone());
                let online = self.connected.lock().contains(&key);
                if online {
                    self.mailboxes
                        .lock()
                        .entry(key)
                        .or_default()
                        .push(push.packet.clone());
                }
                // A device that is not connected gets nothing: its cursors
                // say what it lacks, and it catches up at login.
            }
        }
    }

    async fn call(&self, caller: &Caller, packet: impl Into<Packet>) -> Result<Packet, Error> {
        let outcome = self.engine.handle(caller, packet.into()).await?;
        self.route(outcome.pushes).await;
        Ok(outcome.reply)
    }

    fn take(&self, caller: &Caller) -> Vec<Packet> {
        self.mailboxes
            .lock()
            .remove(&(caller.user.clone(), caller.device.clone()))
            .unwrap_or_default()
    }

    fn take_messages(&self, caller: &Caller) -> Vec<pb::Message> {
        self.take(caller)
            .into_iter()
            .filter_map(|p| match p {
                Packet::MessagePush(m) => m.message,
                _ => None,
            })
            .collect()
    }
}

fn text(s: &str) -> Option<pb::Content> {
    Some(pb::Content {
        body: Some(pb::content::Body::Text(pb::Text {
            text: s.into(),
            mentions: vec![],
        })),
    })
}

fn to_user(cmid: &str, user: &str, body: &str) -> pb::SendRequest {
    pb::SendRequest {
        client_msg_id: cmid.into(),
        to: Some(pb::send_request::To::UserId(user.into())),
        content: text(body),
    }
}

fn to_group(cmid: &str, group: &str, body: &str) -> pb::SendRequest {
    pb::SendRequest {
        client_msg_id: cmid.into(),
        to: Some(pb::send_request::To::GroupId(group.into())),
        content: text(body),
    }
}

fn sent(p: Packet) -> pb::SendResponse {
    match p {
        Packet::SendResponse(r) => r,
        other => panic!("expected SendResponse, got {other:?}"),
    }
}

fn body(m: &pb::Message) -> &str {
    match m.content.as_ref().and_then(|c| c.body.as_ref()) {
        Some(pb::content::Body::Text(t)) => &t.text,
        _ => "",
    }
}

async fn receipt(w: &World, c: &Caller, conv: &str, kind: pb::ReceiptKind, seq: u64) -> u64 {
    match w
        .call(
            c,
            pb::ReceiptRequest {
                conversation_id: conv.into(),
                kind: kind as i32,
                seq,
            },
        )
        .await
        .expect("receipt")
    {
        Packet::ReceiptResponse(r) => r.seq,
        other => panic!("expected ReceiptResponse, got {other:?}"),
    }
}

async fn conv_list(w: &World, c: &Caller) -> pb::ConversationListResponse {
    match w
        .call(
            c,
            pb::ConversationListRequest {
                limit: 0,
                after: String::new(),
            },
        )
        .await
        .expect("list")
    {
        Packet::ConversationListResponse(r) => r,
        other => panic!("expected list, got {other:?}"),
    }
}

async fn create_group(w: &World, owner: &Caller, members: &[&str]) -> String {
    match w
        .call(
            owner,
            pb::GroupCreateRequest {
                name: "team".into(),
                avatar: String::new(),
                member_ids: members.iter().map(|s| s.to_string()).collect(),
            },
        )
        .await
        .expect("create")
    {
        Packet::GroupCreateResponse(r) => r.group.expect("group").group_id,
        other => panic!("expected GroupCreateResponse, got {other:?}"),
    }
}

async fn history(w: &World, c: &Caller, conv: &str) -> Result<Vec<pb::Message>, Error> {
    match w
        .call(
            c,
            pb::HistoryRequest {
                conversation_id: conv.into(),
                from_seq: 0,
                backward: false,
                limit: 500,
            },
        )
        .await?
    {
        Packet::HistoryResponse(r) => Ok(r.messages),
        other => panic!("expected HistoryResponse, got {other:?}"),
    }
}

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

// ───────────────────── Authorization matrix ─────────────────────

#[tokio::test]
async fn authorization_matrix() {
    use imkit_proto::ErrorCode as C;
    let w = World::new();
    let alice = w.connect("alice", "phone").await;
    let bob = w.connect("bob", "phone").await;
    let mallory = w.connect("mallory", "phone").await;
    let m = sent(
        w.call(&alice, to_user("c1", "bob", "hi"))
            .await
            .expect("send"),
    );
    let conv = m.conversation_id.clone();
    let g = create_group(&w, &alice, &["bob"]).await;
    let gconv = format!("g:{g}");
    let gm = sent(
        w.call(&bob, to_group("g1", &g, "hi team"))
            .await
            .expect("send"),
    );

    // The sender is always the logged-in caller; there is no field to forge.
    let h = history(&w, &bob, &conv).await.expect("history");
    assert_eq!(h[0].sender_id, "alice");

    let code = |r: Result<Packet, Error>| r.expect_err("refused").code();
    // Post to a group you are not in.
    assert_eq!(
        code(w.call(&mallory, to_group("m1", &g, "let me in")).await),
        C::NotMember
    );
    // Read its history.
    assert_eq!(
        code(
            history(&w, &mallory, &gconv)
                .await
                .map(|_| Packet::GroupList(Default::default()))
        ),
        C::NotMember
    );
    // Read a 1:1 conversation you are not part of.
    assert_eq!(
        code(
            history(&w, &mallory, &conv)
                .await
                .map(|_| Packet::GroupList(Default::default()))
        ),
        C::Forbidden
    );
    // Recall another's message (1:1 and group).
    assert_eq!(
        code(
            w.call(
                &bob,
                pb::RecallRequest {
                    conversation_id: conv.clone(),
                    message_id: m.message_id.clone()
                }
            )
            .await
        ),
        C::Forbidden
    );
    assert_eq!(
        code(
            w.call(
                &mallory,
                pb::RecallRequest {
                    conversation_id: gconv.clone(),
                    message_id: gm.message_id.clone()
                }
            )
            .await
        ),
        C::NotMember
    );
    // Acknowledge another's conversation.
    assert_eq!(
        code(
            w.call(
                &mallory,
                pb::ReceiptRequest {
                    conversation_id: conv.clone(),
                    kind: pb::ReceiptKind::Read as i32,
                    seq: 1
                }
            )
            .await
        ),
        C::Forbidden
    );
    assert_eq!(
        code(
            w.call(
                &mallory,
                pb::ReceiptRequest {
                    conversation_id: gconv.clone(),
                    kind: pb::ReceiptKind::Delivered as i32,
                    seq: 1
                }
            )
            .await
        ),
        C::NotMember
    );
    // Read counts of a group you are not in.
    assert_eq!(
        code(
            w.call(
                &mallory,
                pb::ReadCountRequest {
                    conversation_id: gconv.clone(),
                    seqs: vec![1]
                }
            )
            .await
        ),
        C::NotMember
    );
    // Group management by a plain member.
    assert_eq!(
        code(
            w.call(
                &bob,
                pb::GroupAddMembersRequest {
                    group_id: g.clone(),
                    user_ids: vec!["mallory".into()]
                }
            )
            .await
        ),
        C::Forbidden
    );
    assert_eq!(
        code(
            w.call(
                &bob,
                pb::GroupDismissRequest {
                    group_id: g.clone()
                }
            )
            .await
        ),
        C::Forbidden
    );
    assert_eq!(
        code(
            w.call(
                &bob,
                pb::GroupRemoveMembersRequest {
                    group_id: g.clone(),
                    user_ids: vec!["alice".into()]
                }
            )
            .await
        ),
        C::Forbidden
    );
    assert_eq!(
        code(
            w.call(
                &mallory,
                pb::GroupMembersRequest {
                    group_id: g.clone(),
                    after: String::new(),
                }
            )
            .await
        ),
        C::NotMember
    );
    // A blocked sender is refused, and so are their friend requests.
    w.call(
        &bob,
        pb::BlockRequest {
            user_id: "mallory".into(),
        },
    )
    .await
    .expect("block");
    assert_eq!(
        code(w.call(&mallory, to_user("m2", "bob", "spam")).await),
        C::Blocked
    );
    assert_eq!(
        code(
            w.call(
                &mallory,
                pb::FriendAddRequest {
                    user_id: "bob".into(),
                    message: String::new()
                }
            )
            .await
        ),
        C::Blocked
    );
    // Nor can they put bob in a group: not when creating one, not by
    // adding him to one, and nobody joins when one of several refuses.
    assert_eq!(
        code(
            w.call(
                &mallory,
                pb::GroupCreateRequest {
                    name: "trap".into(),
                    avatar: String::new(),
                    member_ids: vec!["carol".into(), "bob".into()],
                }
            )
            .await
        ),
        C::Blocked
    );
    let trap = create_group(&w, &mallory, &["carol"]).await;
    assert_eq!(
        code(
            w.call(
                &mallory,
                pb::GroupAddMembersRequest {
                    group_id: trap.clone(),
                    user_ids: vec!["dave".into(), "bob".into()],
                }
            )
            .await
        ),
        C::Blocked
    );
    match w
        .call(
            &mallory,
            pb::GroupMembersRequest {
                group_id: trap,
                ..Default::default()
            },
        )
        .await
        .expect("members")
    {
        Packet::GroupMembersResponse(r) => {
            let mut ids: Vec<String> = r.members.into_iter().map(|m| m.user_id).collect();
            ids.sort();
            assert_eq!(ids, ["carol", "mallory"], "neither dave nor bob joined");
        }
        other => panic!("{other:?}"),
    }
    w.call(
        &bob,
        pb::UnblockRequest {
            user_id: "mallory".into(),
        },
    )
    .await
    .expect("unblock");
    sent(
        w.call(&mallory, to_user("m3", "bob", "sorry"))
            .await
            .expect("allowed again"),
    );
    // Bad input.
    assert_eq!(
        code(w.call(&alice, to_user("", "bob", "x")).await),
        C::InvalidArgument
    );
    assert_eq!(
        code(w.call(&alice, to_user("recall:x", "bob", "x")).await),
        C::InvalidArgument
    );
    assert_eq!(
        code(w.call(&alice, to_user("c9", "alice", "me")).await),
        C::InvalidArgument
    );
    assert_eq!(
        code(w.call(&alice, to_user("c9", "bad id!", "x")).await),
        C::InvalidArgument
    );
    assert_eq!(
        code(w.call(&alice, to_group("c9", "nosuchgroup", "x")).await),
        C::NotFound
    );
    let long = "x".repeat(16 * 1024 + 1);
    assert_eq!(
        code(w.call(&alice, to_user("c9", "bob", &long)).await),
        C::InvalidArgument
    );
    let recall_content = pb::SendRequest {
        client_msg_id: "c10".into(),
        to: Some(pb::send_request::To::UserId("bob".into())),
        content: Some(pb::Content {
            body: Some(pb::content::Body::Recall(pb::Recall::default())),
        }),
    };
    assert_eq!(
        code(w.call(&alice, recall_content).await),
        C::InvalidArgument
    );
    assert_eq!(
        code(
            w.call(
                &alice,
                pb::HistoryRequest {
                    conversation_id: "x:nonsense".into(),
                    ..Default::default()
                }
            )
            .await
        ),
        C::InvalidArgument
    );
}

// ───────────────────── Whole conversations ─────────────────────

#[tokio::test]
async fn one_to_one_with_receipts_offline_and_multi_device() {
    let w = World::new();
    let alice = w.connect("alice", "phone").await;
    let alice_laptop = w.connect("alice", "laptop").await;
    // Bob has used a phone before but is offline now.
    let bob = w.connect("bob", "phone").await;
    w.disconnect(&bob).await;

    let mut acks = Vec::new();
    for i in 1..=3 {
        acks.push(sent(
            w.call(&alice, to_user(&format!("c{i}"), "bob", &format!("m{i}")))
                .await
                .expect("send"),
        ));
    }
    let conv = acks[0].conversation_id.clone();
    // Alice's laptop sees her own sends (multi-device sync).
    let mirrored = w.take_messages(&alice_laptop);
    assert_eq!(
        mirrored.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(w.take(&alice).is_empty(), "the sending device gets no echo");

    // Bob logs in and receives them, in order, once.
    let bob = w.connect("bob", "phone").await;
    let got = w.take_messages(&bob);
    assert_eq!(
        got.iter()
            .map(|m| (m.seq, body(m).to_string()))
            .collect::<Vec<_>>(),
        [(1, "m1".to_string()), (2, "m2".into()), (3, "m3".into())]
    );

    // Delivered, then read, reach Alice's devices.
    receipt(&w, &bob, &conv, pb::ReceiptKind::Delivered, 3).await;
    let rp = w.take(&alice);
    assert!(
        matches!(&rp[..], [Packet::ReceiptPush(r)] if r.kind == pb::ReceiptKind::Delivered as i32 && r.seq == 3 && r.user_id == "bob")
    );
    receipt(&w, &bob, &conv, pb::ReceiptKind::Read, 3).await;
    let rp = w.take(&alice);
    assert!(
        matches!(&rp[..], [Packet::ReceiptPush(r)] if r.kind == pb::ReceiptKind::Read as i32 && r.seq == 3)
    );
    assert!(
        w.take(&alice_laptop)
            .iter()
            .any(|p| matches!(p, Packet::ReceiptPush(r) if r.kind == pb::ReceiptKind::Read as i32))
    );

    // Delivered acks moved Bob's cursor to the end: a new login brings nothing.
    w.disconnect(&bob).await;
    let bob = w.connect("bob", "phone").await;
    assert!(w.take_messages(&bob).is_empty());

    // Both see the conversation at the top of their list.
    let la = conv_list(&w, &alice).await;
    assert_eq!(la.conversations[0].peer_id, "bob");
    assert_eq!(la.conversations[0].max_seq, 3);
    let lb = conv_list(&w, &bob).await;
    assert_eq!(
        (
            lb.conversations[0].peer_id.as_str(),
            lb.conversations[0].unread
        ),
        ("alice", 0)
    );
}

#[tokio::test]
async fn group_of_three_with_an_offline_member_recall_and_read_counts() {
    let w = World::new();
    let a = w.connect("a", "phone").await;
    let b = w.connect("b", "phone").await;
    let c = w.connect("c", "phone").await;
    w.disconnect(&c).await;
    let g = create_group(&w, &a, &["b", "c"]).await;
    let conv = format!("g:{g}");
    let m1 = sent(w.call(&a, to_group("a1", &g, "hello")).await.expect("send"));
    let m2 = sent(w.call(&b, to_group("b1", &g, "hi a")).await.expect("send"));
    assert_eq!((m1.seq, m2.seq), (2, 3));
    assert_eq!(
        w.take_messages(&b)
            .iter()
            .map(|m| m.seq)
            .collect::<Vec<_>>(),
        [1, 2]
    );

    // Read counts: b has read a's message (replying read it); c has not.
    assert_eq!(
        receipt(&w, &b, &conv, pb::ReceiptKind::Read, 2).await,
        3,
        "b's own send moved the cursor"
    );
    let rc = match w
        .call(
            &a,
            pb::ReadCountRequest {
                conversation_id: conv.clone(),
                seqs: vec![2],
            },
        )
        .await
        .expect("counts")
    {
        Packet::ReadCountResponse(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (rc.entries[0].read, rc.entries[0].members),
        (1, 2),
        "read by 1 of 2"
    );
    // The sender of a read message hears of it.
    assert!(
        w.take(&a)
            .iter()
            .any(|p| matches!(p, Packet::ReceiptPush(r) if r.user_id == "b" && r.seq == 2))
    );

    // a recalls her message; c is offline.
    w.call(
        &a,
        pb::RecallRequest {
            conversation_id: conv.clone(),
            message_id: m1.message_id.clone(),
        },
    )
    .await
    .expect("recall");

    // c comes back and receives everything, in order, once.
    let c = w.connect("c", "phone").await;
    let got = w.take_messages(&c);
    assert_eq!(got.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert!(
        got[1].recalled,
        "the recalled message arrives already recalled"
    );
    receipt(&w, &c, &conv, pb::ReceiptKind::Read, 4).await;
    let rc = match w
        .call(
            &b,
            pb::ReadCountRequest {
                conversation_id: conv.clone(),
                seqs: vec![3],
            },
        )
        .await
        .expect("counts")
    {
        Packet::ReadCountResponse(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (rc.entries[0].read, rc.entries[0].members),
        (1, 2),
        "c has read it, a has not"
    );
    receipt(&w, &a, &conv, pb::ReceiptKind::Read, 3).await;
    let rc = match w
        .call(
            &b,
            pb::ReadCountRequest {
                conversation_id: conv.clone(),
                seqs: vec![3],
            },
        )
        .await
        .expect("counts")
    {
        Packet::ReadCountResponse(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (rc.entries[0].read, rc.entries[0].members),
        (2, 2),
        "b's message read by both others"
    );

    // Membership changes are events in the conversation.
    w.call(
        &a,
        pb::GroupRemoveMembersRequest {
            group_id: g.clone(),
            user_ids: vec!["c".into()],
        },
    )
    .await
    .expect("remove");
    assert!(
        w.take_messages(&c).iter().any(|m| matches!(
            m.content.as_ref().and_then(|x| x.body.as_ref()),
            Some(pb::content::Body::System(s)) if s.kind == "member_removed"
        )),
        "the removed member learns of it"
    );
    assert_eq!(
        w.call(&c, to_group("c1", &g, "still here?"))
            .await
            .expect_err("removed")
            .code(),
        imkit_proto::ErrorCode::NotMember
    );
    // b leaves on their own.
    w.call(
        &b,
        pb::GroupRemoveMembersRequest {
            group_id: g.clone(),
            user_ids: vec!["b".into()],
        },
    )
    .await
    .expect("leave");
    let members = match w
        .call(
            &a,
            pb::GroupMembersRequest {
                group_id: g.clone(),
                after: String::new(),
            },
        )
        .await
        .expect("members")
    {
        Packet::GroupMembersResponse(r) => r.members,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        members
            .iter()
            .map(|m| m.user_id.as_str())
            .collect::<Vec<_>>(),
        ["a"]
    );
    w.call(
        &a,
        pb::GroupDismissRequest {
            group_id: g.clone(),
        },
    )
    .await
    .expect("dismiss");
    assert_eq!(
        w.call(&a, to_group("a9", &g, "gone"))
            .await
            .expect_err("dismissed")
            .code(),
        imkit_proto::ErrorCode::NotFound
    );
}

#[tokio::test]
async fn contacts_flow_and_events() {
    let w = World::new();
    let a = w.connect("a", "phone").await;
    let b = w.connect("b", "phone").await;
    let r = w
        .call(
            &a,
            pb::FriendAddRequest {
                user_id: "b".into(),
                message: "hi, it's a".into(),
            },
        )
        .await
        .expect("add");
    assert!(matches!(
        r,
        Packet::FriendAddResponse(pb::FriendAddResponse { accepted: false })
    ));
    assert!(w.take(&b).iter().any(|p| matches!(p, Packet::ContactEvent(e) if e.kind == pb::ContactEventKind::Request as i32 && e.user_id == "a" && e.message == "hi, it's a")));
    w.call(
        &b,
        pb::FriendAcceptRequest {
            user_id: "a".into(),
        },
    )
    .await
    .expect("accept");
    assert!(w.take(&a).iter().any(
        |p| matches!(p, Packet::ContactEvent(e) if e.kind == pb::ContactEventKind::Accepted as i32)
    ));
    let list = match w.call(&a, pb::FriendListRequest {}).await.expect("list") {
        Packet::FriendListResponse(l) => l,
        other => panic!("{other:?}"),
    };
    assert_eq!(list.friends, ["b"]);
    assert_eq!(
        w.call(
            &b,
            pb::FriendAcceptRequest {
                user_id: "a".into()
            }
        )
        .await
        .expect_err("no request")
        .code(),
        imkit_proto::ErrorCode::NotFound
    );
    w.call(
        &b,
        pb::FriendRemoveRequest {
            user_id: "a".into(),
        },
    )
    .await
    .expect("remove");
    assert!(w.take(&a).iter().any(
        |p| matches!(p, Packet::ContactEvent(e) if e.kind == pb::ContactEventKind::Removed as i32)
    ));
}

#[tokio::test]
async fn typing_is_relayed_and_not_stored() {
    let w = World::new();
    let a = w.connect("a", "phone").await;
    let b = w.connect("b", "phone").await;
    w.call(
        &a,
        pb::Typing {
            to: Some(pb::typing::To::ToUserId("b".into())),
            active: true,
            ..Default::default()
        },
    )
    .await
    .expect("typing");
    let got = w.take(&b);
    assert!(
        matches!(&got[..], [Packet::Typing(t)] if t.user_id == "a" && t.conversation_id == "d:a:b" && t.active)
    );
    assert!(
        conv_list(&w, &a).await.conversations.is_empty(),
        "nothing stored"
    );
}

/// Who may add a user to groups follows the user's privacy setting:
/// anyone by default, friends only once set, anyone again when set back.
#[tokio::test]
async fn group_adds_follow_the_privacy_setting() {
    use imkit_proto::ErrorCode as C;
    let w = World::new();
    let alice = w.connect("alice", "phone").await;
    let bob = w.connect("bob", "phone").await;
    let carol = w.connect("carol", "phone").await;
    let setting = |p: Result<Packet, Error>| match p.expect("friend list") {
        Packet::FriendListResponse(r) => r.group_adds,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        setting(w.call(&alice, pb::FriendListRequest {}).await),
        pb::GroupAddPolicy::Anyone as i32
    );
    w.call(
        &alice,
        pb::PrivacySetRequest {
            group_adds: pb::GroupAddPolicy::Friends as i32,
        },
    )
    .await
    .expect("set");
    assert_eq!(
        setting(w.call(&alice, pb::FriendListRequest {}).await),
        pb::GroupAddPolicy::Friends as i32
    );
    // An unknown policy is refused; UNSPECIFIED leaves the setting alone.
    let bad = w
        .call(&alice, pb::PrivacySetRequest { group_adds: 99 })
        .await
        .expect_err("unknown policy");
    assert_eq!(bad.code(), C::InvalidArgument);
    w.call(&alice, pb::PrivacySetRequest { group_adds: 0 })
        .await
        .expect("unspecified");
    // A stranger cannot add her, neither at creation nor later.
    let refused = w
        .call(
            &bob,
            pb::GroupCreateRequest {
                name: "strangers".into(),
                avatar: String::new(),
                member_ids: vec!["alice".into()],
            },
        )
        .await
        .expect_err("friends only");
    assert_eq!(refused.code(), C::Forbidden);
    let g = create_group(&w, &bob, &["carol"]).await;
    let refused = w
        .call(
            &bob,
            pb::GroupAddMembersRequest {
                group_id: g.clone(),
                user_ids: vec!["alice".into()],
            },
        )
        .await
        .expect_err("friends only");
    assert_eq!(refused.code(), C::Forbidden);
    // A friend can.
    w.call(
        &carol,
        pb::FriendAddRequest {
            user_id: "alice".into(),
            message: String::new(),
        },
    )
    .await
    .expect("request");
    w.call(
        &alice,
        pb::FriendAcceptRequest {
            user_id: "carol".into(),
        },
    )
    .await
    .expect("accept");
    create_group(&w, &carol, &["alice"]).await;
    // Set back to anyone: the stranger can add her.
    w.call(
        &alice,
        pb::PrivacySetRequest {
            group_adds: pb::GroupAddPolicy::Anyone as i32,
        },
    )
    .await
    .expect("set");
    w.call(
        &bob,
        pb::GroupAddMembersRequest {
            group_id: g,
            user_ids: vec!["alice".into()],
        },
    )
    .await
    .expect("added");
}
