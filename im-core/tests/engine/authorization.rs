//! What a caller may not do: forge a sender, read or touch others'
//! conversations, manage a group as a plain member, reach someone who
//! blocked them, or send malformed requests.

use super::*;

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
