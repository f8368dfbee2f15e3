//! The store conformance suite (feature `testing`).
//!
//! One async function per store trait; each panics with a message on the
//! first broken rule. Every backend runs the same suite, and so can yours:
//!
//! ```ignore
//! #[tokio::test(flavor = "multi_thread")]
//! async fn my_backend_conforms() {
//!     imkit_core::testing::run_all(my_stores()).await;
//! }
//! ```
//!
//! The suite uses fresh random ids on every call, so it can run against a
//! shared database (a Redis server, say) without clearing it first.

use std::collections::BTreeSet;
use std::sync::Arc;

use imkit_proto::pb;

use crate::Error;
use crate::model::*;
use crate::store::*;

/// A fresh prefix so repeated runs against one database do not collide.
fn fresh(tag: &str) -> String {
    format!("{tag}{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

fn text(s: &str) -> pb::Content {
    pb::Content {
        body: Some(pb::content::Body::Text(pb::Text {
            text: s.into(),
            mentions: vec![],
        })),
    }
}

fn new_message(
    conv: &ConversationId,
    sender: &UserId,
    cmid: &str,
    content: pb::Content,
) -> NewMessage {
    NewMessage {
        id: MessageId::new(),
        conversation: conv.clone(),
        sender: sender.clone(),
        sender_device: DeviceId::from("dev"),
        client_msg_id: cmid.into(),
        timestamp_ms: 1_700_000_000_000,
        content,
    }
}

/// Runs every suite against one set of stores.
pub async fn run_all(stores: Stores) {
    presence_suite(stores.presence.clone()).await;
    history_suite(stores.history.clone()).await;
    inbox_suite(stores.inbox.clone()).await;
    read_state_suite(stores.read_state.clone()).await;
    group_suite(stores.groups.clone()).await;
    contact_suite(stores.contacts.clone()).await;
    account_suite(stores.accounts.clone()).await;
}

/// [`PresenceStore`] rules: previous node on re-login, node-guarded
/// Accounts: create once, read back, disable and enable, revoke tokens.
pub async fn account_suite(store: Arc<dyn AccountStore>) {
    let user = UserId::new(fresh("acct"));
    assert_eq!(store.get(&user).await.expect("get"), None, "no account yet");
    let account = Account {
        user: user.clone(),
        name: "Ada Lovelace".into(),
        disabled: false,
        created_ms: 1_700_000_000_123,
    };
    assert!(
        store.create(account.clone()).await.expect("create"),
        "created"
    );
    let again = Account {
        name: "someone else".into(),
        ..account.clone()
    };
    assert!(
        !store.create(again).await.expect("create twice"),
        "a second create reports the conflict"
    );
    assert_eq!(
        store.get(&user).await.expect("get"),
        Some(account.clone()),
        "the first create wins, every field read back"
    );
    let disabled = store
        .set_disabled(&user, true)
        .await
        .expect("disable")
        .expect("exists");
    assert!(disabled.disabled && disabled.name == account.name);
    assert!(
        store
            .get(&user)
            .await
            .expect("get")
            .expect("exists")
            .disabled
    );
    let enabled = store
        .set_disabled(&user, false)
        .await
        .expect("enable")
        .expect("exists");
    assert!(!enabled.disabled);
    let nobody = UserId::new(fresh("nobody"));
    assert_eq!(
        store.set_disabled(&nobody, true).await.expect("disable"),
        None,
        "disabling an unknown user changes nothing"
    );
    assert_eq!(store.get(&nobody).await.expect("get"), None);

    let token = fresh("tok");
    let other = fresh("tok");
    assert!(!store.is_revoked(&token).await.expect("is_revoked"));
    let far = 4_000_000_000; // year 2096
    store.revoke_token(&token, far).await.expect("revoke");
    store.revoke_token(&token, far).await.expect("revoke twice");
    assert!(store.is_revoked(&token).await.expect("is_revoked"));
    assert!(
        !store.is_revoked(&other).await.expect("is_revoked"),
        "only the revoked token"
    );
    // A token minted elsewhere may claim any expiry.
    let forever = fresh("tok");
    store
        .revoke_token(&forever, u64::MAX)
        .await
        .expect("revoke a token that never expires");
    assert!(store.is_revoked(&forever).await.expect("is_revoked"));
}

/// offline, per-node listing and clearing.
pub async fn presence_suite(store: Arc<dyn PresenceStore>) {
    let p = fresh("p");
    let (alice, bob) = (
        UserId::from(format!("{p}alice")),
        UserId::from(format!("{p}bob")),
    );
    let (phone, laptop) = (DeviceId::from("phone"), DeviceId::from("laptop"));
    let (n1, n2) = (
        NodeId::from(format!("{p}n1")),
        NodeId::from(format!("{p}n2")),
    );

    assert_eq!(
        store.online(&alice, &phone, &n1).await.expect("online"),
        None
    );
    assert_eq!(
        store.online(&alice, &laptop, &n2).await.expect("online"),
        None
    );
    assert_eq!(store.online(&bob, &phone, &n1).await.expect("online"), None);
    let mut located = store.locate(&alice).await.expect("locate");
    located.sort_by(|a, b| a.device.cmp(&b.device));
    assert_eq!(
        located,
        vec![
            DeviceLocation {
                device: laptop.clone(),
                node: n2.clone()
            },
            DeviceLocation {
                device: phone.clone(),
                node: n1.clone()
            },
        ]
    );
    // The same device logging in on another node reports the old node.
    assert_eq!(
        store.online(&alice, &phone, &n2).await.expect("online"),
        Some(n1.clone()),
        "re-login reports the previous node"
    );
    // The old node's late offline must not remove the new login.
    assert!(!store.offline(&alice, &phone, &n1).await.expect("offline"));
    assert_eq!(store.locate(&alice).await.expect("locate").len(), 2);
    assert!(store.offline(&alice, &phone, &n2).await.expect("offline"));
    assert!(
        !store
            .offline(&alice, &phone, &n2)
            .await
            .expect("offline twice")
    );
    assert_eq!(store.locate(&alice).await.expect("locate").len(), 1);

    let many = store
        .locate_many(&[
            bob.clone(),
            UserId::from(format!("{p}nobody")),
            alice.clone(),
        ])
        .await
        .expect("locate_many");
    assert_eq!(many.len(), 3);
    assert_eq!(
        many[0],
        vec![DeviceLocation {
            device: phone.clone(),
            node: n1.clone()
        }]
    );
    assert!(many[1].is_empty());
    assert_eq!(
        many[2],
        vec![DeviceLocation {
            device: laptop.clone(),
            node: n2.clone()
        }]
    );

    let on_n1: BTreeSet<UserId> = store
        .users_on(&n1)
        .await
        .expect("users_on")
        .into_iter()
        .collect();
    assert_eq!(on_n1, BTreeSet::from([bob.clone()]));
    let on_n2: BTreeSet<UserId> = store
        .users_on(&n2)
        .await
        .expect("users_on")
        .into_iter()
        .collect();
    assert_eq!(on_n2, BTreeSet::from([alice.clone()]));

    assert_eq!(store.clear_node(&n1).await.expect("clear"), 1);
    assert!(store.locate(&bob).await.expect("locate").is_empty());
    assert!(store.users_on(&n1).await.expect("users_on").is_empty());
    assert_eq!(
        store.locate(&alice).await.expect("locate").len(),
        1,
        "other nodes untouched"
    );
    assert_eq!(store.clear_node(&n2).await.expect("clear"), 1);
}

/// [`HistoryStore`] rules: gap-free numbering under concurrency,
/// idempotent appends, paging, unread counting and atomic recall.
pub async fn history_suite(store: Arc<dyn HistoryStore>) {
    let p = fresh("h");
    let alice = UserId::from(format!("{p}alice"));
    let bob = UserId::from(format!("{p}bob"));
    let conv = ConversationId::direct(&alice, &bob);

    assert_eq!(store.max_seq(&conv).await.expect("max"), 0);
    assert!(
        store
            .range(&conv, 0, Direction::Backward, 10)
            .await
            .expect("range")
            .is_empty()
    );

    // Numbering from 1, no gaps.
    let mut ids = Vec::new();
    for i in 1..=5u64 {
        let sender = if i % 2 == 1 { &alice } else { &bob };
        let a = store
            .append(new_message(
                &conv,
                sender,
                &format!("c{i}"),
                text(&format!("m{i}")),
            ))
            .await
            .expect("append");
        assert!(!a.duplicate);
        assert_eq!(a.message.seq, i, "seq is gap-free from 1");
        assert!(!a.message.recalled);
        ids.push(a.message.id);
    }
    assert_eq!(store.max_seq(&conv).await.expect("max"), 5);

    // Idempotency: the same (sender, client_msg_id) stores nothing new.
    let again = store
        .append(new_message(&conv, &alice, "c3", text("different body")))
        .await
        .expect("append dup");
    assert!(again.duplicate, "resend is reported as duplicate");
    assert_eq!(again.message.seq, 3);
    assert_eq!(
        again.message.content,
        text("m3"),
        "the original is returned"
    );
    assert_eq!(
        store.max_seq(&conv).await.expect("max"),
        5,
        "nothing new stored"
    );
    // Another sender may reuse the client id.
    let other = store
        .append(new_message(&conv, &bob, "c3", text("bob's c3")))
        .await
        .expect("append");
    assert!(!other.duplicate);
    assert_eq!(other.message.seq, 6);

    // Lookups.
    let m2 = store.get(&conv, 2).await.expect("get").expect("exists");
    assert_eq!(m2.sender, bob);
    assert_eq!(m2.content, text("m2"));
    assert!(store.get(&conv, 0).await.expect("get").is_none());
    assert!(store.get(&conv, 99).await.expect("get").is_none());
    assert_eq!(
        store
            .get_by_id(&ids[3])
            .await
            .expect("by id")
            .map(|m| m.seq),
        Some(4)
    );
    assert!(
        store
            .get_by_id(&MessageId::new())
            .await
            .expect("by id")
            .is_none()
    );
    assert_eq!(
        store
            .find_by_client_id(&alice, "c5")
            .await
            .expect("by client")
            .map(|m| m.seq),
        Some(5)
    );
    assert!(
        store
            .find_by_client_id(&alice, "c2")
            .await
            .expect("by client")
            .is_none()
    );

    // Paging.
    let seqs = |v: Vec<Message>| v.into_iter().map(|m| m.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(
            store
                .range(&conv, 0, Direction::Forward, 3)
                .await
                .expect("r")
        ),
        [1, 2, 3]
    );
    assert_eq!(
        seqs(
            store
                .range(&conv, 3, Direction::Forward, 10)
                .await
                .expect("r")
        ),
        [4, 5, 6]
    );
    assert_eq!(
        seqs(
            store
                .range(&conv, 6, Direction::Forward, 10)
                .await
                .expect("r")
        ),
        Vec::<u64>::new()
    );
    assert_eq!(
        seqs(
            store
                .range(&conv, 0, Direction::Backward, 2)
                .await
                .expect("r")
        ),
        [6, 5]
    );
    assert_eq!(
        seqs(
            store
                .range(&conv, 3, Direction::Backward, 10)
                .await
                .expect("r")
        ),
        [2, 1]
    );
    assert_eq!(
        seqs(
            store
                .range(&conv, 1, Direction::Backward, 10)
                .await
                .expect("r")
        ),
        Vec::<u64>::new()
    );
    assert_eq!(
        seqs(
            store
                .range(&conv, 100, Direction::Backward, 2)
                .await
                .expect("r")
        ),
        [6, 5]
    );

    // Unread: others' user content after the cursor.
    assert_eq!(
        store.count_unread(&conv, 0, &alice).await.expect("unread"),
        3,
        "bob wrote 2, 4, 6"
    );
    assert_eq!(
        store.count_unread(&conv, 0, &bob).await.expect("unread"),
        3,
        "alice wrote 1, 3, 5"
    );
    assert_eq!(
        store.count_unread(&conv, 4, &alice).await.expect("unread"),
        1
    );
    assert_eq!(
        store.count_unread(&conv, 6, &alice).await.expect("unread"),
        0
    );

    // Recall: a new event that marks its target, atomically.
    let recall = pb::Content {
        body: Some(pb::content::Body::Recall(pb::Recall {
            target_message_id: ids[1].to_string(),
            target_seq: 2,
            recalled_by: bob.to_string(),
        })),
    };
    let ev = store
        .append(new_message(&conv, &bob, "recall:2", recall.clone()))
        .await
        .expect("recall");
    assert_eq!(ev.message.seq, 7, "a recall takes the next seq");
    assert_eq!(ev.message.recall_target(), Some(2));
    let target = store.get(&conv, 2).await.expect("get").expect("exists");
    assert!(target.recalled, "target marked recalled");
    assert_eq!(
        target.content,
        pb::Content::default(),
        "recalled content is dropped"
    );
    assert_eq!(
        store.count_unread(&conv, 0, &alice).await.expect("unread"),
        2,
        "neither the recalled message nor the recall event is unread"
    );
    // A recall of a message that does not exist fails and consumes no seq.
    let missing = pb::Content {
        body: Some(pb::content::Body::Recall(pb::Recall {
            target_message_id: MessageId::new().to_string(),
            target_seq: 999,
            recalled_by: bob.to_string(),
        })),
    };
    let err = store
        .append(new_message(&conv, &bob, "recall:999", missing))
        .await;
    assert!(
        matches!(err, Err(Error::NotFound(_))),
        "recall of a missing seq: {err:?}"
    );
    assert_eq!(
        store.max_seq(&conv).await.expect("max"),
        7,
        "no seq consumed"
    );

    // Conversations are numbered independently.
    let conv2 = ConversationId::direct(&alice, &UserId::from(format!("{p}carol")));
    let a = store
        .append(new_message(&conv2, &alice, "x1", text("hi")))
        .await
        .expect("append");
    assert_eq!(a.message.seq, 1);

    // 1,000 concurrent appends: 1..=1000, each exactly once.
    let busy = ConversationId::group(&GroupId::from(format!("{p}busy")));
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let store = store.clone();
        let busy = busy.clone();
        let sender = UserId::from(format!("{p}u{}", i % 7));
        tasks.push(tokio::spawn(async move {
            store
                .append(new_message(&busy, &sender, &format!("k{i}"), text("x")))
                .await
                .map(|a| a.message.seq)
        }));
    }
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.expect("task").expect("append"));
    }
    got.sort_unstable();
    assert_eq!(
        got,
        (1..=1000).collect::<Vec<u64>>(),
        "1,000 distinct, gap-free seqs"
    );
    assert_eq!(store.max_seq(&busy).await.expect("max"), 1000);

    // 50 concurrent resends of one message store it once.
    let dup_conv = ConversationId::group(&GroupId::from(format!("{p}dup")));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let store = store.clone();
        let dup_conv = dup_conv.clone();
        let alice = alice.clone();
        tasks.push(tokio::spawn(async move {
            store
                .append(new_message(&dup_conv, &alice, "same", text("once")))
                .await
        }));
    }
    let mut fresh_count = 0;
    for t in tasks {
        let a = t.await.expect("task").expect("append");
        assert_eq!(a.message.seq, 1);
        fresh_count += usize::from(!a.duplicate);
    }
    assert_eq!(fresh_count, 1, "exactly one append stored it");
    assert_eq!(store.max_seq(&dup_conv).await.expect("max"), 1);
}

/// [`InboxStore`] rules: per-device, coalesced per conversation, removed
/// by acknowledgement up to a seq.
pub async fn inbox_suite(store: Arc<dyn InboxStore>) {
    let p = fresh("i");
    let bob = UserId::from(format!("{p}bob"));
    let (phone, laptop) = (DeviceId::from("phone"), DeviceId::from("laptop"));
    let c1 = ConversationId::from(format!("d:{p}a:{p}bob"));
    let c2 = ConversationId::from(format!("g:{p}g"));
    let entry = |c: &ConversationId, seq| InboxEntry {
        conversation: c.clone(),
        seq,
    };

    assert!(
        store
            .pending(&bob, &phone, 10)
            .await
            .expect("pending")
            .is_empty()
    );
    store.push(&bob, &phone, entry(&c1, 1)).await.expect("push");
    store.push(&bob, &phone, entry(&c2, 4)).await.expect("push");
    store.push(&bob, &phone, entry(&c1, 3)).await.expect("push");
    store
        .push(&bob, &laptop, entry(&c1, 1))
        .await
        .expect("push");
    let pending = store.pending(&bob, &phone, 10).await.expect("pending");
    assert_eq!(
        pending,
        vec![entry(&c1, 3), entry(&c2, 4)],
        "coalesced, oldest first"
    );
    assert_eq!(
        store.pending(&bob, &phone, 1).await.expect("pending").len(),
        1,
        "limit"
    );

    // Acknowledging below the pointer keeps it.
    assert_eq!(store.ack(&bob, &phone, &c1, 2).await.expect("ack"), 0);
    assert_eq!(
        store
            .pending(&bob, &phone, 10)
            .await
            .expect("pending")
            .len(),
        2
    );
    assert_eq!(store.ack(&bob, &phone, &c1, 3).await.expect("ack"), 1);
    assert_eq!(
        store.pending(&bob, &phone, 10).await.expect("pending"),
        vec![entry(&c2, 4)]
    );
    // Devices are independent.
    assert_eq!(
        store.pending(&bob, &laptop, 10).await.expect("pending"),
        vec![entry(&c1, 1)]
    );
    assert_eq!(store.ack(&bob, &phone, &c2, 10).await.expect("ack"), 1);
    assert!(
        store
            .pending(&bob, &phone, 10)
            .await
            .expect("pending")
            .is_empty()
    );
    assert_eq!(
        store.ack(&bob, &phone, &c2, 10).await.expect("ack again"),
        0
    );
}

/// [`ReadStateStore`] rules: forward-only cursors (also under concurrent
/// updates), idempotent device and conversation registration.
pub async fn read_state_suite(store: Arc<dyn ReadStateStore>) {
    let p = fresh("r");
    let alice = UserId::from(format!("{p}alice"));
    let bob = UserId::from(format!("{p}bob"));
    let phone = DeviceId::from("phone");
    let conv = ConversationId::direct(&alice, &bob);

    store
        .register_device(&alice, &phone)
        .await
        .expect("register");
    store
        .register_device(&alice, &phone)
        .await
        .expect("register twice");
    store
        .register_device(&alice, &DeviceId::from("laptop"))
        .await
        .expect("register");
    let devices: BTreeSet<DeviceId> = store
        .devices(&alice)
        .await
        .expect("devices")
        .into_iter()
        .collect();
    assert_eq!(
        devices,
        BTreeSet::from([phone.clone(), DeviceId::from("laptop")])
    );
    assert!(store.devices(&bob).await.expect("devices").is_empty());
    let many = store
        .devices_many(&[bob.clone(), alice.clone()])
        .await
        .expect("devices_many");
    assert_eq!(many.len(), 2);
    assert!(many[0].is_empty());
    assert_eq!(
        many[1].iter().cloned().collect::<BTreeSet<_>>(),
        devices,
        "devices_many matches devices"
    );

    store.add_conversation(&alice, &conv).await.expect("add");
    store
        .add_conversation(&alice, &conv)
        .await
        .expect("add twice");
    assert_eq!(
        store.conversations(&alice).await.expect("list"),
        vec![conv.clone()]
    );

    assert_eq!(store.read(&alice, &conv).await.expect("read"), 0);
    assert_eq!(
        store.advance_read(&alice, &conv, 5).await.expect("advance"),
        5
    );
    assert_eq!(
        store
            .advance_read(&alice, &conv, 3)
            .await
            .expect("advance back"),
        5,
        "never backwards"
    );
    assert_eq!(store.read(&alice, &conv).await.expect("read"), 5);
    assert_eq!(
        store.advance_read(&alice, &conv, 9).await.expect("advance"),
        9
    );

    assert_eq!(
        store
            .delivered(&alice, &phone, &conv)
            .await
            .expect("delivered"),
        0
    );
    assert_eq!(
        store
            .advance_delivered(&alice, &phone, &conv, 7)
            .await
            .expect("adv"),
        7
    );
    assert_eq!(
        store
            .advance_delivered(&alice, &phone, &conv, 2)
            .await
            .expect("adv"),
        7
    );
    assert_eq!(
        store
            .delivered(&alice, &DeviceId::from("laptop"), &conv)
            .await
            .expect("delivered"),
        0,
        "per device"
    );
    assert_eq!(
        store
            .read_many(&conv, &[bob.clone(), alice.clone()])
            .await
            .expect("many"),
        vec![0, 9]
    );

    // Concurrent advances end at the maximum.
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let store = store.clone();
        let (bob, conv) = (bob.clone(), conv.clone());
        tasks.push(tokio::spawn(async move {
            store.advance_read(&bob, &conv, (i * 7919) % 1000).await
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("advance");
    }
    let max = (0..200u64).map(|i| (i * 7919) % 1000).max().unwrap_or(0);
    assert_eq!(store.read(&bob, &conv).await.expect("read"), max);
}

/// [`GroupStore`] rules: membership, roles, profiles, dismissal.
pub async fn group_suite(store: Arc<dyn GroupStore>) {
    let p = fresh("g");
    let gid = GroupId::from(format!("{p}grp"));
    let u = |n: &str| UserId::from(format!("{p}{n}"));
    let member = |n: &str, role| Member {
        user: u(n),
        role,
        joined_ms: 1,
    };
    let group = Group {
        id: gid.clone(),
        name: "team".into(),
        avatar: String::new(),
        owner: u("owner"),
        created_ms: 1,
    };
    store
        .create(
            group.clone(),
            vec![member("owner", Role::Owner), member("amy", Role::Member)],
        )
        .await
        .expect("create");
    assert!(matches!(
        store.create(group.clone(), vec![]).await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(store.get(&gid).await.expect("get"), Some(group.clone()));
    assert_eq!(
        store
            .member(&gid, &u("amy"))
            .await
            .expect("member")
            .map(|m| m.role),
        Some(Role::Member)
    );
    assert!(
        store
            .member(&gid, &u("zed"))
            .await
            .expect("member")
            .is_none()
    );

    let added = store
        .add_members(
            &gid,
            vec![member("amy", Role::Member), member("ben", Role::Member)],
        )
        .await
        .expect("add");
    assert_eq!(added, vec![u("ben")], "only new members are reported");
    let names: Vec<UserId> = store
        .members(&gid)
        .await
        .expect("members")
        .into_iter()
        .map(|m| m.user)
        .collect();
    assert_eq!(names, vec![u("owner"), u("amy"), u("ben")], "join order");

    assert!(
        store
            .set_role(&gid, &u("ben"), Role::Admin)
            .await
            .expect("role")
    );
    assert!(
        !store
            .set_role(&gid, &u("zed"), Role::Admin)
            .await
            .expect("role")
    );
    assert_eq!(
        store
            .member(&gid, &u("ben"))
            .await
            .expect("m")
            .map(|m| m.role),
        Some(Role::Admin)
    );

    let updated = store
        .update(&gid, Some("renamed".into()), None)
        .await
        .expect("update")
        .expect("exists");
    assert_eq!(
        (updated.name.as_str(), updated.avatar.as_str()),
        ("renamed", "")
    );
    let updated = store
        .update(&gid, None, Some("a.png".into()))
        .await
        .expect("update")
        .expect("exists");
    assert_eq!(
        (updated.name.as_str(), updated.avatar.as_str()),
        ("renamed", "a.png")
    );
    assert!(
        store
            .update(&GroupId::from(format!("{p}none")), Some("x".into()), None)
            .await
            .expect("update")
            .is_none()
    );

    assert_eq!(
        store.groups_of(&u("amy")).await.expect("groups"),
        vec![gid.clone()]
    );
    let removed = store
        .remove_members(&gid, &[u("amy"), u("zed")])
        .await
        .expect("remove");
    assert_eq!(removed, vec![u("amy")]);
    assert!(store.groups_of(&u("amy")).await.expect("groups").is_empty());
    assert_eq!(store.members(&gid).await.expect("members").len(), 2);

    assert!(store.dismiss(&gid).await.expect("dismiss"));
    assert!(!store.dismiss(&gid).await.expect("dismiss twice"));
    assert!(store.get(&gid).await.expect("get").is_none());
    assert!(store.members(&gid).await.expect("members").is_empty());
    assert!(store.groups_of(&u("ben")).await.expect("groups").is_empty());
}

/// [`ContactStore`] rules: requests, mutual requests, accept, removal both
/// ways, blocks; concurrent mutual requests end as friends.
pub async fn contact_suite(store: Arc<dyn ContactStore>) {
    let p = fresh("c");
    let u = |n: &str| UserId::from(format!("{p}{n}"));
    let (a, b, c) = (u("a"), u("b"), u("c"));

    assert_eq!(
        store.request(&a, &b).await.expect("req"),
        FriendRequestOutcome::Pending
    );
    let la = store.list(&a).await.expect("list");
    assert_eq!(la.outgoing, vec![b.clone()]);
    assert_eq!(
        store.list(&b).await.expect("list").incoming,
        vec![a.clone()]
    );
    assert!(!store.accept(&a, &b).await.expect("accept wrong way"));
    assert!(store.accept(&b, &a).await.expect("accept"));
    assert_eq!(store.list(&a).await.expect("list").friends, vec![b.clone()]);
    let lb = store.list(&b).await.expect("list");
    assert_eq!(lb.friends, vec![a.clone()]);
    assert!(lb.incoming.is_empty() && lb.outgoing.is_empty());
    assert_eq!(
        store.request(&a, &b).await.expect("req"),
        FriendRequestOutcome::AlreadyFriends
    );

    // A request answered by a request makes friends.
    assert_eq!(
        store.request(&c, &a).await.expect("req"),
        FriendRequestOutcome::Pending
    );
    assert_eq!(
        store.request(&a, &c).await.expect("req"),
        FriendRequestOutcome::BecameFriends
    );
    assert_eq!(store.list(&c).await.expect("list").friends, vec![a.clone()]);

    // Removal is two-sided.
    assert!(store.remove(&b, &a).await.expect("remove"));
    assert_eq!(store.list(&a).await.expect("list").friends, vec![c.clone()]);
    assert!(store.list(&b).await.expect("list").friends.is_empty());
    assert!(!store.remove(&b, &a).await.expect("remove again"));

    // Blocks are one-sided.
    assert!(!store.is_blocked(&a, &b).await.expect("blocked"));
    store.block(&a, &b).await.expect("block");
    store.block(&a, &b).await.expect("block twice");
    assert!(store.is_blocked(&a, &b).await.expect("blocked"));
    assert!(!store.is_blocked(&b, &a).await.expect("blocked"));
    assert_eq!(store.list(&a).await.expect("list").blocked, vec![b.clone()]);
    assert!(store.unblock(&a, &b).await.expect("unblock"));
    assert!(!store.unblock(&a, &b).await.expect("unblock twice"));
    assert!(!store.is_blocked(&a, &b).await.expect("blocked"));

    // Concurrent mutual requests: both end as friends, nothing dangling.
    for i in 0..20 {
        let (x, y) = (u(&format!("x{i}")), u(&format!("y{i}")));
        let (s1, s2) = (store.clone(), store.clone());
        let (x1, y1, x2, y2) = (x.clone(), y.clone(), x.clone(), y.clone());
        let t1 = tokio::spawn(async move { s1.request(&x1, &y1).await });
        let t2 = tokio::spawn(async move { s2.request(&y2, &x2).await });
        t1.await.expect("task").expect("req");
        t2.await.expect("task").expect("req");
        let lx = store.list(&x).await.expect("list");
        assert_eq!(lx.friends, vec![y.clone()], "pair {i} became friends");
        assert!(
            lx.incoming.is_empty() && lx.outgoing.is_empty(),
            "pair {i}: nothing pending"
        );
    }
}

/// A Redis for tests (features `testing` and `redis`).
#[cfg(feature = "redis")]
pub mod redis_server {
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    /// A Redis to run tests against: the one named by
    /// `IMKIT_TEST_REDIS_URL`, or a `redis-server` started on a free port
    /// and stopped when this is dropped.
    #[derive(Debug)]
    pub struct TestRedis {
        /// `redis://127.0.0.1:PORT`.
        pub url: String,
        child: Option<Child>,
    }

    impl TestRedis {
        /// Finds or starts a Redis. Returns `None` (skip the test) only when
        /// none can be had and `CI` is not `true`; under CI it panics
        /// instead, so a Redis test never silently skips there.
        pub fn start() -> Option<TestRedis> {
            if let Ok(url) = std::env::var("IMKIT_TEST_REDIS_URL")
                && !url.is_empty()
            {
                return Some(TestRedis { url, child: None });
            }
            match Self::spawn() {
                Ok(r) => Some(r),
                Err(why) => {
                    if std::env::var("CI").is_ok_and(|v| v == "true") {
                        panic!("no Redis for the Redis tests under CI: {why}");
                    }
                    eprintln!(
                        "skipping Redis test: {why} (set IMKIT_TEST_REDIS_URL or install redis-server)"
                    );
                    None
                }
            }
        }

        fn spawn() -> Result<TestRedis, String> {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .map_err(|e| format!("no free port: {e}"))?;
            let child = Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot start redis-server: {e}"))?;
            let mut redis = TestRedis {
                url: format!("redis://127.0.0.1:{port}"),
                child: Some(child),
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Ok(redis);
                }
                if let Some(Ok(Some(status))) = redis.child.as_mut().map(Child::try_wait) {
                    return Err(format!("redis-server exited: {status}"));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err("redis-server did not start within 10 s".into())
        }

        /// A fresh key namespace, so tests sharing one Redis do not collide.
        pub fn namespace(&self) -> String {
            format!(
                "imkit-test-{}:",
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            )
        }
    }

    impl Drop for TestRedis {
        fn drop(&mut self) {
            if let Some(mut c) = self.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
