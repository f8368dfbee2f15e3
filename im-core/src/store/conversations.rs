use async_trait::async_trait;

use super::{Committed, UnitOfWork};
use crate::Result;
use crate::model::{ConversationId, DeviceId, Message, MessageId, UserId};

/// Which way a history page runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Seq ascending, after the starting point.
    Forward,
    /// Seq descending, before the starting point.
    Backward,
}

/// Where one device stands in one conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The conversation.
    pub conversation: ConversationId,
    /// Its highest seq (0 when empty).
    pub max_seq: u64,
    /// The device's delivered cursor; `None` if the device never
    /// acknowledged anything here.
    pub delivered: Option<u64>,
    /// The user's read cursor.
    pub read: u64,
    /// Messages counting as unread for the user (see
    /// [`ConversationStore::unread`]).
    pub unread: u64,
}

/// Conversations: their messages, numbered per conversation, and the
/// cursors and lists around them.
///
/// Everything here is written by [`ConversationStore::commit`] and nothing
/// else, one [`UnitOfWork`] at a time, atomically: that is where the
/// delivery contract lives. Inside one commit the backend de-duplicates a
/// message by `(sender, client_msg_id)`, numbers it with the conversation's
/// next seq, marks a recall's target, moves cursors forward only (clamped to
/// the highest seq) and adds list entries, and it returns only once all of
/// it is durable. Numbering inside the write (rather than from a separate
/// counter) keeps seq gap-free: a counter bumped before a write that then
/// fails, or that races with a duplicate, would leave a hole.
///
/// Unread counts come from cursors, never from counters that could drift.
/// [`ConversationStore::unread`] must cost O(log n) in the conversation's
/// length, not a scan: backends keep, with each message, how many messages
/// up to it count as unread, and subtract.
#[async_trait]
pub trait ConversationStore: Send + Sync + 'static {
    /// Applies a unit of work, all of it or none of it, durably.
    async fn commit(&self, unit: UnitOfWork) -> Result<Committed>;

    /// Applies several units in order, each all or nothing on its own (one
    /// failing does not stop the others), and answers each. Backends
    /// override this to write them together: SQLite in one writer job,
    /// Redis in one round trip. The engine uses it for the requests one
    /// connection sent back to back.
    async fn commit_all(&self, units: Vec<UnitOfWork>) -> Vec<Result<Committed>> {
        let mut out = Vec::with_capacity(units.len());
        for unit in units {
            out.push(self.commit(unit).await);
        }
        out
    }

    /// The message at `seq`.
    async fn get(&self, conversation: &ConversationId, seq: u64) -> Result<Option<Message>>;

    /// The message with this id.
    async fn get_by_id(&self, id: &MessageId) -> Result<Option<Message>>;

    /// The message a sender stored under a client message id.
    async fn find_by_client_id(
        &self,
        sender: &UserId,
        client_msg_id: &str,
    ) -> Result<Option<Message>>;

    /// Up to `limit` messages strictly after (`Forward`) or before
    /// (`Backward`) `from_seq`, in that direction's order. `Backward` from 0
    /// starts at the newest message.
    async fn range(
        &self,
        conversation: &ConversationId,
        from_seq: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<Message>>;

    /// The conversation's highest seq (0 when empty).
    async fn max_seq(&self, conversation: &ConversationId) -> Result<u64>;

    /// Messages after `reader`'s read cursor that count as unread: user
    /// content (text, file, custom), not recalled, written by someone else.
    ///
    /// A user's own messages never count, and backends may rely on the rule
    /// that makes that cheap: a unit that appends a user's message moves
    /// that user's read cursor to it (the engine's sends do; sending reads
    /// everything before), so none of them lies after the read cursor.
    async fn unread(&self, conversation: &ConversationId, reader: &UserId) -> Result<u64>;

    /// The 1:1 conversations in a user's list.
    async fn conversations(&self, user: &UserId) -> Result<Vec<ConversationId>>;

    /// A device's delivered cursor; `None` if it never had one here.
    async fn delivered(
        &self,
        user: &UserId,
        device: &DeviceId,
        conversation: &ConversationId,
    ) -> Result<Option<u64>>;

    /// A user's read cursor (0 if none).
    async fn read(&self, user: &UserId, conversation: &ConversationId) -> Result<u64>;

    /// The read cursors of several users in one conversation, in order.
    async fn read_many(&self, conversation: &ConversationId, users: &[UserId]) -> Result<Vec<u64>> {
        let mut out = Vec::with_capacity(users.len());
        for u in users {
            out.push(self.read(u, conversation).await?);
        }
        Ok(out)
    }

    /// Where a device stands in each of `conversations`, in order (backends
    /// override this to answer in one round trip).
    async fn positions(
        &self,
        user: &UserId,
        device: &DeviceId,
        conversations: &[ConversationId],
    ) -> Result<Vec<Position>> {
        let mut out = Vec::with_capacity(conversations.len());
        for c in conversations {
            out.push(Position {
                conversation: c.clone(),
                max_seq: self.max_seq(c).await?,
                delivered: self.delivered(user, device, c).await?,
                read: self.read(user, c).await?,
                unread: self.unread(c, user).await?,
            });
        }
        Ok(out)
    }
}
