//! The store conformance suite (feature `testing`).
//!
//! One async function per rule, each panicking with a message on the first
//! broken one. Every backend runs the same cases, and so can yours: the
//! [`conformance_tests!`](crate::conformance_tests) macro writes one
//! `#[tokio::test]` per case, so a failure names the trait and the rule.
//!
//! ```ignore
//! imkit_core::conformance_tests!(async {
//!     let stores = my_stores().await;
//!     Some(((), stores)) // a guard kept alive for the test, and the stores
//! });
//! ```
//!
//! [`run_all`] runs every case in one go. The cases use fresh random ids,
//! so they can run against a shared database (a Redis server, say) without
//! clearing it first.

mod accounts;
mod contacts;
pub mod conversations;
mod cursors;
mod devices;
mod groups;
mod journal;
#[cfg(feature = "postgres")]
pub mod postgres_server;
mod presence;
mod push;
#[cfg(feature = "redis")]
pub mod redis_server;

use imkit_proto::pb;

pub use accounts::account_suite;
pub use contacts::contact_suite;
pub use devices::device_suite;
pub use groups::group_suite;
pub use presence::presence_suite;
pub use push::push_suite;

use crate::model::*;
use std::sync::Arc;

use crate::store::{ConversationStore, MoveTo, Stores, UnitOfWork};

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

pub(crate) type Store = Arc<dyn ConversationStore>;

/// A unit that appends `m` the way a send does: the sender reads up to it
/// and the sending device holds it.
pub(crate) fn send_unit(m: NewMessage) -> UnitOfWork {
    let (sender, device) = (m.sender.clone(), m.sender_device.clone());
    UnitOfWork::new(m.conversation.clone())
        .append(m)
        .read(sender.clone(), MoveTo::Appended)
        .delivered(sender, device, MoveTo::Appended)
}

pub(crate) async fn send(store: &Store, m: NewMessage) -> Appended {
    store
        .commit(send_unit(m))
        .await
        .expect("commit")
        .appended
        .expect("appended")
}

pub(crate) fn recall_of(target: &Message, by: &UserId) -> pb::Content {
    pb::Content {
        body: Some(pb::content::Body::Recall(pb::Recall {
            target_message_id: target.id.to_string(),
            target_seq: target.seq,
            recalled_by: by.to_string(),
        })),
    }
}

pub(crate) fn seqs(v: Vec<Message>) -> Vec<u64> {
    v.into_iter().map(|m| m.seq).collect()
}

/// Every case, by name, taking the stores to check.
macro_rules! cases {
    ($($name:ident => $run:expr;)*) => {
        /// The names of every case, in the order [`run_all`] runs them.
        pub const CASES: &[&str] = &[$(stringify!($name)),*];

        /// Runs the case called `name` against `stores`.
        ///
        /// # Panics
        /// When the backend breaks the case's rule, or `name` is unknown.
        pub async fn run_case(name: &str, stores: Stores) {
            match name {
                $(stringify!($name) => { let f = $run; f(stores).await },)*
                other => panic!("no conformance case {other:?}"),
            }
        }
    };
}

cases! {
    presence => |s: Stores| presence_suite(s.presence);
    devices => |s: Stores| device_suite(s.devices);
    groups => |s: Stores| group_suite(s.groups);
    contacts => |s: Stores| contact_suite(s.contacts);
    accounts => |s: Stores| account_suite(s.accounts);
    push => |s: Stores| push_suite(s.push);
    conversations_numbering_and_resends => |s: Stores| conversations::numbering_and_resends(s.conversations);
    conversations_lookups_and_paging => |s: Stores| conversations::lookups_and_paging(s.conversations);
    conversations_unread_counts => |s: Stores| conversations::unread_counts(s.conversations);
    conversations_recall_marks_its_target => |s: Stores| conversations::recall_marks_its_target(s.conversations);
    conversations_units_are_all_or_nothing => |s: Stores| conversations::units_are_all_or_nothing(s.conversations);
    conversations_cursors_move_forward_only => |s: Stores| conversations::cursors_move_forward_only(s.conversations);
    conversations_lists_and_positions => |s: Stores| conversations::lists_and_positions(s.conversations);
    conversations_concurrent_units_stay_gap_free => |s: Stores| conversations::concurrent_units_stay_gap_free(s.conversations);
    journal_records_follow_units => journal::records_follow_units;
    journal_records_keep_conversation_order => journal::records_keep_conversation_order;
}

/// Runs every case against one set of stores.
pub async fn run_all(stores: Stores) {
    for name in CASES {
        run_case(name, stores.clone()).await;
    }
}

/// Writes one `#[tokio::test]` per conformance case for a backend.
/// `$make` is an expression of a future giving `Option<(guard, Stores)>`;
/// it is evaluated once per test, and the guard (a temporary directory, a
/// test server) lives until the test ends. `None` skips the test (a
/// backend whose server is not available; say why on stderr).
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@each $make;
            presence, devices, groups, contacts, accounts, push,
            conversations_numbering_and_resends,
            conversations_lookups_and_paging,
            conversations_unread_counts,
            conversations_recall_marks_its_target,
            conversations_units_are_all_or_nothing,
            conversations_cursors_move_forward_only,
            conversations_lists_and_positions,
            conversations_concurrent_units_stay_gap_free,
            journal_records_follow_units,
            journal_records_keep_conversation_order);
    };
    (@each $make:expr; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let Some((_guard, stores)) = $make.await else {
                    return;
                };
                $crate::testing::run_case(stringify!($case), stores).await;
            }
        )*
        #[test]
        fn every_case_has_a_test() {
            let written: &[&str] = &[$(stringify!($case)),*];
            assert_eq!(written, $crate::testing::CASES, "conformance_tests! lists every case");
        }
    };
}
