//! Catching up: what a device is owed (at login, by notice, by sync),
//! history pages, and the conversation list with unread counts from
//! cursors. Every reply here is bounded in bytes
//! ([`EngineConfig::max_reply_bytes`](super::EngineConfig::max_reply_bytes))
//! and pages with a continuation when more is left.

use std::collections::HashMap;

use imkit_proto::pb;

use super::{Caller, Engine, Push, Target, message_push};
use crate::model::*;
use crate::store::{Direction, Position};
use crate::{Error, Result};

/// Where a device resumes in a conversation: after its delivered cursor, or,
/// for a device that never acknowledged anything there (a new device, or a
/// conversation that began while it was away), after the user's read
/// cursor: it is owed what the user has not read.
pub(crate) fn resume_point(p: &Position) -> u64 {
    p.delivered.unwrap_or(p.read)
}

/// Messages read from the store for the first chunk of a page, before
/// their sizes are known, and the most read at once after that.
const FIRST_CHUNK: usize = 8;
const MAX_CHUNK: usize = 128;

/// Messages read for a reply.
struct Page {
    messages: Vec<pb::Message>,
    /// More messages are stored past the last one.
    more: bool,
    /// The byte budget stopped the page.
    full: bool,
}

/// Most bytes of a [`pb::SyncNotice`]: a notice is one small frame.
const NOTICE_BYTES: usize = 64 * 1024;

/// What an item adds to an encoded reply: its bytes, a tag and a length.
fn wire_len(encoded_len: usize) -> usize {
    encoded_len + 1 + prost::length_delimiter_len(encoded_len)
}

/// Adds items to a page while they fit in `budget` bytes, `used` counting
/// what the reply holds already. With `force_first`, the first item goes in
/// whatever its size, so a reply is never empty while items remain.
/// Returns whether every item fitted.
fn fill<T: prost::Message>(
    page: &mut Vec<T>,
    used: &mut usize,
    budget: usize,
    force_first: bool,
    items: impl IntoIterator<Item = T>,
) -> bool {
    for item in items {
        let n = wire_len(item.encoded_len());
        let first = force_first && page.is_empty();
        if *used + n > budget && !first {
            return false;
        }
        *used += n;
        page.push(item);
    }
    true
}

fn position_pb(p: &Position) -> pb::ConversationPosition {
    pb::ConversationPosition {
        conversation_id: p.conversation.to_string(),
        max_seq: p.max_seq,
        resume_seq: resume_point(p),
        read_seq: p.read.min(p.max_seq),
        unread: u32::try_from(p.unread).unwrap_or(u32::MAX),
    }
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

    /// How a device that just logged in catches up: the pushes of what it
    /// missed if that is a few messages, or else a notice (see
    /// [`Engine::login`]).
    pub(super) async fn catch_up(
        &self,
        user: &UserId,
        device: &DeviceId,
        target: Target,
    ) -> Result<(Vec<Push>, Option<pb::SyncNotice>)> {
        let c = &self.inner.config;
        let behind: Vec<Position> = self
            .positions(user, device)
            .await?
            .into_iter()
            .filter(|p| p.max_seq > resume_point(p))
            .collect();
        let owed: u64 = behind.iter().map(|p| p.max_seq - resume_point(p)).sum();
        if owed > c.login_push_max {
            return Ok((
                Vec::new(),
                Some(self.notice_of(pb::SyncReason::Login, &behind)),
            ));
        }
        let mut pushes = Vec::new();
        for p in behind {
            let messages = self
                .inner
                .stores
                .conversations
                .range(
                    &p.conversation,
                    resume_point(&p),
                    Direction::Forward,
                    usize::try_from(c.login_push_max).unwrap_or(usize::MAX),
                )
                .await?;
            for m in messages {
                pushes.push(message_push(&m, vec![target.clone()]));
            }
        }
        Ok((pushes, None))
    }

    /// A notice of what waits for a device, for `reason`: the conversations
    /// where it is behind, as many as fit.
    pub async fn sync_notice(
        &self,
        user: &UserId,
        device: &DeviceId,
        reason: pb::SyncReason,
    ) -> Result<pb::SyncNotice> {
        let behind: Vec<Position> = self
            .positions(user, device)
            .await?
            .into_iter()
            .filter(|p| p.max_seq > resume_point(p))
            .collect();
        Ok(self.notice_of(reason, &behind))
    }

    fn notice_of(&self, reason: pb::SyncReason, behind: &[Position]) -> pb::SyncNotice {
        let mut conversations = Vec::new();
        let mut used = 0;
        let all = fill(
            &mut conversations,
            &mut used,
            NOTICE_BYTES,
            false,
            behind
                .iter()
                .take(self.inner.config.notice_max_conversations)
                .map(position_pb),
        );
        pb::SyncNotice {
            reason: reason as i32,
            more: !all || behind.len() > conversations.len(),
            conversations,
        }
    }

    /// What the caller's device missed, per conversation, as much as fits
    /// in one reply. Conversations the request names resume from the
    /// cursor it gives; the others from the device's resume point (its
    /// delivered cursor, or the user's read cursor where it has none).
    pub async fn sync(&self, caller: &Caller, req: pb::SyncRequest) -> Result<pb::SyncResponse> {
        let c = &self.inner.config;
        let limit = clamp_limit(req.limit, c.sync_default_limit, c.sync_max_limit);
        let given: HashMap<String, u64> = req
            .cursors
            .into_iter()
            .map(|c| (c.conversation_id, c.seq))
            .collect();
        let mut out = Vec::new();
        let mut used = 0;
        let mut more = false;
        for p in self.positions(&caller.user, &caller.device).await? {
            let from = given
                .get(p.conversation.as_str())
                .copied()
                .unwrap_or_else(|| resume_point(&p));
            if p.max_seq <= from {
                continue;
            }
            if used >= c.max_reply_bytes {
                more = true;
                break;
            }
            // The conversation's own fields, then its messages.
            used += 16 + p.conversation.as_str().len();
            let page = self
                .read_page(
                    &p.conversation,
                    from,
                    Direction::Forward,
                    limit,
                    (&mut used, c.max_reply_bytes),
                    out.is_empty(),
                )
                .await?;
            let Some(last) = page.messages.last().map(|m| m.seq) else {
                more = true;
                break;
            };
            let whole = !page.full;
            out.push(pb::ConversationMessages {
                conversation_id: p.conversation.to_string(),
                messages: page.messages,
                max_seq: p.max_seq,
                has_more: last < p.max_seq,
            });
            if !whole {
                more = true;
                break;
            }
        }
        crate::telemetry::delivered("paced", out.iter().map(|c| c.messages.len()).sum());
        Ok(pb::SyncResponse {
            conversations: out,
            more,
        })
    }

    /// A page of a conversation the caller belongs to, bounded by the
    /// request's limit and by bytes.
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
        let mut used = 0;
        let page = self
            .read_page(
                &conv,
                req.from_seq,
                direction,
                limit,
                (&mut used, c.max_reply_bytes),
                true,
            )
            .await?;
        Ok(pb::HistoryResponse {
            conversation_id: conv.to_string(),
            messages: page.messages,
            has_more: page.more,
        })
    }

    /// The caller's conversations, newest first, with unread counts computed
    /// from read cursors (in O(log n) per conversation, whatever its
    /// length); a page at a time, bounded by the request's limit and by
    /// bytes.
    pub async fn conversations(
        &self,
        caller: &Caller,
        req: pb::ConversationListRequest,
    ) -> Result<pb::ConversationListResponse> {
        let after = ListKey::parse(&req.after)?;
        let s = &self.inner.stores;
        let mut all = Vec::new();
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
            all.push(pb::ConversationSummary {
                conversation_id: conv.to_string(),
                peer_id,
                is_group,
                last_message: last.as_ref().map(Message::to_pb),
                max_seq: p.max_seq,
                read_seq: p.read.min(p.max_seq),
                unread: u32::try_from(p.unread).unwrap_or(u32::MAX),
            });
        }
        let key = |c: &pb::ConversationSummary| ListKey {
            time: c.last_message.as_ref().map_or(0, |m| m.timestamp_ms),
            conversation: c.conversation_id.clone(),
        };
        all.sort_by_key(key);
        let total_unread = all.iter().map(|c| c.unread).fold(0u32, u32::saturating_add);
        let limit = match req.limit {
            0 => usize::MAX,
            n => n as usize,
        };
        let rest: Vec<pb::ConversationSummary> = match &after {
            Some(a) => all.into_iter().filter(|c| key(c) > *a).collect(),
            None => all,
        };
        let left = rest.len();
        let mut page = Vec::new();
        let mut used = 0;
        fill(
            &mut page,
            &mut used,
            self.inner.config.max_reply_bytes,
            true,
            rest.into_iter().take(limit),
        );
        let next = if page.len() < left {
            page.last().map(|c| key(c).to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(pb::ConversationListResponse {
            conversations: page,
            total_unread,
            next,
        })
    }

    /// Reads up to `limit` messages of a conversation from `from` in
    /// `direction` while they fit the byte budget (`used` of `budget`; with
    /// `force_first` the first message goes in whatever its size). The
    /// store is read in chunks sized from the messages seen so far, so a
    /// page of large messages never loads much more than the page.
    async fn read_page(
        &self,
        conv: &ConversationId,
        from: u64,
        direction: Direction,
        limit: usize,
        (used, budget): (&mut usize, usize),
        force_first: bool,
    ) -> Result<Page> {
        let store = &self.inner.stores.conversations;
        let mut messages = Vec::new();
        let mut at = from;
        let mut chunk = FIRST_CHUNK;
        loop {
            let want = chunk.min(limit - messages.len());
            // One more than wanted says whether more are stored.
            let stored = store.range(conv, at, direction, want + 1).await?;
            let stored_more = stored.len() > want;
            let (count, bytes) = (messages.len(), *used);
            if !fill(
                &mut messages,
                used,
                budget,
                force_first,
                stored.iter().take(want).map(Message::to_pb),
            ) {
                return Ok(Page {
                    messages,
                    more: true,
                    full: true,
                });
            }
            if !stored_more || messages.len() >= limit {
                return Ok(Page {
                    messages,
                    more: stored_more,
                    full: false,
                });
            }
            let Some(last) = messages.last() else {
                return Ok(Page {
                    messages,
                    more: stored_more,
                    full: false,
                });
            };
            at = last.seq;
            let average = (*used - bytes) / (messages.len() - count).max(1);
            chunk = (budget.saturating_sub(*used) / average.max(1)).clamp(1, MAX_CHUNK);
        }
    }

    /// A page of items in a stored order: those after `after` (an index, as
    /// the previous page's `next` gave it), as many as fit. Returns the page
    /// and the next continuation (empty when done).
    pub(super) fn page_of<T: prost::Message>(
        &self,
        items: Vec<T>,
        after: &str,
    ) -> Result<(Vec<T>, String)> {
        let start = if after.is_empty() {
            0
        } else {
            after
                .parse::<usize>()
                .map_err(|_| Error::InvalidArgument(format!("malformed continuation {after:?}")))?
        };
        let total = items.len();
        let mut page = Vec::new();
        let mut used = 0;
        fill(
            &mut page,
            &mut used,
            self.inner.config.max_reply_bytes,
            true,
            items.into_iter().skip(start),
        );
        let reached = start.saturating_add(page.len());
        let next = if reached < total {
            reached.to_string()
        } else {
            String::new()
        };
        Ok((page, next))
    }
}

/// Where a conversation list page ends: newest first by last message time,
/// then by conversation id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ListKey {
    time: u64,
    conversation: String,
}

impl Ord for ListKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other
            .time
            .cmp(&self.time)
            .then_with(|| self.conversation.cmp(&other.conversation))
    }
}

impl PartialOrd for ListKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Display for ListKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.time, self.conversation)
    }
}

impl ListKey {
    /// Parses a continuation (`time:conversation`); empty is none.
    fn parse(s: &str) -> Result<Option<ListKey>> {
        if s.is_empty() {
            return Ok(None);
        }
        let bad = || Error::InvalidArgument(format!("malformed continuation {s:?}"));
        let (time, conversation) = s.split_once(':').ok_or_else(bad)?;
        Ok(Some(ListKey {
            time: time.parse().map_err(|_| bad())?,
            conversation: conversation.to_owned(),
        }))
    }
}

pub(super) fn clamp_limit(asked: u32, default: usize, max: usize) -> usize {
    match asked {
        0 => default,
        n => (n as usize).min(max),
    }
}
