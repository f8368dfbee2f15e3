//! Whole conversations: 1:1 and groups with receipts, offline devices and
//! read counts, contacts and their events, typing, and who may add whom
//! to a group.

use super::*;

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
