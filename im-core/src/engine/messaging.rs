//! Sending, receipts, recall, typing, sync, history and the conversation list.

use std::collections::{BTreeSet, HashMap};

use imkit_proto::{Packet, PacketId, pb};

use super::{Caller, Engine, Outcome, Push};
use crate::model::*;
use crate::store::Direction;
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

    /// The conversation a send or typing signal goes to, authorized.
    async fn destination(
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
    /// store has durably written it.
    pub async fn send(
        &self,
        caller: &Caller,
        req: pb::SendRequest,
    ) -> Result<Outcome<pb::SendResponse>> {
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
        let content = req.content.unwrap_or_default();
        self.check_content(&content)?;
        let (to_user, to_group) = match &req.to {
            Some(To::UserId(u)) => (Some(u.as_str()), None),
            Some(To::GroupId(g)) => (None, Some(g.as_str())),
            None => (None, None),
        };
        let (conversation, members) = self.destination(caller, to_user, to_group).await?;
        let s = &self.inner.stores;
        if members.len() == 2 && conversation.as_str().starts_with("d:") {
            for u in &members {
                s.read_state.add_conversation(u, &conversation).await?;
            }
        }
        let appended = s
            .history
            .append(NewMessage {
                id: MessageId::new(),
                conversation: conversation.clone(),
                sender: caller.user.clone(),
                sender_device: caller.device.clone(),
                client_msg_id: req.client_msg_id,
                timestamp_ms: self.now(),
                content,
            })
            .await?;
        let m = &appended.message;
        if m.conversation != conversation {
            return Err(Error::Conflict(format!(
                "client_msg_id {:?} was already used in {}",
                m.client_msg_id, m.conversation
            )));
        }
        // Sending reads everything before it, and your own message is
        // delivered on the device that sent it.
        let read_before = s.read_state.read(&caller.user, &conversation).await?;
        // Both cursor writes at once: on a group-committing store they share
        // one commit instead of waiting for one each.
        let (read_after, _) = tokio::try_join!(
            s.read_state
                .advance_read(&caller.user, &conversation, m.seq),
            s.read_state
                .advance_delivered(&caller.user, &caller.device, &conversation, m.seq),
        )?;
        // A duplicate is fanned out again: if the first attempt died between
        // the write and the fan-out, this is what delivers it. Receivers
        // de-duplicate by (conversation, seq).
        let mut pushes = vec![self.fan_out(m, &members, caller).await?];
        // The others learn that the sender read what came before this message.
        let is_group = !conversation.as_str().starts_with("d:");
        let read_up_to = read_after.min(m.seq.saturating_sub(1));
        pushes.extend(
            self.read_moved(
                caller,
                &conversation,
                is_group,
                &members,
                read_before,
                read_up_to,
            )
            .await?,
        );
        let reply = pb::SendResponse {
            message_id: m.id.to_string(),
            conversation_id: m.conversation.to_string(),
            seq: m.seq,
            timestamp_ms: m.timestamp_ms,
            client_msg_id: m.client_msg_id.clone(),
            duplicate: appended.duplicate,
        };
        Ok(Outcome::new(reply, pushes))
    }

    /// Sends a message from the reserved system user ([`UserId::system`]) to
    /// a user or any group, for server-side notices. It is stored, numbered
    /// and delivered like any other message; block lists do not apply.
    pub async fn send_as_system(&self, req: pb::SendRequest) -> Result<Outcome<pb::SendResponse>> {
        let caller = Caller::new(UserId::system(), DeviceId::from("server"));
        self.send(&caller, req).await
    }

    /// Moves a delivered or read cursor forward and tells whoever should know.
    pub async fn receipt(
        &self,
        caller: &Caller,
        req: pb::ReceiptRequest,
    ) -> Result<Outcome<pb::ReceiptResponse>> {
        let kind = pb::ReceiptKind::try_from(req.kind)
            .ok()
            .filter(|k| *k != pb::ReceiptKind::Unspecified)
            .ok_or_else(|| {
                Error::InvalidArgument("receipt kind must be DELIVERED or READ".into())
            })?;
        let (conv, ckind, members) = self.members_of(caller, &req.conversation_id).await?;
        let s = &self.inner.stores;
        // Nobody can acknowledge messages that do not exist yet.
        let seq = req.seq.min(s.history.max_seq(&conv).await?);
        let old_delivered = s
            .read_state
            .delivered(&caller.user, &caller.device, &conv)
            .await?;
        // The cursor and the inbox are written together (one commit on a
        // group-committing store). The inbox is acknowledged up to where the
        // cursor ends, which the cursor's only-forward rule makes
        // `max(old, seq)`.
        let (delivered, _) = tokio::try_join!(
            s.read_state
                .advance_delivered(&caller.user, &caller.device, &conv, seq),
            s.inbox
                .ack(&caller.user, &caller.device, &conv, seq.max(old_delivered)),
        )?;
        let is_group = matches!(ckind, ConversationKind::Group(_));
        let mut pushes = Vec::new();
        let receipt = |kind: pb::ReceiptKind, seq: u64, device: &DeviceId| {
            Packet::ReceiptPush(pb::ReceiptPush {
                conversation_id: conv.to_string(),
                user_id: caller.user.to_string(),
                device_id: device.to_string(),
                kind: kind as i32,
                seq,
            })
        };
        let others: Vec<UserId> = members
            .iter()
            .filter(|u| **u != caller.user)
            .cloned()
            .collect();
        let cursor = match kind {
            pb::ReceiptKind::Delivered => {
                if delivered > old_delivered && !is_group {
                    let targets = self.online_targets(&others, None).await?;
                    pushes.push(push_of(receipt(kind, delivered, &caller.device), targets));
                }
                delivered
            }
            _ => {
                let old = s.read_state.read(&caller.user, &conv).await?;
                let read = s.read_state.advance_read(&caller.user, &conv, seq).await?;
                pushes.extend(
                    self.read_moved(caller, &conv, is_group, &members, old, read)
                        .await?,
                );
                read
            }
        };
        Ok(Outcome::new(
            pb::ReceiptResponse {
                conversation_id: conv.to_string(),
                kind: kind as i32,
                seq: cursor,
            },
            pushes,
        ))
    }

    /// The push for a read cursor that moved from `old` to `new`: the
    /// reader's other devices clear their badge, and the senders learn their
    /// messages were read (in 1:1, the peer; in groups, the senders of the
    /// messages the move covers).
    async fn read_moved(
        &self,
        caller: &Caller,
        conv: &ConversationId,
        is_group: bool,
        members: &[UserId],
        old: u64,
        new: u64,
    ) -> Result<Option<Push>> {
        if new <= old {
            return Ok(None);
        }
        let mut users: Vec<UserId> = if is_group {
            let span = usize::try_from(new - old).unwrap_or(usize::MAX).min(500);
            let covered = self
                .inner
                .stores
                .history
                .range(conv, old, Direction::Forward, span)
                .await?;
            covered
                .into_iter()
                .map(|m| m.sender)
                .filter(|u| *u != caller.user)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        } else {
            members
                .iter()
                .filter(|u| **u != caller.user)
                .cloned()
                .collect()
        };
        users.push(caller.user.clone());
        let targets = self.online_targets(&users, Some(caller)).await?;
        let packet = Packet::ReceiptPush(pb::ReceiptPush {
            conversation_id: conv.to_string(),
            user_id: caller.user.to_string(),
            device_id: String::new(),
            kind: pb::ReceiptKind::Read as i32,
            seq: new,
        });
        Ok(Some(push_of(packet, targets)))
    }

    /// Recalls a message: stores a recall event that refers to it and
    /// delivers the event like any message.
    pub async fn recall(
        &self,
        caller: &Caller,
        req: pb::RecallRequest,
    ) -> Result<Outcome<pb::RecallResponse>> {
        let (conv, kind, members) = self.members_of(caller, &req.conversation_id).await?;
        let id = MessageId::parse(&req.message_id)?;
        let s = &self.inner.stores;
        let target = s
            .history
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
                .history
                .find_by_client_id(&caller.user, &client_msg_id)
                .await?
            {
                Some(event) => Ok(Outcome::reply(pb::RecallResponse {
                    event: Some(event.to_pb()),
                })),
                None => Err(Error::Conflict(format!("message {id} is already recalled"))),
            };
        }
        let appended = s
            .history
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
            .await?;
        let event = appended.message;
        s.read_state
            .advance_delivered(&caller.user, &caller.device, &conv, event.seq)
            .await?;
        let push = self.fan_out(&event, &members, caller).await?;
        Ok(Outcome::new(
            pb::RecallResponse {
                event: Some(event.to_pb()),
            },
            vec![push],
        ))
    }

    /// Relays a typing signal to the other members' connected devices.
    pub async fn typing(&self, caller: &Caller, req: pb::Typing) -> Result<Vec<Push>> {
        use pb::typing::To;
        let (to_user, to_group) = match &req.to {
            Some(To::ToUserId(u)) => (Some(u.as_str()), None),
            Some(To::ToGroupId(g)) => (None, Some(g.as_str())),
            None => (None, None),
        };
        let (conv, members) = self.destination(caller, to_user, to_group).await?;
        let others: Vec<UserId> = members.into_iter().filter(|u| *u != caller.user).collect();
        let targets = self.online_targets(&others, None).await?;
        let packet = Packet::Typing(pb::Typing {
            to: None,
            conversation_id: conv.to_string(),
            user_id: caller.user.to_string(),
            active: req.active,
        });
        Ok(vec![push_of(packet, targets)])
    }

    /// The caller's conversations: 1:1 ones from read state, groups from
    /// the group store.
    pub async fn conversation_ids(&self, user: &UserId) -> Result<Vec<ConversationId>> {
        let s = &self.inner.stores;
        let mut ids = s.read_state.conversations(user).await?;
        ids.extend(
            s.groups
                .groups_of(user)
                .await?
                .iter()
                .map(ConversationId::group),
        );
        Ok(ids)
    }

    /// What the caller's device missed, per conversation.
    pub async fn sync(&self, caller: &Caller, req: pb::SyncRequest) -> Result<pb::SyncResponse> {
        let c = &self.inner.config;
        let limit = clamp_limit(req.limit, c.sync_default_limit, c.sync_max_limit);
        let given: HashMap<String, u64> = req
            .cursors
            .into_iter()
            .map(|c| (c.conversation_id, c.seq))
            .collect();
        let s = &self.inner.stores;
        let mut out = Vec::new();
        for conv in self.conversation_ids(&caller.user).await? {
            let from = match given.get(conv.as_str()) {
                Some(seq) => *seq,
                None => {
                    s.read_state
                        .delivered(&caller.user, &caller.device, &conv)
                        .await?
                }
            };
            let max_seq = s.history.max_seq(&conv).await?;
            if max_seq <= from {
                continue;
            }
            let messages = s
                .history
                .range(&conv, from, Direction::Forward, limit)
                .await?;
            let last = messages.last().map_or(from, |m| m.seq);
            out.push(pb::ConversationMessages {
                conversation_id: conv.to_string(),
                messages: messages.iter().map(Message::to_pb).collect(),
                max_seq,
                has_more: last < max_seq,
            });
        }
        Ok(pb::SyncResponse { conversations: out })
    }

    /// A page of a conversation the caller belongs to.
    pub async fn history(
        &self,
        caller: &Caller,
        req: pb::HistoryRequest,
    ) -> Result<pb::HistoryResponse> {
        let (conv, _, _) = self.members_of(caller, &req.conversation_id).await?;
        let c = &self.inner.config;
        let limit = clamp_limit(req.limit, c.history_default_limit, c.history_max_limit);
        let direction = if req.backward {
            Direction::Backward
        } else {
            Direction::Forward
        };
        let mut messages = self
            .inner
            .stores
            .history
            .range(&conv, req.from_seq, direction, limit + 1)
            .await?;
        let has_more = messages.len() > limit;
        messages.truncate(limit);
        Ok(pb::HistoryResponse {
            conversation_id: conv.to_string(),
            messages: messages.iter().map(Message::to_pb).collect(),
            has_more,
        })
    }

    /// The caller's conversations, newest first, with unread counts computed
    /// from read cursors.
    pub async fn conversations(
        &self,
        caller: &Caller,
        req: pb::ConversationListRequest,
    ) -> Result<pb::ConversationListResponse> {
        let s = &self.inner.stores;
        let mut list = Vec::new();
        for conv in self.conversation_ids(&caller.user).await? {
            let last = s
                .history
                .range(&conv, 0, Direction::Backward, 1)
                .await?
                .pop();
            let max_seq = last.as_ref().map_or(0, |m| m.seq);
            let read_seq = s.read_state.read(&caller.user, &conv).await?;
            let unread = s
                .history
                .count_unread(&conv, read_seq, &caller.user)
                .await?;
            let (peer_id, is_group) = match conv.kind()? {
                ConversationKind::Direct(..) => (
                    conv.peer_of(&caller.user)
                        .map(|u| u.to_string())
                        .unwrap_or_default(),
                    false,
                ),
                ConversationKind::Group(g) => (g.to_string(), true),
            };
            list.push(pb::ConversationSummary {
                conversation_id: conv.to_string(),
                peer_id,
                is_group,
                last_message: last.as_ref().map(Message::to_pb),
                max_seq,
                read_seq: read_seq.min(max_seq),
                unread: u32::try_from(unread).unwrap_or(u32::MAX),
            });
        }
        list.sort_by_key(|c| {
            std::cmp::Reverse(c.last_message.as_ref().map_or(0, |m| m.timestamp_ms))
        });
        let total_unread = list
            .iter()
            .map(|c| c.unread)
            .fold(0u32, u32::saturating_add);
        if req.limit > 0 {
            list.truncate(req.limit as usize);
        }
        Ok(pb::ConversationListResponse {
            conversations: list,
            total_unread,
        })
    }

    /// How many members have read each given message ("read by N of M").
    pub async fn read_counts(
        &self,
        caller: &Caller,
        req: pb::ReadCountRequest,
    ) -> Result<pb::ReadCountResponse> {
        let (conv, _, members) = self.members_of(caller, &req.conversation_id).await?;
        let s = &self.inner.stores;
        let cursors = s.read_state.read_many(&conv, &members).await?;
        let mut entries = Vec::with_capacity(req.seqs.len());
        for seq in req
            .seqs
            .into_iter()
            .take(self.inner.config.history_max_limit)
        {
            let Some(m) = s.history.get(&conv, seq).await? else {
                return Err(Error::NotFound(format!("message {seq} in {conv}")));
            };
            let mut read = 0u32;
            for (user, cursor) in members.iter().zip(&cursors) {
                if *user != m.sender && *cursor >= seq {
                    read += 1;
                }
            }
            let others = members.iter().filter(|u| **u != m.sender).count();
            entries.push(pb::read_count_response::Entry {
                seq,
                read,
                members: u32::try_from(others).unwrap_or(u32::MAX),
            });
        }
        Ok(pb::ReadCountResponse {
            conversation_id: conv.to_string(),
            entries,
        })
    }
}

fn clamp_limit(asked: u32, default: usize, max: usize) -> usize {
    match asked {
        0 => default,
        n => (n as usize).min(max),
    }
}

/// A push with a fresh packet id.
pub(crate) fn push_of(packet: Packet, targets: Vec<super::Target>) -> Push {
    Push {
        packet_id: PacketId::new(),
        packet,
        targets,
        inbox_entry: None,
    }
}
