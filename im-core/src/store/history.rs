use async_trait::async_trait;

use crate::Result;
use crate::model::{Appended, ConversationId, Message, MessageId, NewMessage, UserId};

/// Which way a history page runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Seq ascending, after the starting point.
    Forward,
    /// Seq descending, before the starting point.
    Backward,
}

/// Messages, numbered per conversation.
///
/// [`HistoryStore::append`] is the heart of the delivery contract. In one
/// atomic step it de-duplicates by `(sender, client_msg_id)`, assigns the
/// conversation's next seq, writes the message and, for a recall event, marks
/// the target recalled. It returns only once the write is durable. Numbering
/// inside the write (rather than from a separate counter) is what keeps seq
/// gap-free: a counter bumped before a write that then fails, or that races
/// with a duplicate, would leave a hole.
#[async_trait]
pub trait HistoryStore: Send + Sync + 'static {
    /// Stores a message at the conversation's next seq, or returns the
    /// already stored message with the same `(sender, client_msg_id)`.
    async fn append(&self, message: NewMessage) -> Result<Appended>;

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

    /// Messages after `after_seq` that count as unread for `reader`: written
    /// by someone else, user content, not recalled.
    async fn count_unread(
        &self,
        conversation: &ConversationId,
        after_seq: u64,
        reader: &UserId,
    ) -> Result<u64>;
}
