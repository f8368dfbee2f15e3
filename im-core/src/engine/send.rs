//! Sending and recall: who may write where, what content is accepted, and
//! the unit of work each send commits.

use imkit_proto::pb;

use super::{Caller, Engine, Outcome};
use crate::journal::{EventKind, Recorded};
use crate::model::*;
use crate::store::{Committed, MoveTo, UnitOfWork};

/// A send checked and turned into its unit of work, not yet committed.
#[derive(Debug)]
pub(super) struct PreparedSend {
    conversation: ConversationId,
    members: Vec<UserId>,
}
use crate::{Error, Result};

/// Prefix of the client message id the engine gives recall events, so a
/// repeated recall is stored once.
pub(crate) const RECALL_ID_PREFIX: &str = "recall:";
/// Prefix of the client message id of system events.
pub(crate) const SYSTEM_ID_PREFIX: &str = "sys:";

impl Engine {
    /// Resolves a conversation the caller names and checks that they are in
    /// it. Returns the id and the users who belong to it.
    pub(crate) async fn members_of(
        &self,
        caller: &Caller,
        conversation: &str,
    ) -> Result<(ConversationId, ConversationKind, Vec<UserId>)> {
        let (id, kind) = ConversationId::parse_kind(conversation)?;
        let users = match &kind {
            ConversationKind::Direct(a, b) => {
                if &caller.user != a && &caller.user != b {
                    return Err(Error::Forbidden(format!(
                        "{} is not part of {id}",
                        caller.user
                    )));
                }
                vec![a.clone(), b.clone()]
            }
            ConversationKind::Group(g) => self.group_member_ids(caller, g).await?,
        };
        Ok((id, kind, users))
    }

    /// The members of a group the caller belongs to.
    pub(crate) async fn group_member_ids(
        &self,
        caller: &Caller,
        g: &GroupId,
    ) -> Result<Vec<UserId>> {
        let members = self.inner.stores.groups.members(g).await?;
        if members.is_empty() {
            return Err(Error::NotFound(format!("group {g}")));
        }
        if !members.iter().any(|m| m.user == caller.user) {
            return Err(Error::NotMember {
                user: caller.user.to_string(),
                group: g.to_string(),
            });
        }
        Ok(members.into_iter().map(|m| m.user).collect())
    }

    /// The conversation a send, typing or signal goes to, authorized.
    pub(super) async fn destination(
        &self,
        caller: &Caller,
        to_user: Option<&str>,
        to_group: Option<&str>,
    ) -> Result<(ConversationId, Vec<UserId>)> {
        match (to_user, to_group) {
            (Some(peer), None) => {
                let peer = UserId::parse(peer)?;
                if peer.is_system() {
                    return Err(Error::Forbidden(
                        "the system user does not take messages".into(),
                    ));
                }
                if caller.user.is_system() {
                    // Server-side notices ignore block lists.
                    return Ok((
                        ConversationId::direct(&caller.user, &peer),
                        vec![peer, caller.user.clone()],
                    ));
                }
                if peer == caller.user {
                    return Err(Error::InvalidArgument(
                        "cannot send to yourself; use another device's sync".into(),
                    ));
                }
                if self
                    .inner
                    .stores
                    .contacts
                    .is_blocked(&peer, &caller.user)
                    .await?
                {
                    return Err(Error::Blocked {
                        sender: caller.user.to_string(),
                        recipient: peer.to_string(),
                    });
                }
                Ok((
                    ConversationId::direct(&caller.user, &peer),
                    vec![peer, caller.user.clone()],
                ))
            }
            (None, Some(g)) => {
                let g = GroupId::parse(g)?;
                let members = if caller.user.is_system() {
                    // The system speaks in any group without joining it.
                    let members = self.inner.stores.groups.members(&g).await?;
                    if members.is_empty() {
                        return Err(Error::NotFound(format!("group {g}")));
                    }
                    members.into_iter().map(|m| m.user).collect()
                } else {
                    self.group_member_ids(caller, &g).await?
                };
                Ok((ConversationId::group(&g), members))
            }
            _ => Err(Error::InvalidArgument(
                "exactly one of user_id or group_id must be set".into(),
            )),
        }
    }

    fn check_content(&self, content: &pb::Content) -> Result<()> {
        use pb::content::Body;
        let c = &self.inner.config;
        match &content.body {
            Some(Body::Text(t)) => {
                if t.text.is_empty() {
                    return Err(Error::InvalidArgument("text is empty".into()));
                }
                if t.text.len() > c.max_text_bytes {
                    return Err(Error::InvalidArgument(format!(
                        "text is {} bytes, the limit is {}",
                        t.text.len(),
                        c.max_text_bytes
                    )));
                }
            }
            Some(Body::File(f)) => {
                if f.name.is_empty() || f.name.len() > c.max_file_name_bytes {
                    return Err(Error::InvalidArgument(format!(
                        "file name must be 1 to {} bytes",
                        c.max_file_name_bytes
                    )));
                }
                if f.location.is_none() {
                    return Err(Error::InvalidArgument("file needs a url or blob_id".into()));
                }
                if !f.sha256.is_empty() && f.sha256.len() != 32 {
                    return Err(Error::InvalidArgument("sha256 must be 32 bytes".into()));
                }
            }
            Some(Body::Custom(x)) => {
                if x.kind.is_empty() || x.data.len() > c.max_custom_bytes {
                    return Err(Error::InvalidArgument(format!(
                        "custom content needs a kind and at most {} bytes",
                        c.max_custom_bytes
                    )));
                }
            }
            Some(Body::Recall(_) | Body::System(_)) => {
                return Err(Error::InvalidArgument(
                    "recall and system content are written by the server".into(),
                ));
            }
            None => return Err(Error::InvalidArgument("content is empty".into())),
        }
        Ok(())
    }

    /// Sends a 1:1 or group message. The reply (SENT) comes only after the
    /// store has durably committed the message, in one unit of work with
    /// the sender's read and delivered cursors (sending reads everything
    /// before, and the sending device holds its own message) and, for 1:1,
    /// both users' conversation lists. A resend with the same client
    /// message id gets the original acknowledgement (`duplicate = true`)
    /// and pushes nothing to anyone.
    pub async fn send(
        &self,
        caller: &Caller,
        req: pb::SendRequest,
    ) -> Result<Outcome<pb::SendResponse>> {
        let (prepared, unit) = self.prepare_send(caller, req).await?;
        let committed = self.inner.stores.conversations.commit(unit).await?;
        self.finish_send(caller, prepared, committed).await
    }

    /// Checks a send and works out its unit of work (nothing is written).
    pub(super) async fn prepare_send(
        &self,
        caller: &Caller,
        req: pb::SendRequest,
    ) -> Result<(PreparedSend, UnitOfWork)> {
        use pb::send_request::To;
        if req.client_msg_id.is_empty() || req.client_msg_id.len() > MAX_ID_LEN {
            return Err(Error::InvalidArgument(format!(
                "client_msg_id must be 1 to {MAX_ID_LEN} bytes"
            )));
        }
        if req.client_msg_id.starts_with(RECALL_ID_PREFIX)
            || req.client_msg_id.starts_with(SYSTEM_ID_PREFIX)
        {
            return Err(Error::InvalidArgument(format!(
                "client_msg_id may not start with {RECALL_ID_PREFIX:?} or {SYSTEM_ID_PREFIX:?}"
            )));
        }
        let mut content = req.content.unwrap_or_default();
        self.check_content(&content)?;
        let (to_user, to_group) = match &req.to {
            Some(To::UserId(u)) => (Some(u.as_str()), None),
            Some(To::GroupId(g)) => (None, Some(g.as_str())),
            None => (None, None),
        };
        let (conversation, members) = self.destination(caller, to_user, to_group).await?;
        if let Some(hooks) = self.hooks() {
            let pending = crate::hooks::PendingSend {
                sender: caller.user.clone(),
                device: caller.device.clone(),
                conversation: conversation.clone(),
                client_msg_id: req.client_msg_id.clone(),
                content: content.clone(),
            };
            if let Some(rewritten) = hooks.before_send(pending).await? {
                self.check_content(&rewritten)?;
                content = rewritten;
            }
        }
        let mut unit = UnitOfWork::new(conversation.clone())
            .append(NewMessage {
                id: MessageId::new(),
                conversation: conversation.clone(),
                sender: caller.user.clone(),
                sender_device: caller.device.clone(),
                client_msg_id: req.client_msg_id,
                timestamp_ms: self.now(),
                content,
            })
            .read(caller.user.clone(), MoveTo::Appended)
            .delivered(caller.user.clone(), caller.device.clone(), MoveTo::Appended)
            .journal(self.journal_payload(EventKind::Message, || Recorded::Appended));
        if conversation.is_direct() {
            unit = unit.list_for(members.iter().cloned());
        }
        Ok((
            PreparedSend {
                conversation,
                members,
            },
            unit,
        ))
    }

    /// The SENT reply and the pushes of a committed send.
    pub(super) async fn finish_send(
        &self,
        caller: &Caller,
        prepared: PreparedSend,
        committed: Committed,
    ) -> Result<Outcome<pb::SendResponse>> {
        let PreparedSend {
            conversation,
            members,
        } = prepared;
        let appended = committed
            .appended
            .ok_or_else(|| Error::store("engine", "a send unit stored no message"))?;
        let m = &appended.message;
        if m.conversation != conversation {
            return Err(Error::Conflict(format!(
                "client_msg_id {:?} was already used in {}",
                m.client_msg_id, m.conversation
            )));
        }
        let reply = pb::SendResponse {
            message_id: m.id.to_string(),
            conversation_id: m.conversation.to_string(),
            seq: m.seq,
            timestamp_ms: m.timestamp_ms,
            client_msg_id: m.client_msg_id.clone(),
            duplicate: appended.duplicate,
        };
        if appended.duplicate {
            // The first attempt delivered it (or the receivers catch up
            // from their cursors): a resend changes nothing for anyone.
            return Ok(Outcome::reply(reply));
        }
        crate::telemetry::message_sent(!conversation.is_direct());
        self.emit(|| crate::hooks::Event::Message(m.clone()));
        let mut pushes = vec![self.fan_out(m, &members, caller).await?];
        // The others learn that the sender read what came before this message.
        if let Some(read) = committed.moves.first() {
            let read_up_to = read.after.min(m.seq.saturating_sub(1));
            pushes.extend(
                self.read_moved(
                    caller,
                    &conversation,
                    !conversation.is_direct(),
                    &members,
                    read.before,
                    read_up_to,
                )
                .await?,
            );
        }
        Ok(Outcome::new(reply, pushes))
    }

    /// Sends a message from the reserved system user ([`UserId::system`]) to
    /// a user or any group, for server-side notices. It is stored, numbered
    /// and delivered like any other message; block lists do not apply.
    pub async fn send_as_system(&self, req: pb::SendRequest) -> Result<Outcome<pb::SendResponse>> {
        let caller = Caller::new(UserId::system(), DeviceId::from("server"));
        self.send(&caller, req).await
    }

    /// Recalls a message: stores a recall event that refers to it (marking
    /// the target recalled in the same unit of work) and delivers the event
    /// like any message, so members who were offline see it too.
    pub async fn recall(
        &self,
        caller: &Caller,
        req: pb::RecallRequest,
    ) -> Result<Outcome<pb::RecallResponse>> {
        let (conv, kind, members) = self.members_of(caller, &req.conversation_id).await?;
        let id = MessageId::parse(&req.message_id)?;
        let s = &self.inner.stores;
        let target = s
            .conversations
            .get_by_id(&id)
            .await?
            .filter(|m| m.conversation == conv)
            .ok_or_else(|| Error::NotFound(format!("message {id} in {conv}")))?;
        if !is_user_content(&target.content) && !target.recalled {
            return Err(Error::InvalidArgument(
                "only user messages can be recalled".into(),
            ));
        }
        let is_sender = target.sender == caller.user;
        let is_manager = match &kind {
            ConversationKind::Group(g) => s
                .groups
                .member(g, &caller.user)
                .await?
                .is_some_and(|m| m.role.is_manager()),
            ConversationKind::Direct(..) => false,
        };
        if !is_manager {
            if !is_sender {
                return Err(Error::Forbidden(
                    "only the sender or a group owner or admin may recall a message".into(),
                ));
            }
            let age_ms = self.now().saturating_sub(target.timestamp_ms);
            let window_ms = self.inner.config.recall_window_ms;
            if age_ms > window_ms {
                return Err(Error::RecallWindowExpired { age_ms, window_ms });
            }
        }
        let client_msg_id = format!("{RECALL_ID_PREFIX}{id}");
        if target.recalled {
            // Recalled before: the same caller's retry gets the same event.
            return match s
                .conversations
                .find_by_client_id(&caller.user, &client_msg_id)
                .await?
            {
                Some(event) => Ok(Outcome::reply(pb::RecallResponse {
                    event: Some(event.to_pb()),
                })),
                None => Err(Error::Conflict(format!("message {id} is already recalled"))),
            };
        }
        let unit = UnitOfWork::new(conv.clone())
            .append(NewMessage {
                id: MessageId::new(),
                conversation: conv.clone(),
                sender: caller.user.clone(),
                sender_device: caller.device.clone(),
                client_msg_id,
                timestamp_ms: self.now(),
                content: pb::Content {
                    body: Some(pb::content::Body::Recall(pb::Recall {
                        target_message_id: id.to_string(),
                        target_seq: target.seq,
                        recalled_by: caller.user.to_string(),
                    })),
                },
            })
            .delivered(caller.user.clone(), caller.device.clone(), MoveTo::Appended)
            .journal(self.journal_payload(EventKind::Recall, || Recorded::Appended));
        let appended = s
            .conversations
            .commit(unit)
            .await?
            .appended
            .ok_or_else(|| Error::store("engine", "a recall unit stored no event"))?;
        let event = appended.message;
        let pushes = if appended.duplicate {
            Vec::new()
        } else {
            self.emit(|| crate::hooks::Event::Recall {
                conversation: conv.clone(),
                message: id,
                by: caller.user.clone(),
            });
            vec![self.fan_out(&event, &members, caller).await?]
        };
        Ok(Outcome::new(
            pb::RecallResponse {
                event: Some(event.to_pb()),
            },
            pushes,
        ))
    }
}
