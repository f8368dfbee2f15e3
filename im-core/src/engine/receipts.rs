//! Receipts: delivered and read cursors that only move forward, who is
//! told when they move, and "read by N of M" for groups.

use std::collections::BTreeSet;

use imkit_proto::{Packet, pb};

use super::{Caller, Engine, Outcome, Push, push_of};
use crate::journal::{EventKind, Recorded};
use crate::model::*;
use crate::store::{Committed, Direction, MoveTo, UnitOfWork};

/// A receipt checked and turned into its unit of work, not yet committed.
#[derive(Debug)]
pub(super) struct PreparedReceipt {
    conv: ConversationId,
    kind: pb::ReceiptKind,
    is_group: bool,
    members: Vec<UserId>,
}
use crate::{Error, Result};

/// Most messages a group read receipt looks through to find whom to tell.
const READ_NOTICE_SCAN: usize = 500;

impl Engine {
    /// Moves a delivered or read cursor forward and tells whoever should
    /// know. A READ receipt also moves the device's delivered cursor (what
    /// was read was received). A seq past the conversation's end is taken
    /// as its end; a seq behind the cursor changes nothing and answers with
    /// the cursor as it is.
    pub async fn receipt(
        &self,
        caller: &Caller,
        req: pb::ReceiptRequest,
    ) -> Result<Outcome<pb::ReceiptResponse>> {
        let (prepared, unit) = self.prepare_receipt(caller, req).await?;
        let committed = self.inner.stores.conversations.commit(unit).await?;
        self.finish_receipt(caller, prepared, committed).await
    }

    /// Checks a receipt and works out its unit of work.
    pub(super) async fn prepare_receipt(
        &self,
        caller: &Caller,
        req: pb::ReceiptRequest,
    ) -> Result<(PreparedReceipt, UnitOfWork)> {
        let kind = pb::ReceiptKind::try_from(req.kind)
            .ok()
            .filter(|k| *k != pb::ReceiptKind::Unspecified)
            .ok_or_else(|| {
                Error::InvalidArgument("receipt kind must be DELIVERED or READ".into())
            })?;
        let (conv, ckind, members) = self.members_of(caller, &req.conversation_id).await?;
        let mut unit = UnitOfWork::new(conv.clone()).delivered(
            caller.user.clone(),
            caller.device.clone(),
            MoveTo::Seq(req.seq),
        );
        if kind == pb::ReceiptKind::Read {
            unit = unit.read(caller.user.clone(), MoveTo::Seq(req.seq));
        }
        unit = unit.journal(
            self.journal_payload(EventKind::Receipt, || Recorded::Receipt {
                user: &caller.user,
                kind,
            }),
        );
        Ok((
            PreparedReceipt {
                conv,
                kind,
                is_group: matches!(ckind, ConversationKind::Group(_)),
                members,
            },
            unit,
        ))
    }

    /// The reply and the pushes of a committed receipt.
    pub(super) async fn finish_receipt(
        &self,
        caller: &Caller,
        prepared: PreparedReceipt,
        committed: Committed,
    ) -> Result<Outcome<pb::ReceiptResponse>> {
        let PreparedReceipt {
            conv,
            kind,
            is_group,
            members,
        } = prepared;
        let (Some(delivered), read) = (committed.moves.first(), committed.moves.get(1)) else {
            return Err(Error::store("engine", "a receipt unit moved no cursor"));
        };
        let mut pushes = Vec::new();
        let cursor = match (kind, read) {
            (pb::ReceiptKind::Read, Some(read)) => {
                pushes.extend(
                    self.read_moved(caller, &conv, is_group, &members, read.before, read.after)
                        .await?,
                );
                read.after
            }
            _ => {
                if delivered.advanced() && !is_group {
                    let others: Vec<UserId> = members
                        .iter()
                        .filter(|u| **u != caller.user)
                        .cloned()
                        .collect();
                    let targets = self.online_targets(&others, None).await?;
                    let packet = Packet::ReceiptPush(pb::ReceiptPush {
                        conversation_id: conv.to_string(),
                        user_id: caller.user.to_string(),
                        device_id: caller.device.to_string(),
                        kind: pb::ReceiptKind::Delivered as i32,
                        seq: delivered.after,
                    });
                    pushes.push(push_of(packet, targets));
                }
                delivered.after
            }
        };
        if delivered.advanced() || read.is_some_and(|r| r.advanced()) {
            self.emit(|| crate::hooks::Event::Receipt {
                user: caller.user.clone(),
                conversation: conv.clone(),
                kind,
                seq: cursor,
            });
        }
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
    /// messages the move covers, looking through at most the last 500).
    pub(super) async fn read_moved(
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
            let span = usize::try_from(new - old)
                .unwrap_or(usize::MAX)
                .min(READ_NOTICE_SCAN);
            let from = new.saturating_sub(span as u64);
            let covered = self
                .inner
                .stores
                .conversations
                .range(conv, from, Direction::Forward, span)
                .await?;
            covered
                .into_iter()
                .map(|m| m.sender)
                .filter(|u| *u != caller.user && !u.is_system())
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

    /// How many members have read each given message ("read by N of M").
    pub async fn read_counts(
        &self,
        caller: &Caller,
        req: pb::ReadCountRequest,
    ) -> Result<pb::ReadCountResponse> {
        let (conv, _, members) = self.members_of(caller, &req.conversation_id).await?;
        let s = &self.inner.stores;
        let cursors = s.conversations.read_many(&conv, &members).await?;
        let mut entries = Vec::with_capacity(req.seqs.len());
        for seq in req
            .seqs
            .into_iter()
            .take(self.inner.config.history_max_limit)
        {
            let Some(m) = s.conversations.get(&conv, seq).await? else {
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
