//! SQLite [`ConversationStore`]: a unit of work is one job of the
//! group-committing writer; reads go to the reader threads.
//!
//! Tables: `messages` (keyed by conversation and seq, with the running count
//! `countable_upto`), `cursors` (keyed by conversation, user and device, the
//! empty device standing for the user's read cursor) and
//! `user_conversations`.
//! Unread is `countable_upto` at the highest seq minus `countable_upto` at
//! the read cursor, less the recalled messages in between (found through a
//! partial index): three index lookups, whatever the conversation's length.

use std::sync::Arc;

use async_trait::async_trait;
use imkit_proto::pb;
use prost::Message as _;
use rusqlite::{Connection, OptionalExtension, params};

use super::writer::{CursorKey, Ended, Tail, WriterState};
use super::{CachedExt, Db, db_err, i64_of};
use crate::model::*;
use crate::store::{Committed, ConversationStore, Cursor, Direction, Moved, Position, UnitOfWork};
use crate::{Error, Result};

macro_rules! select_messages {
    ($where:literal) => {
        concat!(
            "SELECT conversation, seq, id, sender, sender_device, client_msg_id, timestamp_ms, content, recalled FROM messages WHERE ",
            $where
        )
    };
}

const BY_CLIENT: &str = select_messages!("sender = ?1 AND client_msg_id = ?2");
const BY_SEQ: &str = select_messages!("conversation = ?1 AND seq = ?2");
const BY_ID: &str = select_messages!("id = ?1");
const FORWARD: &str = select_messages!("conversation = ?1 AND seq > ?2 ORDER BY seq ASC LIMIT ?3");
const BACKWARD: &str =
    select_messages!("conversation = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3");
const TAIL: &str =
    "SELECT seq, countable_upto FROM messages WHERE conversation = ?1 ORDER BY seq DESC LIMIT 1";
const COUNTABLE_AT: &str =
    "SELECT countable_upto FROM messages WHERE conversation = ?1 AND seq = ?2";
const RECALLED_AFTER: &str = "SELECT COUNT(*) FROM messages WHERE conversation = ?1 AND seq > ?2 AND recalled = 1 AND countable = 1";
const READ: &str = "SELECT seq FROM cursors WHERE conversation = ?2 AND user = ?1 AND device = ''";
const DELIVERED: &str =
    "SELECT seq FROM cursors WHERE conversation = ?3 AND user = ?1 AND device = ?2";
const STORE_CURSOR: &str =
    "INSERT INTO cursors (conversation, user, device, seq) VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT (conversation, user, device) DO UPDATE SET seq = MAX(seq, excluded.seq)";

fn row_to_message(r: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    let id: String = r.get(2)?;
    let content: Vec<u8> = r.get(7)?;
    let content = pb::Content::decode(content.as_slice()).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(7, rusqlite::types::Type::Blob, Box::new(e))
    })?;
    Ok(Message {
        id: MessageId(uuid::Uuid::parse_str(&id).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e))
        })?),
        conversation: ConversationId::new(r.get::<_, String>(0)?),
        seq: r.get::<_, i64>(1)? as u64,
        sender: UserId::new(r.get::<_, String>(3)?),
        sender_device: DeviceId::new(r.get::<_, String>(4)?),
        client_msg_id: r.get(5)?,
        timestamp_ms: r.get::<_, i64>(6)? as u64,
        content,
        recalled: r.get::<_, i64>(8)? != 0,
    })
}

fn find_client(c: &Connection, sender: &UserId, cmid: &str) -> Result<Option<Message>> {
    c.row(BY_CLIENT, params![sender.as_str(), cmid], row_to_message)
        .optional()
        .map_err(db_err)
}

fn load_tail(c: &Connection, conv: &ConversationId) -> Result<Tail> {
    c.row(TAIL, params![conv.as_str()], |r| {
        Ok(Tail {
            max_seq: r.get::<_, i64>(0)? as u64,
            countable_upto: r.get::<_, i64>(1)? as u64,
        })
    })
    .optional()
    .map(Option::unwrap_or_default)
    .map_err(db_err)
}

fn load_cursor(c: &Connection, key: &CursorKey) -> Result<Option<u64>> {
    let seq: Option<i64> = match key {
        CursorKey::Read(u, conv) => c.row(READ, params![u.as_str(), conv.as_str()], |r| r.get(0)),
        CursorKey::Delivered(u, d, conv) => c.row(
            DELIVERED,
            params![u.as_str(), d.as_str(), conv.as_str()],
            |r| r.get(0),
        ),
    }
    .optional()
    .map_err(db_err)?;
    Ok(seq.map(|s| s as u64))
}

fn store_cursor(c: &Connection, key: &CursorKey, seq: u64) -> Result<()> {
    let (user, device, conv) = match key {
        CursorKey::Read(u, conv) => (u, "", conv),
        CursorKey::Delivered(u, d, conv) => (u, d.as_str(), conv),
    };
    c.exec(
        STORE_CURSOR,
        params![conv.as_str(), user.as_str(), device, i64_of(seq)],
    )
    .map(drop)
    .map_err(db_err)
}

/// Everything that can refuse a unit, read before anything is written:
/// its shape, and a recall's target. Returns the conversation's tail.
fn check(c: &Connection, st: &WriterState, unit: &UnitOfWork) -> Result<Tail> {
    unit.validate()?;
    let conv = &unit.conversation;
    let tail = match st.tail(conv) {
        Some(t) => t,
        None => load_tail(c, conv)?,
    };
    if let Some(target) = unit.append.as_ref().and_then(|m| recall_target(&m.content))
        && (target == 0 || target > tail.max_seq)
    {
        return Err(Error::NotFound(format!("message {target} in {conv}")));
    }
    Ok(tail)
}

/// Whether an insert failed on the `(sender, client_msg_id)` index.
fn is_client_id_taken(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, Some(msg))
            if f.code == rusqlite::ErrorCode::ConstraintViolation
                && msg.contains("client_msg_id")
    )
}

/// Applies a checked unit inside the writer's transaction. The message's
/// insert comes first: if it meets the sender's client id, the unit is a
/// resend and nothing was written (a failed statement leaves nothing
/// behind); that spares a lookup per fresh message. Cursor moves are kept
/// in the writer's memory and written once per job ([`flush_cursors`]).
/// Any other error here is a failed write, not a refusal.
fn write(
    c: &Connection,
    st: &mut WriterState,
    unit: UnitOfWork,
    mut tail: Tail,
) -> Result<Committed> {
    let UnitOfWork {
        conversation: conv,
        append,
        list_for,
        moves,
        journal,
    } = unit;
    let mut appended = None;
    if let Some(new) = append {
        let countable = is_user_content(&new.content);
        let next = Tail {
            max_seq: tail.max_seq + 1,
            countable_upto: tail.countable_upto + u64::from(countable),
        };
        let inserted = c.exec(
            "INSERT INTO messages (conversation, seq, id, sender, sender_device, client_msg_id, timestamp_ms, content, recalled, countable, countable_upto)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9, ?10)",
            params![
                conv.as_str(),
                i64_of(next.max_seq),
                new.id.to_string(),
                new.sender.as_str(),
                new.sender_device.as_str(),
                new.client_msg_id,
                i64_of(new.timestamp_ms),
                new.content.encode_to_vec(),
                countable,
                i64_of(next.countable_upto),
            ],
        );
        match inserted {
            Ok(_) => {}
            Err(e) if is_client_id_taken(&e) => {
                let original = find_client(c, &new.sender, &new.client_msg_id)?
                    .ok_or_else(|| db_err("client id taken by no message"))?;
                // A resend: nothing was written.
                return Ok(Committed {
                    appended: Some(Appended {
                        message: original,
                        duplicate: true,
                    }),
                    moves: Vec::new(),
                });
            }
            Err(e) => return Err(db_err(e)),
        }
        if let Some(target) = recall_target(&new.content) {
            let empty = pb::Content::default().encode_to_vec();
            c.exec(
                "UPDATE messages SET recalled = 1, content = ?3 WHERE conversation = ?1 AND seq = ?2",
                params![conv.as_str(), i64_of(target), empty],
            )
            .map_err(db_err)?;
        }
        tail = next;
        appended = Some(Message::from_new(new, tail.max_seq));
        st.set_tail(conv.clone(), tail);
    }
    for user in list_for {
        if !st.is_listed(&user, &conv) {
            c.exec(
                "INSERT OR IGNORE INTO user_conversations (user, conversation) VALUES (?1, ?2)",
                params![user.as_str(), conv.as_str()],
            )
            .map_err(db_err)?;
            st.set_listed(user, conv.clone());
        }
    }
    let appended_seq = appended.as_ref().map_or(0, |m| m.seq);
    let mut moved = Vec::with_capacity(moves.len());
    for mv in moves {
        let target = mv.to.resolve(appended_seq, tail.max_seq);
        let key = match mv.cursor {
            Cursor::Read(u) => CursorKey::Read(u, conv.clone()),
            Cursor::Delivered(u, d) => CursorKey::Delivered(u, d, conv.clone()),
        };
        let before = match st.cursor(&key) {
            Some(s) => Some(s),
            None => load_cursor(c, &key)?,
        };
        let was = before.unwrap_or(0);
        let after = was.max(target);
        if after > was {
            st.move_cursor(key, after);
        } else if before.is_some() {
            st.set_cursor(key, after);
        }
        moved.push(Moved { before: was, after });
    }
    let journal_seq = crate::store::unit::journal_seq(appended.as_ref().map(|m| m.seq), &moved);
    if let (Some(payload), Some(seq)) = (journal, journal_seq) {
        super::journal::record(c, conv.as_str(), seq, &payload)?;
    }
    Ok(Committed {
        appended: appended.map(|message| Appended {
            message,
            duplicate: false,
        }),
        moves: moved,
    })
}

/// Writes the cursors the job moved, each once, at its last value.
fn flush_cursors(c: &Connection, st: &mut WriterState) -> Result<()> {
    for (key, seq) in st.take_moved_cursors() {
        store_cursor(c, &key, seq)?;
    }
    Ok(())
}

/// Applies a unit: its checks, then its writes (cursors still to flush).
/// A refusal ends [`Ended::Done`] with the error as the unit's answer; a
/// failed write ends [`Ended::Failed`].
fn apply(c: &Connection, st: &mut WriterState, unit: UnitOfWork) -> (Ended, Result<Committed>) {
    let tail = match check(c, st, &unit) {
        Ok(t) => t,
        Err(e) => return (Ended::Done, Err(e)),
    };
    match write(c, st, unit, tail) {
        Ok(done) => (Ended::Done, Ok(done)),
        Err(e) => (Ended::Failed, Err(e)),
    }
}

/// Runs `units` as one job: each applied in order, then every cursor they
/// moved written once.
fn apply_all(
    c: &Connection,
    st: &mut WriterState,
    units: Vec<UnitOfWork>,
) -> (Ended, Result<Vec<Result<Committed>>>) {
    let mut out = Vec::with_capacity(units.len());
    for unit in units {
        match apply(c, st, unit) {
            (Ended::Done, r) => out.push(r),
            (Ended::Failed, r) => {
                let e = r.err().unwrap_or_else(|| db_err("a write failed"));
                return (Ended::Failed, Err(e));
            }
        }
    }
    if let Err(e) = flush_cursors(c, st) {
        return (Ended::Failed, Err(e));
    }
    (Ended::Done, Ok(out))
}

/// Where `user`'s `device` stands in `conv`, read on one connection.
fn position(
    c: &Connection,
    user: &UserId,
    device: &DeviceId,
    conv: &ConversationId,
) -> Result<Position> {
    let tail = load_tail(c, conv)?;
    let read = load_cursor(c, &CursorKey::Read(user.clone(), conv.clone()))?.unwrap_or(0);
    let delivered = load_cursor(
        c,
        &CursorKey::Delivered(user.clone(), device.clone(), conv.clone()),
    )?;
    Ok(Position {
        conversation: conv.clone(),
        max_seq: tail.max_seq,
        delivered,
        read,
        unread: unread_after(c, conv, tail, read)?,
    })
}

/// Unread after a read cursor at `read` (see the module doc).
fn unread_after(c: &Connection, conv: &ConversationId, tail: Tail, read: u64) -> Result<u64> {
    if read >= tail.max_seq {
        return Ok(0);
    }
    let at_read: i64 = if read == 0 {
        0
    } else {
        c.row(COUNTABLE_AT, params![conv.as_str(), i64_of(read)], |r| {
            r.get(0)
        })
        .optional()
        .map_err(db_err)?
        .unwrap_or(0)
    };
    let recalled: i64 = c
        .row(RECALLED_AFTER, params![conv.as_str(), i64_of(read)], |r| {
            r.get(0)
        })
        .map_err(db_err)?;
    Ok(tail
        .countable_upto
        .saturating_sub(at_read as u64)
        .saturating_sub(recalled as u64))
}

/// SQLite [`ConversationStore`].
#[derive(Debug, Clone)]
pub struct SqliteConversations {
    db: Arc<Db>,
}

impl SqliteConversations {
    /// The conversation store of a database.
    pub fn new(db: Arc<Db>) -> Self {
        SqliteConversations { db }
    }
}

#[async_trait]
impl ConversationStore for SqliteConversations {
    async fn commit(&self, unit: UnitOfWork) -> Result<Committed> {
        let mut out = self
            .db
            .write_checked(move |c, st| apply_all(c, st, vec![unit]))
            .await?;
        out.pop()
            .unwrap_or_else(|| Err(db_err("a unit went unanswered")))
    }

    async fn commit_all(&self, units: Vec<UnitOfWork>) -> Vec<Result<Committed>> {
        let n = units.len();
        // One writer job for all of them, in order; each refused on its own.
        match self
            .db
            .write_checked(move |c, st| apply_all(c, st, units))
            .await
        {
            Ok(out) => out,
            Err(e) => (0..n).map(|_| Err(e.clone())).collect(),
        }
    }

    async fn get(&self, conversation: &ConversationId, seq: u64) -> Result<Option<Message>> {
        let conv = conversation.clone();
        self.db
            .read(move |c| {
                c.row(BY_SEQ, params![conv.as_str(), i64_of(seq)], row_to_message)
                    .optional()
                    .map_err(db_err)
            })
            .await
    }

    async fn get_by_id(&self, id: &MessageId) -> Result<Option<Message>> {
        let id = id.to_string();
        self.db
            .read(move |c| {
                c.row(BY_ID, params![id], row_to_message)
                    .optional()
                    .map_err(db_err)
            })
            .await
    }

    async fn find_by_client_id(
        &self,
        sender: &UserId,
        client_msg_id: &str,
    ) -> Result<Option<Message>> {
        let (sender, cmid) = (sender.clone(), client_msg_id.to_owned());
        self.db.read(move |c| find_client(c, &sender, &cmid)).await
    }

    async fn range(
        &self,
        conversation: &ConversationId,
        from_seq: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let conv = conversation.clone();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db
            .read(move |c| {
                let (sql, from) = match direction {
                    Direction::Forward => (FORWARD, i64_of(from_seq)),
                    Direction::Backward => (
                        BACKWARD,
                        if from_seq == 0 {
                            i64::MAX
                        } else {
                            i64_of(from_seq)
                        },
                    ),
                };
                let mut stmt = c.prepare_cached(sql).map_err(db_err)?;
                let rows = stmt
                    .query_map(params![conv.as_str(), from, limit], row_to_message)
                    .map_err(db_err)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
            })
            .await
    }

    async fn max_seq(&self, conversation: &ConversationId) -> Result<u64> {
        let conv = conversation.clone();
        self.db
            .read(move |c| load_tail(c, &conv).map(|t| t.max_seq))
            .await
    }

    async fn unread(&self, conversation: &ConversationId, reader: &UserId) -> Result<u64> {
        let (conv, reader) = (conversation.clone(), reader.clone());
        self.db
            .read(move |c| {
                let tail = load_tail(c, &conv)?;
                let read = load_cursor(c, &CursorKey::Read(reader, conv.clone()))?.unwrap_or(0);
                unread_after(c, &conv, tail, read)
            })
            .await
    }

    async fn conversations(&self, user: &UserId) -> Result<Vec<ConversationId>> {
        let user = user.clone();
        self.db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached("SELECT conversation FROM user_conversations WHERE user = ?1")
                    .map_err(db_err)?;
                let rows = stmt
                    .query_map(params![user.as_str()], |r| {
                        Ok(ConversationId::new(r.get::<_, String>(0)?))
                    })
                    .map_err(db_err)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
            })
            .await
    }

    async fn delivered(
        &self,
        user: &UserId,
        device: &DeviceId,
        conversation: &ConversationId,
    ) -> Result<Option<u64>> {
        let key = CursorKey::Delivered(user.clone(), device.clone(), conversation.clone());
        self.db.read(move |c| load_cursor(c, &key)).await
    }

    async fn read(&self, user: &UserId, conversation: &ConversationId) -> Result<u64> {
        let key = CursorKey::Read(user.clone(), conversation.clone());
        self.db
            .read(move |c| load_cursor(c, &key).map(Option::unwrap_or_default))
            .await
    }

    async fn read_many(&self, conversation: &ConversationId, users: &[UserId]) -> Result<Vec<u64>> {
        let (conv, users) = (conversation.clone(), users.to_vec());
        self.db
            .read(move |c| {
                let mut stmt = c.prepare_cached(READ).map_err(db_err)?;
                let mut out = Vec::with_capacity(users.len());
                for u in &users {
                    let seq: Option<i64> = stmt
                        .query_row(params![u.as_str(), conv.as_str()], |r| r.get(0))
                        .optional()
                        .map_err(db_err)?;
                    out.push(seq.unwrap_or(0) as u64);
                }
                Ok(out)
            })
            .await
    }

    async fn positions(
        &self,
        user: &UserId,
        device: &DeviceId,
        conversations: &[ConversationId],
    ) -> Result<Vec<Position>> {
        let (user, device, convs) = (user.clone(), device.clone(), conversations.to_vec());
        self.db
            .read(move |c| {
                convs
                    .iter()
                    .map(|conv| position(c, &user, &device, conv))
                    .collect()
            })
            .await
    }
}
