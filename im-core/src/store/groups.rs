use async_trait::async_trait;

use crate::Result;
use crate::model::{Group, GroupId, Member, Role, UserId};

/// Groups, their members and roles.
#[async_trait]
pub trait GroupStore: Send + Sync + 'static {
    /// Creates a group with its first members (the owner among them).
    /// Fails with `Conflict` if the id exists.
    async fn create(&self, group: Group, members: Vec<Member>) -> Result<()>;

    /// Deletes a group and its memberships; returns whether it existed.
    async fn dismiss(&self, group: &GroupId) -> Result<bool>;

    /// A group's profile.
    async fn get(&self, group: &GroupId) -> Result<Option<Group>>;

    /// Changes name and/or avatar; returns the updated profile.
    async fn update(
        &self,
        group: &GroupId,
        name: Option<String>,
        avatar: Option<String>,
    ) -> Result<Option<Group>>;

    /// Adds members; returns those that were not members before.
    async fn add_members(&self, group: &GroupId, members: Vec<Member>) -> Result<Vec<UserId>>;

    /// Removes members; returns those that were members.
    async fn remove_members(&self, group: &GroupId, users: &[UserId]) -> Result<Vec<UserId>>;

    /// Changes a member's role; returns false if they are not a member.
    async fn set_role(&self, group: &GroupId, user: &UserId, role: Role) -> Result<bool>;

    /// The members, in join order.
    async fn members(&self, group: &GroupId) -> Result<Vec<Member>>;

    /// One membership.
    async fn member(&self, group: &GroupId, user: &UserId) -> Result<Option<Member>>;

    /// The groups a user belongs to.
    async fn groups_of(&self, user: &UserId) -> Result<Vec<GroupId>>;
}
