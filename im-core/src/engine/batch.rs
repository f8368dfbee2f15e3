//! Many requests of one connection at once: the sends and receipts a client
//! pipelined are committed together ([`ConversationStore::commit_all`]), so
//! a SQLite transaction holds many messages of one conversation and writes
//! its pages once, not once per message.
//!
//! [`ConversationStore::commit_all`]: crate::store::ConversationStore::commit_all

use imkit_proto::Packet;

use super::receipts::PreparedReceipt;
use super::send::PreparedSend;
use super::{Caller, Engine, Outcome};
use crate::{Error, Result};

/// A request of a batch, checked and waiting for its unit's commit.
enum Prepared {
    Send(PreparedSend),
    Receipt(PreparedReceipt),
}

impl Engine {
    /// Handles requests of one caller in order, as [`Engine::handle`] would
    /// one by one, with one answer per request. Consecutive sends and
    /// receipts are committed together; each still succeeds or fails on its
    /// own, and sends to one conversation keep their order.
    pub async fn handle_many(
        &self,
        caller: &Caller,
        packets: Vec<Packet>,
    ) -> Vec<Result<Outcome<Packet>>> {
        let mut out = Vec::with_capacity(packets.len());
        let mut run = Vec::new();
        for packet in packets {
            match packet {
                Packet::Send(_) | Packet::Receipt(_) => run.push(packet),
                other => {
                    self.commit_run(caller, std::mem::take(&mut run), &mut out)
                        .await;
                    out.push(self.handle(caller, other).await);
                }
            }
        }
        self.commit_run(caller, run, &mut out).await;
        out
    }

    /// Prepares a run of sends and receipts, commits their units in one
    /// call, and finishes each.
    async fn commit_run(
        &self,
        caller: &Caller,
        mut run: Vec<Packet>,
        out: &mut Vec<Result<Outcome<Packet>>>,
    ) {
        if run.len() <= 1 {
            if let Some(one) = run.pop() {
                out.push(self.handle(caller, one).await);
            }
            return;
        }
        let mut prepared = Vec::with_capacity(run.len());
        let mut units = Vec::with_capacity(run.len());
        for packet in run {
            let p = match packet {
                Packet::Send(r) => self
                    .prepare_send(caller, r)
                    .await
                    .map(|(p, u)| (Prepared::Send(p), u)),
                Packet::Receipt(r) => self
                    .prepare_receipt(caller, r)
                    .await
                    .map(|(p, u)| (Prepared::Receipt(p), u)),
                other => Err(Error::InvalidArgument(format!(
                    "{:?} is not batched",
                    other.kind()
                ))),
            };
            prepared.push(p.map(|(p, unit)| {
                units.push(unit);
                p
            }));
        }
        let mut committed = self
            .inner
            .stores
            .conversations
            .commit_all(units)
            .await
            .into_iter();
        for p in prepared {
            let p = match p {
                Ok(p) => p,
                Err(e) => {
                    out.push(Err(e));
                    continue;
                }
            };
            let c = match committed.next() {
                Some(Ok(c)) => c,
                Some(Err(e)) => {
                    out.push(Err(e));
                    continue;
                }
                None => {
                    out.push(Err(Error::store("engine", "a unit went unanswered")));
                    continue;
                }
            };
            out.push(match p {
                Prepared::Send(p) => self
                    .finish_send(caller, p, c)
                    .await
                    .map(|o| o.map(Packet::SendResponse)),
                Prepared::Receipt(p) => self
                    .finish_receipt(caller, p, c)
                    .await
                    .map(|o| o.map(Packet::ReceiptResponse)),
            });
        }
    }
}
