//! Group operations. Every change is also written to the group's
//! conversation as a system event, so members see it in order.

use imkit_proto::pb;
use serde_json::json;

use super::send::SYSTEM_ID_PREFIX;
use super::{Caller, Engine, Outcome, Push};
use crate::journal::{EventKind, Recorded};
use crate::model::*;
use crate::store::{MoveTo, UnitOfWork};
use crate::{Error, Result};

fn group_info(g: &Group, member_count: usize) -> pb::GroupInfo {
    pb::GroupInfo {
        group_id: g.id.to_string(),
        name: g.name.clone(),
        avatar: g.avatar.clone(),
        owner_id: g.owner.to_string(),
        member_count: u32::try_from(member_count).unwrap_or(u32::MAX),
        created_ms: g.created_ms,
    }
}

/// Most users a group event names; `count` says how many there were (a
/// group of 5,000 would otherwise make its "created" event 60 KB, pushed to
/// every member).
pub const EVENT_MAX_NAMED_USERS: usize = 100;

/// The users an event names: the first [`EVENT_MAX_NAMED_USERS`].
fn named(users: &[UserId]) -> Vec<&str> {
    users
        .iter()
        .take(EVENT_MAX_NAMED_USERS)
        .map(UserId::as_str)
        .collect()
}

fn parse_users(ids: &[String]) -> Result<Vec<UserId>> {
    let mut out: Vec<UserId> = Vec::with_capacity(ids.len());
    for id in ids {
        let u = UserId::parse(id)?;
        if !out.contains(&u) {
            out.push(u);
        }
    }
    Ok(out)
}

impl Engine {
    /// The caller's membership, or `NotFound` / `NotMember`.
    async fn membership(&self, caller: &Caller, g: &GroupId) -> Result<(Group, Member)> {
        let s = &self.inner.stores;
        let group = s
            .groups
            .get(g)
            .await?
            .ok_or_else(|| Error::NotFound(format!("group {g}")))?;
        let member = s
            .groups
            .member(g, &caller.user)
            .await?
            .ok_or_else(|| Error::NotMember {
                user: caller.user.to_string(),
                group: g.to_string(),
            })?;
        Ok((group, member))
    }

    async fn manager(&self, caller: &Caller, g: &GroupId) -> Result<(Group, Member)> {
        let (group, member) = self.membership(caller, g).await?;
        if !member.role.is_manager() {
            return Err(Error::Forbidden(format!(
                "only the owner or an admin of {g} may do this"
            )));
        }
        Ok((group, member))
    }

    /// Writes a system event into a group's conversation and fans it out
    /// to `audience`. Members who join with this event (`joining`) start
    /// reading there: their read cursors move to just before the event, so
    /// the group's earlier messages never count as unread or are owed to
    /// their devices (they can still page through its history), and the
    /// event itself reaches them.
    async fn system_event(
        &self,
        caller: &Caller,
        g: &GroupId,
        kind: &str,
        data: serde_json::Value,
        audience: &[UserId],
        joining: &[UserId],
    ) -> Result<Push> {
        let conversation = ConversationId::group(g);
        let mut unit = UnitOfWork::new(conversation.clone()).append(NewMessage {
            id: MessageId::new(),
            conversation,
            sender: caller.user.clone(),
            sender_device: caller.device.clone(),
            client_msg_id: format!("{SYSTEM_ID_PREFIX}{}", uuid::Uuid::now_v7()),
            timestamp_ms: self.now(),
            content: pb::Content {
                body: Some(pb::content::Body::System(pb::SystemEvent {
                    kind: kind.to_owned(),
                    data: data.to_string(),
                })),
            },
        });
        for u in joining {
            unit = unit.read(u.clone(), MoveTo::BeforeAppended);
        }
        unit = unit.journal(self.journal_payload(EventKind::Group, || Recorded::Appended));
        let appended = self
            .inner
            .stores
            .conversations
            .commit(unit)
            .await?
            .appended
            .ok_or_else(|| Error::store("engine", "a system event unit stored nothing"))?;
        self.emit(|| crate::hooks::Event::Group {
            conversation: appended.message.conversation.clone(),
            kind: kind.to_owned(),
            data: data.to_string(),
            by: caller.user.clone(),
        });
        self.fan_out(&appended.message, audience, caller).await
    }

    /// Fails with [`Error::Blocked`] if any of `users` has blocked `actor`,
    /// and with [`Error::Forbidden`] if one accepts group adds from friends
    /// only and `actor` is not one: nobody is put in a group without their
    /// consent.
    async fn consent(&self, actor: &UserId, users: &[UserId]) -> Result<()> {
        let contacts = &self.inner.stores.contacts;
        for u in users.iter().filter(|u| *u != actor) {
            if contacts.is_blocked(u, actor).await? {
                return Err(Error::Blocked {
                    sender: actor.to_string(),
                    recipient: u.to_string(),
                });
            }
            if contacts.group_adds(u).await? == GroupAdds::FriendsOnly
                && !contacts.list(u).await?.friends.contains(actor)
            {
                return Err(Error::Forbidden(format!(
                    "{u} may be added to groups by friends only"
                )));
            }
        }
        Ok(())
    }

    /// Creates a group owned by the caller.
    pub async fn group_create(
        &self,
        caller: &Caller,
        req: pb::GroupCreateRequest,
    ) -> Result<Outcome<pb::GroupCreateResponse>> {
        if req.name.chars().count() > 128 {
            return Err(Error::InvalidArgument(
                "group name is over 128 characters".into(),
            ));
        }
        let mut users = vec![caller.user.clone()];
        for u in parse_users(&req.member_ids)? {
            if !users.contains(&u) {
                users.push(u);
            }
        }
        if users.len() > self.inner.config.max_group_members {
            return Err(Error::InvalidArgument(format!(
                "a group may have at most {} members",
                self.inner.config.max_group_members
            )));
        }
        self.consent(&caller.user, &users).await?;
        let now = self.now();
        let group = Group {
            id: GroupId::new(uuid::Uuid::now_v7().simple().to_string()),
            name: req.name,
            avatar: req.avatar,
            owner: caller.user.clone(),
            created_ms: now,
        };
        let members = users
            .iter()
            .map(|u| Member {
                user: u.clone(),
                role: if *u == caller.user {
                    Role::Owner
                } else {
                    Role::Member
                },
                joined_ms: now,
            })
            .collect();
        self.inner
            .stores
            .groups
            .create(group.clone(), members)
            .await?;
        let push = self
            .system_event(
                caller,
                &group.id,
                "created",
                json!({ "by": caller.user.as_str(), "name": group.name, "members": named(&users), "count": users.len() }),
                &users,
                &users,
            )
            .await?;
        Ok(Outcome::new(
            pb::GroupCreateResponse {
                group: Some(group_info(&group, users.len())),
            },
            vec![push],
        ))
    }

    /// Dismisses a group (owner only).
    pub async fn group_dismiss(
        &self,
        caller: &Caller,
        req: pb::GroupDismissRequest,
    ) -> Result<Outcome<pb::GroupDismissResponse>> {
        let g = GroupId::parse(&req.group_id)?;
        let (_, me) = self.membership(caller, &g).await?;
        if me.role != Role::Owner {
            return Err(Error::Forbidden(format!("only the owner may dismiss {g}")));
        }
        let members = self.group_member_ids(caller, &g).await?;
        let push = self
            .system_event(
                caller,
                &g,
                "dismissed",
                json!({ "by": caller.user.as_str() }),
                &members,
                &[],
            )
            .await?;
        self.inner.stores.groups.dismiss(&g).await?;
        Ok(Outcome::new(pb::GroupDismissResponse {}, vec![push]))
    }

    /// Adds members (owner or admin).
    pub async fn group_add(
        &self,
        caller: &Caller,
        req: pb::GroupAddMembersRequest,
    ) -> Result<Outcome<pb::GroupAddMembersResponse>> {
        let g = GroupId::parse(&req.group_id)?;
        self.manager(caller, &g).await?;
        let users = parse_users(&req.user_ids)?;
        let current = self.group_member_ids(caller, &g).await?;
        let joining: Vec<UserId> = users
            .iter()
            .filter(|u| !current.contains(u))
            .cloned()
            .collect();
        if current.len() + joining.len() > self.inner.config.max_group_members {
            return Err(Error::InvalidArgument(format!(
                "a group may have at most {} members",
                self.inner.config.max_group_members
            )));
        }
        self.consent(&caller.user, &joining).await?;
        let now = self.now();
        let added = self
            .inner
            .stores
            .groups
            .add_members(
                &g,
                users
                    .into_iter()
                    .map(|user| Member {
                        user,
                        role: Role::Member,
                        joined_ms: now,
                    })
                    .collect(),
            )
            .await?;
        let mut pushes = Vec::new();
        if !added.is_empty() {
            let members = self.group_member_ids(caller, &g).await?;
            pushes.push(
                self.system_event(
                    caller,
                    &g,
                    "member_added",
                    json!({ "by": caller.user.as_str(), "users": named(&added), "count": added.len() }),
                    &members,
                    &added,
                )
                .await?,
            );
        }
        Ok(Outcome::new(
            pb::GroupAddMembersResponse {
                added: added.iter().map(|u| u.to_string()).collect(),
            },
            pushes,
        ))
    }

    /// Removes members (owner or admin), or lets a member leave.
    pub async fn group_remove(
        &self,
        caller: &Caller,
        req: pb::GroupRemoveMembersRequest,
    ) -> Result<Outcome<pb::GroupRemoveMembersResponse>> {
        let g = GroupId::parse(&req.group_id)?;
        let (group, me) = self.membership(caller, &g).await?;
        let users = parse_users(&req.user_ids)?;
        let s = &self.inner.stores;
        for u in &users {
            if *u == group.owner {
                return Err(Error::Forbidden(
                    "the owner cannot be removed; dismiss the group instead".into(),
                ));
            }
            if *u == caller.user {
                continue;
            }
            if !me.role.is_manager() {
                return Err(Error::Forbidden(format!(
                    "only the owner or an admin may remove others from {g}"
                )));
            }
            if me.role == Role::Admin
                && s.groups
                    .member(&g, u)
                    .await?
                    .is_some_and(|m| m.role.is_manager())
            {
                return Err(Error::Forbidden(
                    "an admin cannot remove another admin".into(),
                ));
            }
        }
        let before = self.group_member_ids(caller, &g).await?;
        let removed = s.groups.remove_members(&g, &users).await?;
        let mut pushes = Vec::new();
        if !removed.is_empty() {
            // Everyone who was a member hears of it, the removed included.
            pushes.push(
                self.system_event(
                    caller,
                    &g,
                    "member_removed",
                    json!({ "by": caller.user.as_str(), "users": named(&removed), "count": removed.len() }),
                    &before,
                    &[],
                )
                .await?,
            );
        }
        Ok(Outcome::new(
            pb::GroupRemoveMembersResponse {
                removed: removed.iter().map(|u| u.to_string()).collect(),
            },
            pushes,
        ))
    }

    /// Changes a group's name or avatar (owner or admin).
    pub async fn group_update(
        &self,
        caller: &Caller,
        req: pb::GroupUpdateRequest,
    ) -> Result<Outcome<pb::GroupUpdateResponse>> {
        let g = GroupId::parse(&req.group_id)?;
        self.manager(caller, &g).await?;
        if req.name.as_ref().is_some_and(|n| n.chars().count() > 128) {
            return Err(Error::InvalidArgument(
                "group name is over 128 characters".into(),
            ));
        }
        let s = &self.inner.stores;
        let group = s
            .groups
            .update(&g, req.name.clone(), req.avatar.clone())
            .await?
            .ok_or_else(|| Error::NotFound(format!("group {g}")))?;
        let members = self.group_member_ids(caller, &g).await?;
        let push = self
            .system_event(
                caller,
                &g,
                "updated",
                json!({ "by": caller.user.as_str(), "name": req.name, "avatar": req.avatar }),
                &members,
                &[],
            )
            .await?;
        Ok(Outcome::new(
            pb::GroupUpdateResponse {
                group: Some(group_info(&group, members.len())),
            },
            vec![push],
        ))
    }

    /// Makes a member an admin or a plain member (owner only).
    pub async fn group_set_role(
        &self,
        caller: &Caller,
        req: pb::GroupSetRoleRequest,
    ) -> Result<Outcome<pb::GroupSetRoleResponse>> {
        let g = GroupId::parse(&req.group_id)?;
        let (group, me) = self.membership(caller, &g).await?;
        if me.role != Role::Owner {
            return Err(Error::Forbidden(format!(
                "only the owner may change roles in {g}"
            )));
        }
        let role = match pb::GroupRole::try_from(req.role) {
            Ok(pb::GroupRole::Admin) => Role::Admin,
            Ok(pb::GroupRole::Member) => Role::Member,
            _ => {
                return Err(Error::InvalidArgument(
                    "role must be MEMBER or ADMIN".into(),
                ));
            }
        };
        let user = UserId::parse(&req.user_id)?;
        if user == group.owner {
            return Err(Error::InvalidArgument(
                "the owner's role cannot change".into(),
            ));
        }
        if !self.inner.stores.groups.set_role(&g, &user, role).await? {
            return Err(Error::NotFound(format!("{user} in group {g}")));
        }
        let members = self.group_member_ids(caller, &g).await?;
        let push = self
            .system_event(
                caller,
                &g,
                "role_changed",
                json!({ "by": caller.user.as_str(), "user": user.as_str(), "role": role.as_str() }),
                &members,
                &[],
            )
            .await?;
        Ok(Outcome::new(pb::GroupSetRoleResponse {}, vec![push]))
    }

    /// A group's profile and a page of its members, in join order
    /// (members only).
    pub async fn group_members(
        &self,
        caller: &Caller,
        req: pb::GroupMembersRequest,
    ) -> Result<pb::GroupMembersResponse> {
        let g = GroupId::parse(&req.group_id)?;
        let (group, _) = self.membership(caller, &g).await?;
        let members = self.inner.stores.groups.members(&g).await?;
        let info = group_info(&group, members.len());
        let all: Vec<pb::GroupMember> = members
            .iter()
            .map(|m| pb::GroupMember {
                user_id: m.user.to_string(),
                role: m.role.to_pb() as i32,
                joined_ms: m.joined_ms,
            })
            .collect();
        let (members, next) = self.page_of(all, &req.after)?;
        Ok(pb::GroupMembersResponse {
            group: Some(info),
            members,
            next,
        })
    }

    /// A page of the caller's groups.
    pub async fn group_list(
        &self,
        caller: &Caller,
        req: pb::GroupListRequest,
    ) -> Result<pb::GroupListResponse> {
        let s = &self.inner.stores;
        let mut groups = Vec::new();
        for g in s.groups.groups_of(&caller.user).await? {
            if let Some(group) = s.groups.get(&g).await? {
                let count = s.groups.members(&g).await?.len();
                groups.push(group_info(&group, count));
            }
        }
        let (groups, next) = self.page_of(groups, &req.after)?;
        Ok(pb::GroupListResponse { groups, next })
    }
}
