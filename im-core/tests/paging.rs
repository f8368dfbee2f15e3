//! Replies are bounded in bytes and page with a continuation: Sync,
//! History, the conversation list, group members and the group list, at the
//! sizes users reach (60 KiB bodies, thousands of conversations, a group
//! of 5,000). And what a login gets: the owed messages pushed when they are
//! few, a notice when they are many; a new device is owed what the user
//! has not read.

use std::collections::{BTreeMap, HashSet};

use imkit_core::store::Stores;
use imkit_core::{Caller, Engine, EngineConfig};
use imkit_proto::{Packet, PacketId, pb};
use prost::Message as _;

const BUDGET: usize = EngineConfig::DEFAULT_MAX_REPLY_BYTES;

fn engine() -> Engine {
    Engine::new(Stores::memory(), EngineConfig::default())
}

/// A custom payload of `len` bytes (text is limited to 16 KiB).
fn body(len: usize) -> Option<pb::Content> {
    Some(pb::Content {
        body: Some(pb::content::Body::Custom(pb::Custom {
            kind: "blob".into(),
            data: vec![b'x'; len].into(),
        })),
    })
}

async fn send(engine: &Engine, from: &Caller, to: &str, len: usize) -> pb::SendResponse {
    let req = pb::SendRequest {
        client_msg_id: uuid::Uuid::new_v4().to_string(),
        to: Some(pb::send_request::To::UserId(to.into())),
        content: body(len),
    };
    engine.send(from, req).await.expect("send").reply
}

/// The wire size of a reply: what the byte bound is about.
fn frame_len(packet: Packet) -> usize {
    packet
        .to_frame(PacketId::NIL)
        .to_bytes(usize::MAX)
        .expect("encodes")
        .len()
}

#[tokio::test]
async fn sync_pages_large_messages_across_conversations_within_the_budget() {
    let engine = engine();
    let reader = Caller::new("reader", "phone");
    // 8 senders × 12 messages of 60 KiB: 5.6 MiB waiting, 22 budgets' worth.
    for s in 0..8 {
        let sender = Caller::new(format!("s{s}"), "d");
        for _ in 0..12 {
            send(&engine, &sender, "reader", 60 * 1024).await;
        }
    }
    let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut cursors: BTreeMap<String, u64> = BTreeMap::new();
    let mut pages = 0;
    loop {
        let req = pb::SyncRequest {
            cursors: cursors
                .iter()
                .map(|(c, s)| pb::Cursor {
                    conversation_id: c.clone(),
                    seq: *s,
                })
                .collect(),
            limit: 0,
        };
        let page = engine.sync(&reader, req).await.expect("sync");
        pages += 1;
        let len = frame_len(Packet::SyncResponse(page.clone()));
        assert!(
            len <= BUDGET + 61 * 1024,
            "a page holds at most the budget and one message: {len}"
        );
        let mut more = page.more;
        for conv in page.conversations {
            more |= conv.has_more;
            for m in &conv.messages {
                seen.entry(conv.conversation_id.clone())
                    .or_default()
                    .push(m.seq);
                cursors.insert(conv.conversation_id.clone(), m.seq);
            }
        }
        if !more {
            break;
        }
        assert!(pages < 200, "the pages end");
    }
    assert!(pages >= 20, "{pages} pages for 5.6 MiB");
    assert_eq!(seen.len(), 8);
    for seqs in seen.values() {
        assert_eq!(*seqs, (1..=12).collect::<Vec<u64>>(), "each once, in order");
    }
}

#[tokio::test]
async fn history_of_large_messages_is_bounded_in_bytes_not_only_count() {
    let engine = engine();
    let a = Caller::new("a", "d");
    let mut conv = String::new();
    for _ in 0..40 {
        conv = send(&engine, &a, "b", 60 * 1024).await.conversation_id;
    }
    let page = engine
        .history(
            &a,
            pb::HistoryRequest {
                conversation_id: conv.clone(),
                from_seq: 0,
                backward: true,
                limit: 500,
            },
        )
        .await
        .expect("history");
    assert!(page.has_more);
    assert!(
        (3..=5).contains(&page.messages.len()),
        "about 256 KiB of 60 KiB messages: {}",
        page.messages.len()
    );
    assert!(frame_len(Packet::HistoryResponse(page.clone())) <= BUDGET + 61 * 1024);
    assert_eq!(page.messages[0].seq, 40, "newest first when backward");
    // One message larger than the budget still comes, alone.
    let small = Engine::new(
        Stores::memory(),
        EngineConfig {
            max_reply_bytes: 1024,
            ..EngineConfig::default()
        },
    );
    let r = send(&small, &a, "b", 8 * 1024).await;
    let page = small
        .history(
            &a,
            pb::HistoryRequest {
                conversation_id: r.conversation_id,
                from_seq: 0,
                backward: true,
                limit: 0,
            },
        )
        .await
        .expect("history");
    assert_eq!(
        page.messages.len(),
        1,
        "never an empty page while messages remain"
    );
}

#[tokio::test]
async fn the_conversation_list_pages_with_a_continuation() {
    let engine = engine();
    let me = Caller::new("me", "d");
    // 3,000 conversations with a 200-byte last message each: about 2 MiB.
    for i in 0..3_000 {
        let peer = Caller::new(format!("p{i:04}"), "d");
        send(&engine, &peer, "me", 200).await;
    }
    let mut after = String::new();
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let page = engine
            .conversations(
                &me,
                pb::ConversationListRequest {
                    limit: 0,
                    after: after.clone(),
                },
            )
            .await
            .expect("list");
        pages += 1;
        assert!(frame_len(Packet::ConversationListResponse(page.clone())) <= BUDGET + 1024);
        assert_eq!(page.total_unread, 3_000, "the total covers every page");
        ids.extend(page.conversations.iter().map(|c| c.conversation_id.clone()));
        if page.next.is_empty() {
            break;
        }
        after = page.next;
    }
    assert!(pages > 1, "{pages} pages");
    assert_eq!(ids.len(), 3_000);
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        3_000,
        "no conversation twice"
    );
    // A limit pages too.
    let first = engine
        .conversations(
            &me,
            pb::ConversationListRequest {
                limit: 10,
                after: String::new(),
            },
        )
        .await
        .expect("list");
    assert_eq!(first.conversations.len(), 10);
    assert_eq!(first.conversations[0].conversation_id, ids[0]);
    assert!(!first.next.is_empty());
    // A continuation that is not one is refused.
    let bad = engine
        .conversations(
            &me,
            pb::ConversationListRequest {
                limit: 0,
                after: "garbage".into(),
            },
        )
        .await;
    assert!(matches!(bad, Err(imkit_core::Error::InvalidArgument(_))));
}

#[tokio::test]
async fn group_members_and_group_lists_page() {
    let engine = engine();
    let owner = Caller::new("owner", "d");
    let members: Vec<String> = (0..4_999).map(|i| format!("member-{i:05}")).collect();
    let created = engine
        .group_create(
            &owner,
            pb::GroupCreateRequest {
                name: "big".into(),
                avatar: String::new(),
                member_ids: members.clone(),
            },
        )
        .await
        .expect("create")
        .reply;
    let group_id = created.group.expect("group").group_id;
    let mut after = String::new();
    let mut got = Vec::new();
    loop {
        let page = engine
            .group_members(
                &owner,
                pb::GroupMembersRequest {
                    group_id: group_id.clone(),
                    after: after.clone(),
                },
            )
            .await
            .expect("members");
        assert!(frame_len(Packet::GroupMembersResponse(page.clone())) <= BUDGET + 1024);
        got.extend(page.members.into_iter().map(|m| m.user_id));
        if page.next.is_empty() {
            break;
        }
        after = page.next;
    }
    assert_eq!(got.len(), 5_000, "the owner and 4,999 members, once each");
    assert_eq!(got.iter().collect::<HashSet<_>>().len(), 5_000);

    // 1,500 groups with long names: more than one page of the group list.
    for i in 0..1_500 {
        let _ = engine
            .group_create(
                &owner,
                pb::GroupCreateRequest {
                    name: format!("{i:04}-{}", "n".repeat(120)),
                    avatar: String::new(),
                    member_ids: vec![],
                },
            )
            .await
            .expect("create");
    }
    let mut after = String::new();
    let mut groups = 0;
    let mut pages = 0;
    loop {
        let page = engine
            .group_list(&owner, pb::GroupListRequest { after })
            .await
            .expect("list");
        pages += 1;
        assert!(page.encoded_len() <= BUDGET + 1024);
        groups += page.groups.len();
        if page.next.is_empty() {
            break;
        }
        after = page.next;
    }
    assert_eq!(groups, 1_501);
    assert!(pages > 1);
}

#[tokio::test]
async fn a_login_pushes_a_few_owed_messages_and_notices_many() {
    let engine = engine();
    let a = Caller::new("a", "d");
    let max = EngineConfig::default().login_push_max;
    let mut conv = String::new();
    for _ in 0..max {
        conv = send(&engine, &a, "b", 10).await.conversation_id;
    }
    let login = engine
        .login(&"b".into(), &"phone".into())
        .await
        .expect("login");
    assert_eq!(login.pushes.len() as u64, max, "a few are pushed");
    assert!(login.notice.is_none());
    engine
        .logout(&"b".into(), &"phone".into())
        .await
        .expect("out");

    send(&engine, &a, "b", 10).await;
    let login = engine
        .login(&"b".into(), &"tablet".into())
        .await
        .expect("login");
    assert!(
        login.pushes.is_empty(),
        "one more than the limit: none pushed"
    );
    let notice = login.notice.expect("a notice");
    assert_eq!(notice.reason, pb::SyncReason::Login as i32);
    assert_eq!(notice.conversations.len(), 1);
    let p = &notice.conversations[0];
    assert_eq!(
        (
            p.conversation_id.as_str(),
            p.max_seq,
            p.resume_seq,
            p.unread
        ),
        (conv.as_str(), max + 1, 0, (max + 1) as u32)
    );
}

#[tokio::test]
async fn a_new_device_is_owed_what_the_user_has_not_read() {
    let engine = engine();
    let a = Caller::new("a", "d");
    let phone = Caller::new("b", "phone");
    let mut conv = String::new();
    for _ in 0..30 {
        conv = send(&engine, &a, "b", 10).await.conversation_id;
    }
    // Read up to 25 on the phone.
    let _ = engine
        .receipt(
            &phone,
            pb::ReceiptRequest {
                conversation_id: conv.clone(),
                kind: pb::ReceiptKind::Read as i32,
                seq: 25,
            },
        )
        .await
        .expect("read");
    let login = engine
        .login(&"b".into(), &"laptop".into())
        .await
        .expect("login");
    let pushed: Vec<u64> = login
        .pushes
        .iter()
        .filter_map(|p| match &p.packet {
            Packet::MessagePush(m) => m.message.as_ref().map(|m| m.seq),
            _ => None,
        })
        .collect();
    assert_eq!(pushed, vec![26, 27, 28, 29, 30], "the unread, in order");
    // The phone read through 25 and was delivered up to 25 with it: it is
    // owed the rest too.
    let sync = engine
        .sync(&phone, pb::SyncRequest::default())
        .await
        .expect("sync");
    assert_eq!(sync.conversations[0].messages[0].seq, 26);
    // Older history is a page away.
    let laptop = Caller::new("b", "laptop");
    let older = engine
        .history(
            &laptop,
            pb::HistoryRequest {
                conversation_id: conv,
                from_seq: 26,
                backward: true,
                limit: 0,
            },
        )
        .await
        .expect("history");
    assert_eq!(older.messages.len(), 25);
}
