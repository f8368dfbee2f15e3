//! Catching up: what a device is owed (at login and by sync), history
//! pages, and the conversation list with unread counts from cursors.

use std::collections::HashMap;

use imkit_proto::pb;

use super::{Caller, Engine, Push, Target, message_push};
use crate::Result;
use crate::model::*;
use crate::store::{Direction, Position};

/// Where a device resumes in a conversation: after its delivered cursor, or,
/// for a device that never acknowledged anything there (a new device, or a
/// conversation that began while it was away), after the user's read
/// cursor: it is owed what the user has not read.
pub(crate) fn resume_point(p: &Position) -> u64 {
    p.delivered.unwrap_or(p.read)
}

impl Engine {
    /// The user's conversations: 1:1 ones from their list, groups from the
    /// group store.
    pub async fn conversation_ids(&self, user: &UserId) -> Result<Vec<ConversationId>> {
        let s = &self.inner.stores;
        let mut ids = s.conversations.conversations(user).await?;
        ids.extend(
            s.groups
                .groups_of(user)
                .await?
                .iter()
                .map(ConversationId::group),
        );
        Ok(ids)
    }

    /// Where a device stands in each of its user's conversations.
    pub async fn positions(&self, user: &UserId, device: &DeviceId) -> Result<Vec<Position>> {
        let ids = self.conversation_ids(user).await?;
        self.inner
            .stores
            .conversations
            .positions(user, device, &ids)
            .await
    }

    /// The pushes of what a device missed, at login (see [`Engine::login`]).
    pub(super) async fn missed_pushes(
        &self,
        user: &UserId,
        device: &DeviceId,
        target: Target,
    ) -> Result<Vec<Push>> {
        let c = &self.inner.config;
        let mut pushes = Vec::new();
        let behind = self
            .positions(user, device)
            .await?
            .into_iter()
            .filter(|p| p.max_seq > resume_point(p))
            .take(c.login_drain_limit);
        for p in behind {
            let messages = self
                .inner
                .stores
                .conversations
                .range(
                    &p.conversation,
                    resume_point(&p),
                    Direction::Forward,
                    c.sync_default_limit,
                )
                .await?;
            for m in messages {
                pushes.push(message_push(&m, vec![target.clone()]));
            }
        }
        Ok(pushes)
    }

    /// What the caller's device missed, per conversation. Conversations the
    /// request names resume from the cursor it gives; the others from the
    /// device's resume point (its delivered cursor, or the user's read
    /// cursor where it has none).
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
        for p in self.positions(&caller.user, &caller.device).await? {
            let from = given
                .get(p.conversation.as_str())
                .copied()
                .unwrap_or_else(|| resume_point(&p));
            if p.max_seq <= from {
                continue;
            }
            let messages = s
                .conversations
                .range(&p.conversation, from, Direction::Forward, limit)
                .await?;
            let last = messages.last().map_or(from, |m| m.seq);
            out.push(pb::ConversationMessages {
                conversation_id: p.conversation.to_string(),
                messages: messages.iter().map(Message::to_pb).collect(),
                max_seq: p.max_seq,
                has_more: last < p.max_seq,
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
            .conversations
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
    /// from read cursors (in O(log n) per conversation, whatever its length).
    pub async fn conversations(
        &self,
        caller: &Caller,
        req: pb::ConversationListRequest,
    ) -> Result<pb::ConversationListResponse> {
        let s = &self.inner.stores;
        let mut list = Vec::new();
        for p in self.positions(&caller.user, &caller.device).await? {
            let conv = &p.conversation;
            let last = s
                .conversations
                .range(conv, 0, Direction::Backward, 1)
                .await?
                .pop();
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
                max_seq: p.max_seq,
                read_seq: p.read.min(p.max_seq),
                unread: u32::try_from(p.unread).unwrap_or(u32::MAX),
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
}

pub(super) fn clamp_limit(asked: u32, default: usize, max: usize) -> usize {
    match asked {
        0 => default,
        n => (n as usize).min(max),
    }
}
