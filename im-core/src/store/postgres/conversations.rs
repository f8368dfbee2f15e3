//! PostgreSQL [`ConversationStore`]: units of work go to the writer
//! ([`super::writer`]); reads to the pool.
//!
//! Unread is as in SQLite: `countable_upto` at the conversation's tail
//! minus `countable_upto` at the read cursor, less the recalled messages in
//! between (a partial index finds those): three index lookups in one
//! partition, whatever the conversation's length.

use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::Object;
use imkit_proto::pb;
use prost::Message as _;
use tokio_postgres::Row;

use super::{PgDb, i64_of, pg_err, u64_of};
use crate::model::*;
use crate::store::{Committed, ConversationStore, Direction, Position, UnitOfWork};
use crate::{Error, Result};

macro_rules! select_messages {
    ($where:literal) => {
        concat!(
            "SELECT conversation, seq, id, sender, sender_device, client_msg_id, timestamp_ms, content, recalled FROM messages WHERE ",
            $where
        )
    };
}

const BY_SEQ: &str = select_messages!("conversation = $1 AND seq = $2");
const BY_ID: &str = select_messages!("id = $1");
const BY_CLIENT: &str = "SELECT m.conversation, m.seq, m.id, m.sender, m.sender_device, m.client_msg_id, m.timestamp_ms, m.content, m.recalled
     FROM client_ids k JOIN messages m ON m.conversation = k.conversation AND m.seq = k.seq
     WHERE k.sender = $1 AND k.client_msg_id = $2";
const FORWARD: &str = select_messages!("conversation = $1 AND seq > $2 ORDER BY seq ASC LIMIT $3");
const BACKWARD: &str =
    select_messages!("conversation = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3");
const TAIL: &str = "SELECT max_seq, countable_upto FROM conversations WHERE id = $1";
const CURSOR: &str =
    "SELECT seq FROM cursors WHERE conversation = $1 AND \"user\" = $2 AND device = $3";
const READ_MANY: &str = "SELECT u.i, c.seq FROM unnest($2::text[]) WITH ORDINALITY AS u(name, i)
     JOIN cursors c ON c.conversation = $1 AND c.\"user\" = u.name AND c.device = ''";
/// Where a device stands in many conversations, in one statement.
const POSITIONS: &str = "SELECT coalesce(t.max_seq, 0), coalesce(t.countable_upto, 0), r.seq, d.seq,
        (SELECT m.countable_upto FROM messages m WHERE m.conversation = c.id AND m.seq = r.seq),
        (SELECT count(*) FROM messages m
            WHERE m.conversation = c.id AND m.seq > coalesce(r.seq, 0) AND m.recalled AND m.countable)
     FROM unnest($1::text[]) WITH ORDINALITY AS c(id, i)
     LEFT JOIN conversations t ON t.id = c.id
     LEFT JOIN cursors r ON r.conversation = c.id AND r.\"user\" = $2 AND r.device = ''
     LEFT JOIN cursors d ON d.conversation = c.id AND d.\"user\" = $2 AND d.device = $3
     ORDER BY c.i";
const COUNTABLE_AT: &str =
    "SELECT countable_upto FROM messages WHERE conversation = $1 AND seq = $2";
const RECALLED_AFTER: &str =
    "SELECT count(*) FROM messages WHERE conversation = $1 AND seq > $2 AND recalled AND countable";

fn row_to_message(r: &Row) -> Result<Message> {
    let content: Vec<u8> = r.try_get(7).map_err(pg_err)?;
    let content = pb::Content::decode(content.as_slice())
        .map_err(|e| pg_err(format!("stored content: {e}")))?;
    Ok(Message {
        conversation: ConversationId::new(r.try_get::<_, String>(0).map_err(pg_err)?),
        seq: u64_of(r.try_get(1).map_err(pg_err)?),
        id: MessageId(r.try_get(2).map_err(pg_err)?),
        sender: UserId::new(r.try_get::<_, String>(3).map_err(pg_err)?),
        sender_device: DeviceId::new(r.try_get::<_, String>(4).map_err(pg_err)?),
        client_msg_id: r.try_get(5).map_err(pg_err)?,
        timestamp_ms: u64_of(r.try_get(6).map_err(pg_err)?),
        content,
        recalled: r.try_get(8).map_err(pg_err)?,
    })
}

/// A conversation's highest seq and running unread count.
#[derive(Debug, Clone, Copy, Default)]
struct Tail {
    max_seq: u64,
    countable_upto: u64,
}

async fn one_message(
    c: &Object,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Option<Message>> {
    let stmt = c.prepare_cached(sql).await.map_err(pg_err)?;
    match c.query_opt(&stmt, params).await.map_err(pg_err)? {
        Some(r) => row_to_message(&r).map(Some),
        None => Ok(None),
    }
}

async fn tail(c: &Object, conv: &ConversationId) -> Result<Tail> {
    let stmt = c.prepare_cached(TAIL).await.map_err(pg_err)?;
    Ok(
        match c
            .query_opt(&stmt, &[&conv.as_str()])
            .await
            .map_err(pg_err)?
        {
            Some(r) => Tail {
                max_seq: u64_of(r.try_get(0).map_err(pg_err)?),
                countable_upto: u64_of(r.try_get(1).map_err(pg_err)?),
            },
            None => Tail::default(),
        },
    )
}

async fn cursor(
    c: &Object,
    conv: &ConversationId,
    user: &UserId,
    device: &str,
) -> Result<Option<u64>> {
    let stmt = c.prepare_cached(CURSOR).await.map_err(pg_err)?;
    let row = c
        .query_opt(&stmt, &[&conv.as_str(), &user.as_str(), &device])
        .await
        .map_err(pg_err)?;
    row.map(|r| r.try_get::<_, i64>(0).map(u64_of).map_err(pg_err))
        .transpose()
}

/// Unread after a read cursor at `read` (see the module doc).
async fn unread_after(c: &Object, conv: &ConversationId, tail: Tail, read: u64) -> Result<u64> {
    if read >= tail.max_seq {
        return Ok(0);
    }
    let at_read = if read == 0 {
        0
    } else {
        let stmt = c.prepare_cached(COUNTABLE_AT).await.map_err(pg_err)?;
        match c
            .query_opt(&stmt, &[&conv.as_str(), &i64_of(read)])
            .await
            .map_err(pg_err)?
        {
            Some(r) => u64_of(r.try_get(0).map_err(pg_err)?),
            None => 0,
        }
    };
    let stmt = c.prepare_cached(RECALLED_AFTER).await.map_err(pg_err)?;
    let recalled: i64 = c
        .query_one(&stmt, &[&conv.as_str(), &i64_of(read)])
        .await
        .map_err(pg_err)?
        .try_get(0)
        .map_err(pg_err)?;
    Ok(tail
        .countable_upto
        .saturating_sub(at_read)
        .saturating_sub(u64_of(recalled)))
}

/// PostgreSQL [`ConversationStore`].
#[derive(Debug, Clone)]
pub struct PostgresConversations {
    db: Arc<PgDb>,
}

impl PostgresConversations {
    /// The conversation store of a database.
    pub fn new(db: Arc<PgDb>) -> Self {
        PostgresConversations { db }
    }
}

#[async_trait]
impl ConversationStore for PostgresConversations {
    async fn commit(&self, unit: UnitOfWork) -> Result<Committed> {
        self.db
            .writer
            .commit_all(vec![unit])
            .await
            .pop()
            .unwrap_or_else(|| Err(pg_err("a unit went unanswered")))
    }

    async fn commit_all(&self, units: Vec<UnitOfWork>) -> Vec<Result<Committed>> {
        self.db.writer.commit_all(units).await
    }

    async fn get(&self, conversation: &ConversationId, seq: u64) -> Result<Option<Message>> {
        let c = self.db.conn().await?;
        one_message(&c, BY_SEQ, &[&conversation.as_str(), &i64_of(seq)]).await
    }

    async fn get_by_id(&self, id: &MessageId) -> Result<Option<Message>> {
        let c = self.db.conn().await?;
        one_message(&c, BY_ID, &[&id.0]).await
    }

    async fn find_by_client_id(
        &self,
        sender: &UserId,
        client_msg_id: &str,
    ) -> Result<Option<Message>> {
        let c = self.db.conn().await?;
        one_message(&c, BY_CLIENT, &[&sender.as_str(), &client_msg_id]).await
    }

    async fn range(
        &self,
        conversation: &ConversationId,
        from_seq: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let (sql, from) = match direction {
            Direction::Forward => (FORWARD, i64_of(from_seq)),
            Direction::Backward if from_seq == 0 => (BACKWARD, i64::MAX),
            Direction::Backward => (BACKWARD, i64_of(from_seq)),
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let c = self.db.conn().await?;
        let stmt = c.prepare_cached(sql).await.map_err(pg_err)?;
        c.query(&stmt, &[&conversation.as_str(), &from, &limit])
            .await
            .map_err(pg_err)?
            .iter()
            .map(row_to_message)
            .collect()
    }

    async fn max_seq(&self, conversation: &ConversationId) -> Result<u64> {
        let c = self.db.conn().await?;
        Ok(tail(&c, conversation).await?.max_seq)
    }

    async fn unread(&self, conversation: &ConversationId, reader: &UserId) -> Result<u64> {
        let c = self.db.conn().await?;
        let t = tail(&c, conversation).await?;
        let read = cursor(&c, conversation, reader, "").await?.unwrap_or(0);
        unread_after(&c, conversation, t, read).await
    }

    async fn conversations(&self, user: &UserId) -> Result<Vec<ConversationId>> {
        let c = self.db.conn().await?;
        let stmt = c
            .prepare_cached("SELECT conversation FROM user_conversations WHERE \"user\" = $1")
            .await
            .map_err(pg_err)?;
        c.query(&stmt, &[&user.as_str()])
            .await
            .map_err(pg_err)?
            .iter()
            .map(|r| {
                r.try_get::<_, String>(0)
                    .map(ConversationId::new)
                    .map_err(pg_err)
            })
            .collect()
    }

    async fn delivered(
        &self,
        user: &UserId,
        device: &DeviceId,
        conversation: &ConversationId,
    ) -> Result<Option<u64>> {
        let c = self.db.conn().await?;
        cursor(&c, conversation, user, device.as_str()).await
    }

    async fn read(&self, user: &UserId, conversation: &ConversationId) -> Result<u64> {
        let c = self.db.conn().await?;
        Ok(cursor(&c, conversation, user, "").await?.unwrap_or(0))
    }

    async fn read_many(&self, conversation: &ConversationId, users: &[UserId]) -> Result<Vec<u64>> {
        let names: Vec<&str> = users.iter().map(UserId::as_str).collect();
        let c = self.db.conn().await?;
        let stmt = c.prepare_cached(READ_MANY).await.map_err(pg_err)?;
        let mut out = vec![0; users.len()];
        for r in c
            .query(&stmt, &[&conversation.as_str(), &names])
            .await
            .map_err(pg_err)?
        {
            let i: i64 = r.try_get(0).map_err(pg_err)?;
            let seq: i64 = r.try_get(1).map_err(pg_err)?;
            let slot = usize::try_from(i - 1)
                .ok()
                .and_then(|i| out.get_mut(i))
                .ok_or_else(|| Error::store(super::BACKEND, "read cursor out of range"))?;
            *slot = u64_of(seq);
        }
        Ok(out)
    }

    async fn positions(
        &self,
        user: &UserId,
        device: &DeviceId,
        conversations: &[ConversationId],
    ) -> Result<Vec<Position>> {
        let ids: Vec<&str> = conversations.iter().map(ConversationId::as_str).collect();
        let c = self.db.conn().await?;
        let stmt = c.prepare_cached(POSITIONS).await.map_err(pg_err)?;
        let rows = c
            .query(&stmt, &[&ids, &user.as_str(), &device.as_str()])
            .await
            .map_err(pg_err)?;
        let mut out = Vec::with_capacity(rows.len());
        for (conv, r) in conversations.iter().zip(rows) {
            let t = Tail {
                max_seq: u64_of(r.try_get(0).map_err(pg_err)?),
                countable_upto: u64_of(r.try_get(1).map_err(pg_err)?),
            };
            let read = u64_of(r.try_get::<_, Option<i64>>(2).map_err(pg_err)?.unwrap_or(0));
            let delivered = r.try_get::<_, Option<i64>>(3).map_err(pg_err)?.map(u64_of);
            let at_read = u64_of(r.try_get::<_, Option<i64>>(4).map_err(pg_err)?.unwrap_or(0));
            let recalled = u64_of(r.try_get(5).map_err(pg_err)?);
            let unread = if read >= t.max_seq {
                0
            } else {
                t.countable_upto
                    .saturating_sub(at_read)
                    .saturating_sub(recalled)
            };
            out.push(Position {
                conversation: conv.clone(),
                max_seq: t.max_seq,
                delivered,
                read,
                unread,
            });
        }
        if out.len() != conversations.len() {
            return Err(Error::store(super::BACKEND, "positions went missing"));
        }
        Ok(out)
    }
}
