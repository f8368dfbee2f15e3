//! Friends and block lists.

use imkit_proto::{Packet, pb};

use super::{Caller, Engine, Outcome, Push, push_of};
use crate::model::*;
use crate::{Error, Result};

impl Engine {
    fn other_user(&self, caller: &Caller, id: &str) -> Result<UserId> {
        let other = UserId::parse(id)?;
        if other == caller.user {
            return Err(Error::InvalidArgument("that is yourself".into()));
        }
        Ok(other)
    }

    async fn contact_event(
        &self,
        to: &UserId,
        kind: pb::ContactEventKind,
        from: &UserId,
        message: String,
    ) -> Result<Push> {
        self.journal_put(crate::journal::EventKind::Contact, to.as_str(), || {
            crate::journal::Recorded::Contact {
                user: to,
                from,
                kind,
            }
        })
        .await;
        self.emit(|| crate::hooks::Event::Contact {
            user: to.clone(),
            from: from.clone(),
            kind,
        });
        let targets = self.online_targets(std::slice::from_ref(to), None).await?;
        Ok(push_of(
            Packet::ContactEvent(pb::ContactEvent {
                kind: kind as i32,
                user_id: from.to_string(),
                message,
            }),
            targets,
        ))
    }

    /// The caller's friends, requests and block list.
    pub async fn friend_list(&self, caller: &Caller) -> Result<pb::FriendListResponse> {
        let contacts = &self.inner.stores.contacts;
        let l = contacts.list(&caller.user).await?;
        let group_adds = match contacts.group_adds(&caller.user).await? {
            GroupAdds::Anyone => pb::GroupAddPolicy::Anyone,
            GroupAdds::FriendsOnly => pb::GroupAddPolicy::Friends,
        };
        let strings = |v: Vec<UserId>| v.into_iter().map(|u| u.to_string()).collect();
        Ok(pb::FriendListResponse {
            friends: strings(l.friends),
            incoming: strings(l.incoming),
            outgoing: strings(l.outgoing),
            blocked: strings(l.blocked),
            group_adds: group_adds as i32,
        })
    }

    /// Sets the caller's privacy settings (who may add them to groups).
    pub async fn privacy_set(
        &self,
        caller: &Caller,
        req: pb::PrivacySetRequest,
    ) -> Result<pb::PrivacySetResponse> {
        let policy = match pb::GroupAddPolicy::try_from(req.group_adds) {
            Ok(pb::GroupAddPolicy::Unspecified) => None,
            Ok(pb::GroupAddPolicy::Anyone) => Some(GroupAdds::Anyone),
            Ok(pb::GroupAddPolicy::Friends) => Some(GroupAdds::FriendsOnly),
            Err(_) => {
                return Err(Error::InvalidArgument(format!(
                    "unknown group_adds policy {}",
                    req.group_adds
                )));
            }
        };
        if let Some(policy) = policy {
            self.inner
                .stores
                .contacts
                .set_group_adds(&caller.user, policy)
                .await?;
        }
        Ok(pb::PrivacySetResponse {})
    }

    /// Sends a friend request, or completes one the other user sent.
    pub async fn friend_add(
        &self,
        caller: &Caller,
        req: pb::FriendAddRequest,
    ) -> Result<Outcome<pb::FriendAddResponse>> {
        let other = self.other_user(caller, &req.user_id)?;
        if req.message.len() > 512 {
            return Err(Error::InvalidArgument(
                "request message is over 512 bytes".into(),
            ));
        }
        let s = &self.inner.stores;
        if s.contacts.is_blocked(&other, &caller.user).await? {
            return Err(Error::Blocked {
                sender: caller.user.to_string(),
                recipient: other.to_string(),
            });
        }
        let outcome = s.contacts.request(&caller.user, &other).await?;
        let (accepted, pushes) = match outcome {
            FriendRequestOutcome::Pending => (
                false,
                vec![
                    self.contact_event(
                        &other,
                        pb::ContactEventKind::Request,
                        &caller.user,
                        req.message,
                    )
                    .await?,
                ],
            ),
            FriendRequestOutcome::BecameFriends => (
                true,
                vec![
                    self.contact_event(
                        &other,
                        pb::ContactEventKind::Accepted,
                        &caller.user,
                        String::new(),
                    )
                    .await?,
                ],
            ),
            FriendRequestOutcome::AlreadyFriends => (true, Vec::new()),
        };
        Ok(Outcome::new(pb::FriendAddResponse { accepted }, pushes))
    }

    /// Accepts a pending friend request.
    pub async fn friend_accept(
        &self,
        caller: &Caller,
        req: pb::FriendAcceptRequest,
    ) -> Result<Outcome<pb::FriendAcceptResponse>> {
        let other = self.other_user(caller, &req.user_id)?;
        if !self
            .inner
            .stores
            .contacts
            .accept(&caller.user, &other)
            .await?
        {
            return Err(Error::NotFound(format!("no friend request from {other}")));
        }
        let push = self
            .contact_event(
                &other,
                pb::ContactEventKind::Accepted,
                &caller.user,
                String::new(),
            )
            .await?;
        Ok(Outcome::new(pb::FriendAcceptResponse {}, vec![push]))
    }

    /// Ends a friendship or drops a pending request.
    pub async fn friend_remove(
        &self,
        caller: &Caller,
        req: pb::FriendRemoveRequest,
    ) -> Result<Outcome<pb::FriendRemoveResponse>> {
        let other = self.other_user(caller, &req.user_id)?;
        let mut pushes = Vec::new();
        if self
            .inner
            .stores
            .contacts
            .remove(&caller.user, &other)
            .await?
        {
            pushes.push(
                self.contact_event(
                    &other,
                    pb::ContactEventKind::Removed,
                    &caller.user,
                    String::new(),
                )
                .await?,
            );
        }
        Ok(Outcome::new(pb::FriendRemoveResponse {}, pushes))
    }

    /// Blocks a user: their 1:1 messages and friend requests are refused.
    pub async fn block(
        &self,
        caller: &Caller,
        req: pb::BlockRequest,
    ) -> Result<Outcome<pb::BlockResponse>> {
        let other = self.other_user(caller, &req.user_id)?;
        self.inner
            .stores
            .contacts
            .block(&caller.user, &other)
            .await?;
        Ok(Outcome::reply(pb::BlockResponse {}))
    }

    /// Lifts a block.
    pub async fn unblock(
        &self,
        caller: &Caller,
        req: pb::UnblockRequest,
    ) -> Result<Outcome<pb::UnblockResponse>> {
        let other = self.other_user(caller, &req.user_id)?;
        self.inner
            .stores
            .contacts
            .unblock(&caller.user, &other)
            .await?;
        Ok(Outcome::reply(pb::UnblockResponse {}))
    }
}
