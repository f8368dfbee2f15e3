//! In-memory [`ConversationStore`]: each conversation's messages and cursors
//! live together behind its shard's lock, so a unit of work is applied
//! under one lock.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use async_trait::async_trait;

use super::{FastMap, FastState, MemoryJournal, Prehashed, Sharded};
use crate::model::*;
use crate::store::{Committed, ConversationStore, Cursor, Direction, Moved, Position, UnitOfWork};
use crate::{Error, Result};

type ClientKey = (UserId, String);

/// One stored message and the running count of unread-countable messages
/// up to and including it.
struct Entry {
    message: Arc<Message>,
    countable_upto: u64,
}

#[derive(Default)]
struct Conv {
    /// Index `seq - 1`.
    log: Vec<Entry>,
    /// Seqs of recalled messages that had counted as unread.
    recalled: BTreeSet<u64>,
    read: FastMap<UserId, u64>,
    delivered: FastMap<(UserId, DeviceId), u64>,
}

impl Conv {
    fn max_seq(&self) -> u64 {
        self.log.len() as u64
    }

    fn message(&self, seq: u64) -> Option<Message> {
        let idx = usize::try_from(seq.checked_sub(1)?).ok()?;
        self.log.get(idx).map(|e| Message::clone(&e.message))
    }

    fn countable_upto(&self, seq: u64) -> u64 {
        match seq.checked_sub(1).and_then(|i| usize::try_from(i).ok()) {
            Some(i) => self.log.get(i).map_or(0, |e| e.countable_upto),
            None => 0,
        }
    }

    /// Unread for a reader whose read cursor is `read` (see the trait).
    fn unread_after(&self, read: u64) -> u64 {
        let max = self.max_seq();
        if read >= max {
            return 0;
        }
        let recalled = self.recalled.range(read + 1..=max).count() as u64;
        (self.countable_upto(max) - self.countable_upto(read)).saturating_sub(recalled)
    }

    fn read_of(&self, user: &UserId) -> u64 {
        self.read.get(user).copied().unwrap_or(0)
    }
}

/// In-memory [`ConversationStore`].
#[derive(Default)]
pub struct MemoryConversations {
    convs: Sharded<ConversationId, Conv>,
    by_client: Sharded<Prehashed<ClientKey>, (ConversationId, u64)>,
    by_id: Sharded<MessageId, (ConversationId, u64)>,
    lists: Sharded<UserId, HashSet<ConversationId, FastState>>,
    journal: Arc<MemoryJournal>,
}

impl MemoryConversations {
    /// The journal this store records its units' events in.
    pub fn journal(&self) -> Arc<MemoryJournal> {
        self.journal.clone()
    }

    fn at(&self, conversation: &ConversationId, seq: u64) -> Option<Message> {
        self.convs
            .shard(conversation)
            .lock()
            .get(conversation)?
            .message(seq)
    }
}

#[async_trait]
impl ConversationStore for MemoryConversations {
    async fn commit(&self, unit: UnitOfWork) -> Result<Committed> {
        unit.validate()?;
        let UnitOfWork {
            conversation,
            append,
            list_for,
            moves,
            journal,
        } = unit;
        // Lock order: the sender's de-duplication slot, then the
        // conversation.
        let key = append.as_ref().map(|m| {
            self.by_client
                .prehash((m.sender.clone(), m.client_msg_id.clone()))
        });
        let mut clients = key.as_ref().map(|k| self.by_client.shard(k).lock());
        if let (Some(k), Some(clients)) = (&key, &clients)
            && let Some((conv, seq)) = clients.get(k)
        {
            let message = self
                .at(conv, *seq)
                .ok_or_else(|| Error::store("memory", "client index points at nothing"))?;
            return Ok(Committed {
                appended: Some(Appended {
                    message,
                    duplicate: true,
                }),
                moves: Vec::new(),
            });
        }
        let (appended, moved) = {
            let mut shard = self.convs.shard(&conversation).lock();
            let conv = shard.entry(conversation.clone()).or_default();
            let mut appended = None;
            if let Some(new) = append {
                if let Some(target) = recall_target(&new.content) {
                    let idx = usize::try_from(target.wrapping_sub(1)).unwrap_or(usize::MAX);
                    let Some(t) = conv.log.get_mut(idx) else {
                        return Err(Error::NotFound(format!(
                            "message {target} in {conversation}"
                        )));
                    };
                    let t = Arc::make_mut(&mut t.message);
                    if !t.recalled && is_user_content(&t.content) {
                        conv.recalled.insert(target);
                    }
                    t.recalled = true;
                    t.content = Default::default();
                }
                let seq = conv.max_seq() + 1;
                let countable_upto =
                    conv.countable_upto(seq - 1) + u64::from(is_user_content(&new.content));
                let message = Message::from_new(new, seq);
                conv.log.push(Entry {
                    message: Arc::new(message.clone()),
                    countable_upto,
                });
                appended = Some(message);
            }
            let max = conv.max_seq();
            let appended_seq = appended.as_ref().map_or(0, |m| m.seq);
            let mut moved = Vec::with_capacity(moves.len());
            for mv in moves {
                let target = mv.to.resolve(appended_seq, max);
                let slot = match mv.cursor {
                    Cursor::Read(user) => conv.read.entry(user).or_insert(0),
                    Cursor::Delivered(user, device) => {
                        conv.delivered.entry((user, device)).or_insert(0)
                    }
                };
                let before = *slot;
                *slot = before.max(target);
                moved.push(Moved {
                    before,
                    after: *slot,
                });
            }
            // Recorded under the conversation's lock: ids follow its order.
            let journal_seq =
                crate::store::unit::journal_seq(appended.as_ref().map(|m| m.seq), &moved);
            if let (Some(payload), Some(seq)) = (journal, journal_seq) {
                self.journal.append(conversation.as_str(), seq, payload);
            }
            (appended, moved)
        };
        if let Some(m) = &appended {
            if let (Some(k), Some(clients)) = (key, clients.as_mut()) {
                clients.insert(k, (m.conversation.clone(), m.seq));
            }
            drop(clients);
            self.by_id
                .shard(&m.id)
                .lock()
                .insert(m.id, (m.conversation.clone(), m.seq));
        }
        for user in list_for {
            let mut shard = self.lists.shard(&user).lock();
            let list = shard.entry(user).or_default();
            if !list.contains(&conversation) {
                list.insert(conversation.clone());
            }
        }
        Ok(Committed {
            appended: appended.map(|message| Appended {
                message,
                duplicate: false,
            }),
            moves: moved,
        })
    }

    async fn get(&self, conversation: &ConversationId, seq: u64) -> Result<Option<Message>> {
        Ok(self.at(conversation, seq))
    }

    async fn get_by_id(&self, id: &MessageId) -> Result<Option<Message>> {
        let found = self.by_id.shard(id).lock().get(id).cloned();
        Ok(found.and_then(|(c, s)| self.at(&c, s)))
    }

    async fn find_by_client_id(
        &self,
        sender: &UserId,
        client_msg_id: &str,
    ) -> Result<Option<Message>> {
        let key = self
            .by_client
            .prehash((sender.clone(), client_msg_id.to_owned()));
        let found = self.by_client.shard(&key).lock().get(&key).cloned();
        Ok(found.and_then(|(c, s)| self.at(&c, s)))
    }

    async fn range(
        &self,
        conversation: &ConversationId,
        from_seq: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let convs = self.convs.shard(conversation).lock();
        let Some(conv) = convs.get(conversation) else {
            return Ok(Vec::new());
        };
        let log = &conv.log;
        let len = log.len();
        let copy = |e: &Entry| Message::clone(&e.message);
        Ok(match direction {
            Direction::Forward => {
                let start = usize::try_from(from_seq).unwrap_or(usize::MAX).min(len);
                log[start..].iter().take(limit).map(copy).collect()
            }
            Direction::Backward => {
                let end = if from_seq == 0 {
                    len
                } else {
                    usize::try_from(from_seq - 1).unwrap_or(usize::MAX).min(len)
                };
                log[..end].iter().rev().take(limit).map(copy).collect()
            }
        })
    }

    async fn max_seq(&self, conversation: &ConversationId) -> Result<u64> {
        let convs = self.convs.shard(conversation).lock();
        Ok(convs.get(conversation).map_or(0, Conv::max_seq))
    }

    async fn unread(&self, conversation: &ConversationId, reader: &UserId) -> Result<u64> {
        let convs = self.convs.shard(conversation).lock();
        Ok(convs
            .get(conversation)
            .map_or(0, |c| c.unread_after(c.read_of(reader))))
    }

    async fn conversations(&self, user: &UserId) -> Result<Vec<ConversationId>> {
        Ok(self
            .lists
            .shard(user)
            .lock()
            .get(user)
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default())
    }

    async fn delivered(
        &self,
        user: &UserId,
        device: &DeviceId,
        conversation: &ConversationId,
    ) -> Result<Option<u64>> {
        let convs = self.convs.shard(conversation).lock();
        Ok(convs
            .get(conversation)
            .and_then(|c| c.delivered.get(&(user.clone(), device.clone())).copied()))
    }

    async fn read(&self, user: &UserId, conversation: &ConversationId) -> Result<u64> {
        let convs = self.convs.shard(conversation).lock();
        Ok(convs.get(conversation).map_or(0, |c| c.read_of(user)))
    }

    async fn read_many(&self, conversation: &ConversationId, users: &[UserId]) -> Result<Vec<u64>> {
        let convs = self.convs.shard(conversation).lock();
        let conv = convs.get(conversation);
        Ok(users
            .iter()
            .map(|u| conv.map_or(0, |c| c.read_of(u)))
            .collect())
    }

    async fn positions(
        &self,
        user: &UserId,
        device: &DeviceId,
        conversations: &[ConversationId],
    ) -> Result<Vec<Position>> {
        let key = (user.clone(), device.clone());
        Ok(conversations
            .iter()
            .map(|id| {
                let convs = self.convs.shard(id).lock();
                let mut p = Position {
                    conversation: id.clone(),
                    max_seq: 0,
                    delivered: None,
                    read: 0,
                    unread: 0,
                };
                if let Some(c) = convs.get(id) {
                    p.max_seq = c.max_seq();
                    p.delivered = c.delivered.get(&key).copied();
                    p.read = c.read_of(user);
                    p.unread = c.unread_after(p.read);
                }
                p
            })
            .collect())
    }
}
