//! [`JournalStore`] conformance: a unit's record is written with it, only
//! if it wrote something, and records come back in commit order.

use std::sync::Arc;
use std::time::Duration;

use super::{fresh, new_message, send_unit, text};
use crate::model::*;
use crate::store::*;

/// Every record of `key`, oldest first, paging through the whole journal
/// (other cases may share it).
async fn records_of(journal: &Arc<dyn JournalStore>, key: &str) -> Vec<JournalRecord> {
    let (mut after, mut out) = (0, Vec::new());
    loop {
        let page = journal.read(after, 500).await.expect("read the journal");
        let Some(last) = page.last() else { break };
        assert!(
            page.windows(2).all(|w| w[0].id < w[1].id) && last.id > after,
            "read answers ids above `after`, ascending"
        );
        after = last.id;
        out.extend(page.into_iter().filter(|r| r.key == key));
    }
    out
}

/// Records follow the units that wrote something, with their seq, and
/// nothing else; `put` records outside units; `take` removes.
pub(super) async fn records_follow_units(stores: Stores) {
    let (conv_store, journal) = (stores.conversations, stores.journal);
    let p = fresh("j");
    let (alice, bob) = (UserId::from(format!("{p}a")), UserId::from(format!("{p}b")));
    let conv = ConversationId::direct(&alice, &bob);
    let key = conv.as_str();
    let recorded = |m: NewMessage, tag: &str| send_unit(m).journal(Some(tag.as_bytes().to_vec()));

    let first = conv_store
        .commit(recorded(new_message(&conv, &alice, "c1", text("a")), "m1"))
        .await
        .expect("commit");
    assert_eq!(first.journal_seq(), Some(1));
    // A resend records nothing; nor does a unit without a record.
    conv_store
        .commit(recorded(
            new_message(&conv, &alice, "c1", text("a")),
            "again",
        ))
        .await
        .expect("resend");
    conv_store
        .commit(send_unit(new_message(&conv, &bob, "c2", text("b"))))
        .await
        .expect("unrecorded");
    // A cursor that moves records its new place; one that stays records nothing.
    let receipt = || {
        UnitOfWork::new(conv.clone())
            .read(alice.clone(), MoveTo::Seq(2))
            .journal(Some(b"read".to_vec()))
    };
    conv_store.commit(receipt()).await.expect("receipt");
    conv_store.commit(receipt()).await.expect("same receipt");
    // A refused unit records nothing.
    let missing = pb_recall_of_missing(&conv, &alice);
    assert!(
        conv_store
            .commit(
                UnitOfWork::new(conv.clone())
                    .append(missing)
                    .journal(Some(b"no".to_vec()))
            )
            .await
            .is_err(),
        "a recall of nothing is refused"
    );
    journal.put(key, b"put".to_vec()).await.expect("put");

    let got = records_of(&journal, key).await;
    let summary: Vec<(u64, &[u8])> = got.iter().map(|r| (r.seq, r.payload.as_slice())).collect();
    assert_eq!(
        summary,
        vec![(1, &b"m1"[..]), (2, &b"read"[..]), (0, &b"put"[..])],
        "one record per unit that wrote something, in commit order"
    );
    let before = journal.pending().await.expect("pending");
    assert!(before >= 3, "pending counts what waits");
    let ids: Vec<u64> = got.iter().map(|r| r.id).collect();
    journal.take(&ids[..2]).await.expect("take");
    let left = records_of(&journal, key).await;
    assert_eq!(left.len(), 1, "taken records are gone");
    assert_eq!(left[0].payload, b"put");
    journal
        .take(&[left[0].id, u64::MAX / 4])
        .await
        .expect("take, with an unknown id");
    assert!(records_of(&journal, key).await.is_empty());

    // The lease: its holder renews it, and anyone may take it once it lapsed.
    let holder = format!("{p}-node-a");
    assert!(
        journal
            .lease(&holder, Duration::from_millis(200))
            .await
            .expect("lease")
    );
    assert!(
        journal
            .lease(&holder, Duration::from_millis(200))
            .await
            .expect("renew")
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        journal
            .lease(&format!("{p}-node-b"), Duration::from_secs(30))
            .await
            .expect("lease after it lapsed")
    );
}

/// Concurrent units on one conversation record in seq order.
pub(super) async fn records_keep_conversation_order(stores: Stores) {
    let (conv_store, journal) = (stores.conversations, stores.journal);
    let p = fresh("jo");
    let conv = ConversationId::group(&GroupId::from(format!("{p}g")));
    let mut tasks = Vec::new();
    for i in 0..40u32 {
        let (store, conv) = (conv_store.clone(), conv.clone());
        let sender = UserId::from(format!("{p}u{}", i % 4));
        tasks.push(tokio::spawn(async move {
            let unit = send_unit(new_message(&conv, &sender, &format!("c{i}"), text("x")))
                .journal(Some(vec![1]));
            store.commit(unit).await.expect("commit")
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let got = records_of(&journal, conv.as_str()).await;
    let seqs: Vec<u64> = got.iter().map(|r| r.seq).collect();
    assert_eq!(
        seqs,
        (1..=40).collect::<Vec<_>>(),
        "ids follow seq within a conversation"
    );
    let ids: Vec<u64> = got.iter().map(|r| r.id).collect();
    journal.take(&ids).await.expect("take");
}

fn pb_recall_of_missing(conv: &ConversationId, by: &UserId) -> NewMessage {
    let target = Message::from_new(new_message(conv, by, "gone", text("x")), 99);
    new_message(
        conv,
        by,
        &format!("{}-recall", fresh("r")),
        super::recall_of(&target, by),
    )
}
