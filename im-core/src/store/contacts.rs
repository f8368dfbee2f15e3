use async_trait::async_trait;

use crate::Result;
use crate::model::{ContactList, FriendRequestOutcome, GroupAdds, UserId};

/// Friends, friend requests and block lists.
#[async_trait]
pub trait ContactStore: Send + Sync + 'static {
    /// `from` asks `to` to be friends. If `to` had already asked `from`, they
    /// become friends at once (atomically).
    async fn request(&self, from: &UserId, to: &UserId) -> Result<FriendRequestOutcome>;

    /// `user` accepts `from`'s pending request; false if there was none.
    async fn accept(&self, user: &UserId, from: &UserId) -> Result<bool>;

    /// Ends a friendship and drops pending requests between the two, both
    /// ways; returns whether anything was removed.
    async fn remove(&self, user: &UserId, other: &UserId) -> Result<bool>;

    /// The user's friends, requests and blocks, each sorted.
    async fn list(&self, user: &UserId) -> Result<ContactList>;

    /// `user` blocks `other` (idempotent).
    async fn block(&self, user: &UserId, other: &UserId) -> Result<()>;

    /// `user` unblocks `other`; returns whether a block existed.
    async fn unblock(&self, user: &UserId, other: &UserId) -> Result<bool>;

    /// Whether `user` has blocked `other`.
    async fn is_blocked(&self, user: &UserId, other: &UserId) -> Result<bool>;

    /// Who may add `user` to groups ([`GroupAdds::Anyone`] until set).
    async fn group_adds(&self, user: &UserId) -> Result<GroupAdds>;

    /// Sets who may add `user` to groups.
    async fn set_group_adds(&self, user: &UserId, policy: GroupAdds) -> Result<()>;
}
