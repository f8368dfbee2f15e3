//! The unit of work: everything one engine operation writes, applied by a
//! [`ConversationStore`](super::ConversationStore) atomically.
//!
//! A send is not a chain of store calls. The engine works out all of its
//! effects first (the message to append, the conversation-list entries, the
//! cursor moves) and hands them over as one [`UnitOfWork`]. The backend
//! applies all of it or none of it, and it numbers and de-duplicates the
//! message inside that same step. Backends batch further: SQLite commits
//! every unit waiting in its writer's queue in one transaction (one fsync for
//! many messages from many connections), Redis applies a unit in one script
//! (one round trip), memory under the conversation's lock.
//!
//! A unit concerns one conversation. What a member has not received is not
//! written anywhere: it is the distance between the member's delivered
//! cursor and the conversation's highest seq (read diffusion), so a message
//! to a group of 5,000 is one history row and a few cursor writes, whatever
//! the group's size.

use crate::model::{Appended, ConversationId, DeviceId, NewMessage, UserId};
use crate::{Error, Result};

/// Which cursor a [`CursorMove`] moves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Cursor {
    /// A user's read cursor in the conversation (shared by their devices).
    Read(UserId),
    /// One device's delivered cursor in the conversation.
    Delivered(UserId, DeviceId),
}

/// Where a cursor moves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveTo {
    /// A seq the caller names.
    Seq(u64),
    /// The seq the unit's own message was given.
    Appended,
    /// The seq just before the unit's own message: a member who joins with
    /// an event starts reading there, so the event itself is still news.
    BeforeAppended,
}

impl MoveTo {
    /// Whether the target depends on the unit's own message.
    pub fn needs_append(self) -> bool {
        matches!(self, MoveTo::Appended | MoveTo::BeforeAppended)
    }

    /// The target, given the unit's appended seq (0 if none) and the
    /// conversation's highest seq after the append.
    pub fn resolve(self, appended: u64, max_seq: u64) -> u64 {
        match self {
            MoveTo::Seq(s) => s.min(max_seq),
            MoveTo::Appended => appended,
            MoveTo::BeforeAppended => appended.saturating_sub(1),
        }
    }
}

/// One forward move of a cursor. Cursors never move back: the cursor ends
/// at `max(current, target)`, and the target is first clamped to the
/// conversation's highest seq (nobody acknowledges what does not exist).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorMove {
    /// The cursor.
    pub cursor: Cursor,
    /// Its target.
    pub to: MoveTo,
}

/// Everything one operation writes into one conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitOfWork {
    /// The conversation every effect is in.
    pub conversation: ConversationId,
    /// A message to store at the conversation's next seq. If its
    /// `(sender, client_msg_id)` is already stored, the unit is a resend:
    /// nothing at all is written and [`Committed::appended`] returns the
    /// original with `duplicate = true`. A recall event also marks its
    /// target recalled, and fails the whole unit with `NotFound` if the
    /// target does not exist.
    pub append: Option<NewMessage>,
    /// Users whose conversation list gains this conversation (1:1; groups
    /// are listed through their membership).
    pub list_for: Vec<UserId>,
    /// Cursor moves, applied after the append.
    pub moves: Vec<CursorMove>,
    /// A journal record to store in the same transaction
    /// ([`super::journal`]), keyed by the conversation, with
    /// [`Committed::journal_seq`]; nothing is recorded if that is `None`.
    pub journal: Option<Vec<u8>>,
}

impl UnitOfWork {
    /// An empty unit in `conversation`.
    pub fn new(conversation: ConversationId) -> Self {
        UnitOfWork {
            conversation,
            append: None,
            list_for: Vec::new(),
            moves: Vec::new(),
            journal: None,
        }
    }

    /// Records `payload` in the journal if the unit writes anything.
    pub fn journal(mut self, payload: Option<Vec<u8>>) -> Self {
        self.journal = payload;
        self
    }

    /// Appends `message` (see [`UnitOfWork::append`]).
    pub fn append(mut self, message: NewMessage) -> Self {
        self.append = Some(message);
        self
    }

    /// Lists the conversation for `users`.
    pub fn list_for(mut self, users: impl IntoIterator<Item = UserId>) -> Self {
        self.list_for.extend(users);
        self
    }

    /// Moves a user's read cursor.
    pub fn read(mut self, user: UserId, to: MoveTo) -> Self {
        self.moves.push(CursorMove {
            cursor: Cursor::Read(user),
            to,
        });
        self
    }

    /// Checks that the unit is well formed: its message is in its
    /// conversation, and no cursor moves to an appended seq of a unit that
    /// appends nothing. Backends call this before writing anything.
    pub fn validate(&self) -> Result<()> {
        if let Some(m) = &self.append
            && m.conversation != self.conversation
        {
            return Err(Error::InvalidArgument(format!(
                "a unit in {} cannot append to {}",
                self.conversation, m.conversation
            )));
        }
        if self.append.is_none() && self.moves.iter().any(|m| m.to.needs_append()) {
            return Err(Error::InvalidArgument(
                "a cursor moves to the appended seq of a unit that appends nothing".into(),
            ));
        }
        Ok(())
    }

    /// Moves a device's delivered cursor.
    pub fn delivered(mut self, user: UserId, device: DeviceId, to: MoveTo) -> Self {
        self.moves.push(CursorMove {
            cursor: Cursor::Delivered(user, device),
            to,
        });
        self
    }
}

/// A cursor before and after its move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Moved {
    /// Its value before the unit.
    pub before: u64,
    /// Its value after (never lower).
    pub after: u64,
}

impl Moved {
    /// Whether the cursor went forward.
    pub fn advanced(&self) -> bool {
        self.after > self.before
    }
}

/// What a committed unit did.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    /// The stored message (or, for a resend, the original).
    pub appended: Option<Appended>,
    /// One entry per [`UnitOfWork::moves`], in order; empty for a resend,
    /// which writes nothing.
    pub moves: Vec<Moved>,
}

impl Committed {
    /// Whether the unit was a resend of a stored message.
    pub fn is_duplicate(&self) -> bool {
        self.appended.as_ref().is_some_and(|a| a.duplicate)
    }

    /// The seq a journal record of this unit carries, or `None` if the unit
    /// wrote nothing worth recording: the appended message's seq, or for a
    /// unit without a message the last cursor's new position if any cursor
    /// moved forward. A resend records nothing.
    pub fn journal_seq(&self) -> Option<u64> {
        match &self.appended {
            Some(a) if a.duplicate => None,
            a => journal_seq(a.as_ref().map(|a| a.message.seq), &self.moves),
        }
    }
}

/// [`Committed::journal_seq`] of a fresh (not resent) unit, for backends
/// that work it out before they build a [`Committed`]: the seq `appended`,
/// else the last cursor's position if any cursor moved forward.
pub fn journal_seq(appended: Option<u64>, moves: &[Moved]) -> Option<u64> {
    match appended {
        Some(seq) => Some(seq),
        None if moves.iter().any(Moved::advanced) => moves.last().map(|m| m.after),
        None => None,
    }
}
