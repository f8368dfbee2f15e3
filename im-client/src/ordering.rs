//! Message order for the application, per conversation (the last seq
//! delivered, gaps, messages held behind them, duplicates dropped): each message reaches it once, in seq
//! order per conversation, whether it came as a live push, in a sync page
//! or in a history page that fills a gap. No I/O here: the actor feeds
//! messages in and sends what this asks for (a sync, a gap fill, delivered
//! receipts).
//!
//! Where a conversation starts. The client keeps no storage, so for a
//! conversation it has not seen this session it does not know which seq the
//! application saw last; the server does (the device's delivered cursor).
//! A sync page says it: its first message for a conversation follows the
//! device's cursor. A live push for an unknown conversation is therefore
//! held, and a sync asked for; once a sync round that began after the push
//! has ended without listing the conversation, the device was caught up
//! there, and the held messages start it. Seq 1 needs no such proof.

use std::collections::{BTreeMap, HashMap};

use imkit_proto::pb;

/// What the actor must do after a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Need {
    /// Nothing.
    Nothing,
    /// A sync: a conversation's starting point is unknown.
    Sync,
    /// A history page of `conversation` after seq `from`: messages are held
    /// behind a gap.
    Fill {
        /// The conversation.
        conversation: String,
        /// The last seq the application has.
        from: u64,
    },
}

#[derive(Debug, Default)]
struct Conv {
    /// The highest seq delivered to the application, contiguously; `None`
    /// until the conversation's starting point is known.
    last: Option<u64>,
    /// The highest seq the server acknowledged as delivered to this device.
    acked: u64,
    /// Messages that arrived ahead of a gap (or of a known start).
    held: BTreeMap<u64, pb::Message>,
    /// A gap-filling history request is out.
    filling: bool,
}

/// The state of every conversation this client has seen.
#[derive(Debug, Default)]
pub(crate) struct Conversations {
    convs: HashMap<String, Conv>,
}

impl Conversations {
    /// A live push.
    pub(crate) fn pushed(&mut self, m: pb::Message, ready: &mut Vec<pb::Message>) -> Need {
        let id = m.conversation_id.clone();
        let conv = self.convs.entry(id.clone()).or_default();
        if conv.last.is_none() && m.seq == 1 {
            // Nothing precedes the first message.
            conv.last = Some(0);
        }
        accept(conv, m, ready);
        self.need(&id)
    }

    /// What a conversation needs after messages arrived.
    fn need(&mut self, id: &str) -> Need {
        let Some(conv) = self.convs.get_mut(id) else {
            return Need::Nothing;
        };
        match conv.last {
            _ if conv.held.is_empty() || conv.filling => Need::Nothing,
            None => Need::Sync,
            Some(from) => {
                conv.filling = true;
                Need::Fill {
                    conversation: id.to_owned(),
                    from,
                }
            }
        }
    }

    /// A conversation's messages from a sync page, oldest first: the first
    /// follows the device's cursor, so it starts an unknown conversation.
    pub(crate) fn synced(
        &mut self,
        id: &str,
        messages: Vec<pb::Message>,
        ready: &mut Vec<pb::Message>,
    ) {
        let conv = self.convs.entry(id.to_owned()).or_default();
        if conv.last.is_none()
            && let Some(first) = messages.iter().map(|m| m.seq).min()
        {
            conv.last = Some(first - 1);
            // Anything held below the start was delivered before.
            conv.held.retain(|seq, _| *seq >= first);
        }
        for m in messages {
            accept(conv, m, ready);
        }
    }

    /// A sync round ended: conversations it did not list were caught up
    /// when it began, so what is held for them starts them.
    pub(crate) fn round_done(&mut self, ready: &mut Vec<pb::Message>) {
        for conv in self.convs.values_mut() {
            if conv.last.is_none()
                && let Some(first) = conv.held.keys().next().copied()
            {
                conv.last = Some(first - 1);
                drain(conv, ready);
            }
        }
    }

    /// A gap-filling history page arrived (or failed: `messages` empty).
    pub(crate) fn filled(
        &mut self,
        id: &str,
        messages: Vec<pb::Message>,
        ready: &mut Vec<pb::Message>,
    ) -> Need {
        let Some(conv) = self.convs.get_mut(id) else {
            return Need::Nothing;
        };
        conv.filling = false;
        for m in messages {
            accept(conv, m, ready);
        }
        self.need(id)
    }

    /// Our own message was stored at `seq`: the application has it.
    pub(crate) fn sent(&mut self, id: &str, seq: u64) {
        let conv = self.convs.entry(id.to_owned()).or_default();
        match conv.last {
            Some(last) if seq == last + 1 => conv.last = Some(seq),
            None if seq == 1 => conv.last = Some(1),
            _ => {}
        }
    }

    /// The application already holds `seq` (from its own storage).
    pub(crate) fn set_cursor(&mut self, id: &str, seq: u64) {
        let conv = self.convs.entry(id.to_owned()).or_default();
        conv.last = Some(conv.last.map_or(seq, |l| l.max(seq)));
        conv.held.retain(|s, _| *s > seq);
    }

    /// Delivered cursors to acknowledge: `(conversation, seq)` where the
    /// application got further than the server has recorded.
    pub(crate) fn unacked(&self) -> Vec<(String, u64)> {
        self.convs
            .iter()
            .filter_map(|(id, c)| match c.last {
                Some(last) if last > c.acked => Some((id.clone(), last)),
                _ => None,
            })
            .collect()
    }

    /// The server recorded delivery up to `seq`.
    pub(crate) fn acked(&mut self, id: &str, seq: u64) {
        if let Some(conv) = self.convs.get_mut(id) {
            conv.acked = conv.acked.max(seq);
        }
    }

    /// Cursors for a sync request: conversations where the application got
    /// further than the server has recorded (elsewhere the server's own
    /// cursor is right).
    pub(crate) fn cursors(&self) -> Vec<pb::Cursor> {
        self.unacked()
            .into_iter()
            .map(|(conversation_id, seq)| pb::Cursor {
                conversation_id,
                seq,
            })
            .collect()
    }

    /// Whether any conversation holds messages behind a gap.
    pub(crate) fn any_held(&self) -> bool {
        self.convs.values().any(|c| !c.held.is_empty())
    }

    /// The connection dropped: requests in flight are gone.
    pub(crate) fn disconnected(&mut self) {
        for conv in self.convs.values_mut() {
            conv.filling = false;
        }
    }

    /// Conversations with messages held behind a gap in a known start:
    /// their fills, to ask again after a reconnect.
    pub(crate) fn fills(&mut self) -> Vec<Need> {
        let ids: Vec<String> = self.convs.keys().cloned().collect();
        ids.iter()
            .map(|id| self.need(id))
            .filter(|n| matches!(n, Need::Fill { .. }))
            .collect()
    }
}

/// Takes a message: delivers it (and what it unblocks) if it is next,
/// holds it if something is missing before it, drops it if delivered.
fn accept(conv: &mut Conv, m: pb::Message, ready: &mut Vec<pb::Message>) {
    match conv.last {
        Some(last) if m.seq <= last => {}
        Some(last) if m.seq == last + 1 => {
            conv.last = Some(m.seq);
            ready.push(m);
            drain(conv, ready);
        }
        _ => {
            conv.held.insert(m.seq, m);
        }
    }
}

/// Delivers held messages that are next in line.
fn drain(conv: &mut Conv, ready: &mut Vec<pb::Message>) {
    let Some(mut last) = conv.last else {
        return;
    };
    while let Some(entry) = conv.held.first_entry() {
        let seq = *entry.key();
        if seq > last + 1 {
            break;
        }
        let m = entry.remove();
        if seq == last + 1 {
            last = seq;
            ready.push(m);
        }
    }
    conv.last = Some(last);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(conv: &str, seq: u64) -> pb::Message {
        pb::Message {
            conversation_id: conv.into(),
            seq,
            ..Default::default()
        }
    }

    fn seqs(ready: &mut Vec<pb::Message>) -> Vec<u64> {
        ready.drain(..).map(|m| m.seq).collect()
    }

    #[test]
    fn a_push_to_an_unknown_conversation_waits_for_a_sync() {
        let mut c = Conversations::default();
        let mut ready = Vec::new();
        assert_eq!(c.pushed(msg("a", 7), &mut ready), Need::Sync);
        assert!(ready.is_empty(), "the start is unknown");
        // The sync lists the conversation from the device's cursor.
        c.synced("a", vec![msg("a", 5), msg("a", 6), msg("a", 7)], &mut ready);
        assert_eq!(seqs(&mut ready), vec![5, 6, 7]);
        assert_eq!(c.pushed(msg("a", 7), &mut ready), Need::Nothing);
        assert!(ready.is_empty(), "duplicates are dropped");
    }

    #[test]
    fn a_round_that_does_not_list_a_conversation_starts_it_at_the_held_push() {
        let mut c = Conversations::default();
        let mut ready = Vec::new();
        assert_eq!(c.pushed(msg("a", 9), &mut ready), Need::Sync);
        assert_eq!(c.pushed(msg("a", 10), &mut ready), Need::Sync);
        c.round_done(&mut ready);
        assert_eq!(seqs(&mut ready), vec![9, 10]);
        assert_eq!(c.pushed(msg("a", 11), &mut ready), Need::Nothing);
        assert_eq!(seqs(&mut ready), vec![11]);
    }

    #[test]
    fn seq_one_starts_a_conversation_and_gaps_are_filled() {
        let mut c = Conversations::default();
        let mut ready = Vec::new();
        assert_eq!(c.pushed(msg("a", 1), &mut ready), Need::Nothing);
        assert_eq!(
            c.pushed(msg("a", 4), &mut ready),
            Need::Fill {
                conversation: "a".into(),
                from: 1
            }
        );
        assert_eq!(seqs(&mut ready), vec![1]);
        // One fill at a time.
        assert_eq!(c.pushed(msg("a", 5), &mut ready), Need::Nothing);
        let need = c.filled("a", vec![msg("a", 2), msg("a", 3)], &mut ready);
        assert_eq!(need, Need::Nothing);
        assert_eq!(seqs(&mut ready), vec![2, 3, 4, 5]);
    }

    #[test]
    fn cursors_name_only_what_the_server_has_not_recorded() {
        let mut c = Conversations::default();
        let mut ready = Vec::new();
        c.set_cursor("a", 3);
        c.pushed(msg("b", 1), &mut ready);
        let mut unacked = c.unacked();
        unacked.sort();
        assert_eq!(unacked, vec![("a".into(), 3), ("b".into(), 1)]);
        c.acked("a", 3);
        assert_eq!(c.cursors().len(), 1);
        assert_eq!(c.cursors()[0].conversation_id, "b");
    }

    #[test]
    fn duplicates_are_dropped_wherever_they_come_from() {
        let mut c = Conversations::default();
        let mut ready = Vec::new();
        c.pushed(msg("a", 1), &mut ready);
        c.pushed(msg("a", 2), &mut ready);
        assert_eq!(seqs(&mut ready), vec![1, 2]);
        // The same messages again: a push resent after a reconnect, a sync
        // page overlapping the pushes, a fill that reaches back.
        assert_eq!(c.pushed(msg("a", 2), &mut ready), Need::Nothing);
        c.synced("a", vec![msg("a", 1), msg("a", 2), msg("a", 3)], &mut ready);
        c.filled("a", vec![msg("a", 2), msg("a", 3)], &mut ready);
        assert_eq!(seqs(&mut ready), vec![3], "only the new one");
        // A duplicate of a held message is held once.
        c.pushed(msg("a", 6), &mut ready);
        c.pushed(msg("a", 6), &mut ready);
        c.filled("a", vec![msg("a", 4), msg("a", 5)], &mut ready);
        assert_eq!(seqs(&mut ready), vec![4, 5, 6]);
        assert!(!c.any_held());
    }

    #[test]
    fn out_of_order_pushes_come_out_in_order() {
        let mut c = Conversations::default();
        let mut ready = Vec::new();
        c.set_cursor("a", 10);
        for seq in [13, 11, 14, 12] {
            c.pushed(msg("a", seq), &mut ready);
        }
        assert_eq!(seqs(&mut ready), vec![11, 12, 13, 14]);
        // Conversations are independent: a gap in one holds nothing back
        // in another.
        c.set_cursor("b", 0);
        assert!(matches!(
            c.pushed(msg("b", 3), &mut ready),
            Need::Fill { .. }
        ));
        c.pushed(msg("a", 15), &mut ready);
        assert_eq!(seqs(&mut ready), vec![15]);
    }

    #[test]
    fn a_reconnect_in_the_middle_of_a_sync_loses_and_repeats_nothing() {
        let mut c = Conversations::default();
        let mut ready = Vec::new();
        // Pushes for a conversation whose start is unknown: a sync round
        // starts, and its first page arrives.
        assert_eq!(c.pushed(msg("a", 8), &mut ready), Need::Sync);
        c.synced("a", vec![msg("a", 5), msg("a", 6)], &mut ready);
        assert_eq!(seqs(&mut ready), vec![5, 6]);
        // 7 is missing before the held 8, and another conversation has a
        // gap too: both fills are out when the connection drops.
        c.set_cursor("b", 1);
        assert!(matches!(
            c.pushed(msg("b", 4), &mut ready),
            Need::Fill { .. }
        ));
        let mut out = c.fills();
        out.sort_by_key(|n| format!("{n:?}"));
        let both = vec![
            Need::Fill {
                conversation: "a".into(),
                from: 6,
            },
            Need::Fill {
                conversation: "b".into(),
                from: 1,
            },
        ];
        assert_eq!(out, both[..1].to_vec(), "b's fill is already out");
        assert_eq!(c.fills(), vec![], "one fill per conversation at a time");
        c.disconnected();
        // After the reconnect both fills are asked for again, from the same
        // points, and the sync starts over with the cursors the server has
        // not recorded: nothing delivered is delivered twice.
        let mut again = c.fills();
        again.sort_by_key(|n| format!("{n:?}"));
        assert_eq!(again, both);
        let cursors = c.cursors();
        assert!(
            cursors
                .iter()
                .any(|k| k.conversation_id == "a" && k.seq == 6),
            "{cursors:?}"
        );
        c.synced("a", vec![msg("a", 7), msg("a", 8), msg("a", 9)], &mut ready);
        assert_eq!(seqs(&mut ready), vec![7, 8, 9]);
        assert_eq!(
            c.filled("a", vec![msg("a", 7), msg("a", 8)], &mut ready),
            Need::Nothing
        );
        assert!(ready.is_empty(), "the fill's messages came with the sync");
        c.filled("b", vec![msg("b", 2), msg("b", 3)], &mut ready);
        assert_eq!(seqs(&mut ready), vec![2, 3, 4]);
        c.round_done(&mut ready);
        assert!(ready.is_empty());
    }

    #[test]
    fn our_own_sends_advance_the_conversation() {
        let mut c = Conversations::default();
        let mut ready = Vec::new();
        c.sent("a", 1);
        c.pushed(msg("a", 2), &mut ready);
        assert_eq!(seqs(&mut ready), vec![2]);
        // Our send at 4 arrives before the push of 3: 4 waits for 3.
        c.sent("a", 4);
        c.pushed(msg("a", 3), &mut ready);
        assert_eq!(seqs(&mut ready), vec![3]);
    }
}
