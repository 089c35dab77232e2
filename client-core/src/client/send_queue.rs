//! Fragments waiting for the main Poisson stream, and the order they go in.
//!
//! Owns [`SendQueue`]: one queue of encoded fragments per message, taken
//! round robin, retransmissions ahead of all, and how many messages take
//! turns at once ([`messages_in_turn`], [`bytes_in_turn`]). It builds no
//! packet and knows no clock: the schedule says when a packet goes, this
//! queue says which.

use super::config::ClientConfig;
use crate::address::Recipient;
use std::collections::VecDeque;

/// Most messages taking turns on the main stream at once (see [`SendQueue`]).
const MAX_MESSAGES_IN_TURN: usize = 64;

/// How a fragment travels.
#[derive(Clone)]
pub(super) enum Via {
    /// A normal packet to the recipient's address, acknowledged.
    Forward(Recipient),
    /// Through a SURB someone gave us; single use, so not retransmitted.
    Surb(Vec<u8>),
}

/// One encoded fragment of a message, queued or in flight.
pub(super) struct QueuedFragment {
    pub(super) message_id: u64,
    pub(super) via: Via,
    pub(super) fragment: Vec<u8>,
    pub(super) retransmissions: u32,
}

impl QueuedFragment {
    pub(super) fn recipient(&self) -> Option<Recipient> {
        match &self.via {
            Via::Forward(r) => Some(*r),
            Via::Surb(_) => None,
        }
    }
}

/// Fragments waiting for the main stream, per message, taken round robin.
///
/// Why: at the default rate (a packet per 20 ms on average, ~1.5 kB each) a
/// 50 MB message is ~32,000 packets, about 11 minutes; a first-in first-out
/// queue held every message sent after it for that long. Each message
/// (every `send`, `send_anonymous` or `reply`) keeps its own queue of
/// fragments, and the stream takes one packet from each message with
/// fragments pending in turn: behind one long message a short one waits for
/// about one packet of it per packet of its own. Applications are not
/// tracked here: each request of an application is its own message, so
/// applications sharing a client (the native client serves several) share
/// the stream through their messages' turns (an application with more
/// messages queued has more turns).
///
/// Only the order changes: which packets are sent, their rate and cover
/// traffic are as before, and fragments are still queued as encoded
/// fragments (their Sphinx packets are built only when their turn comes).
///
/// Retransmissions keep the priority they had before round robin: they go
/// ahead of every message's next fragment (the latest pass's first), so a
/// lost packet does not wait a whole round to be sent again.
///
/// Only the front of the queue takes turns: at most `turns` messages, and
/// no more than `max_bytes` of them together (the first always takes
/// turns); later ones wait, in order, for one of them to be done. With
/// every queued message in turn, a recipient would suffer: it drops a
/// message whose fragments stop coming for its `incomplete_message_timeout`
/// (many long messages in turn would each get a packet too rarely), and it
/// holds all its incomplete messages at once within a budget (4 x
/// `max_message_size`; past it, sets are dropped). Before round robin it
/// held about one at a time from us. [`messages_in_turn`] keeps a round to
/// a small part of that timeout and [`bytes_in_turn`] to half that budget.
#[derive(Default)]
pub(super) struct SendQueue {
    /// Retransmissions, sent first.
    retransmissions: VecDeque<QueuedFragment>,
    /// Messages with fragments pending (never an empty one); those at the
    /// front take turns ([`SendQueue::in_turn`]), the first sends next.
    messages: VecDeque<QueuedMessage>,
    /// Fragments in `messages`.
    fragments: usize,
}

struct QueuedMessage {
    /// The message its fragments belong to (a reply's request for more
    /// SURBs travels in its reply's queue, after its fragments).
    id: u64,
    fragments: VecDeque<QueuedFragment>,
    /// Bytes of all the fragments ever queued here, sent or not: what the
    /// recipient holds of it when it is nearly done.
    bytes: usize,
}

impl SendQueue {
    pub(super) fn len(&self) -> usize {
        self.retransmissions.len() + self.fragments
    }

    /// A new message, at the back.
    pub(super) fn push_message(&mut self, id: u64, fragments: impl IntoIterator<Item = QueuedFragment>) {
        let fragments: VecDeque<QueuedFragment> = fragments.into_iter().collect();
        if !fragments.is_empty() {
            self.fragments += fragments.len();
            let bytes = fragments.iter().map(|q| q.fragment.len()).sum();
            self.messages.push_back(QueuedMessage { id, fragments, bytes });
        }
    }

    /// More fragments of message `id`: after its others if it still has
    /// some queued (its place is kept), else as a new message at the back.
    pub(super) fn append(&mut self, id: u64, fragment: QueuedFragment) {
        self.fragments += 1;
        let bytes = fragment.fragment.len();
        match self.messages.iter_mut().rev().find(|m| m.id == id) {
            Some(m) => {
                m.bytes += bytes;
                m.fragments.push_back(fragment);
            }
            None => self.messages.push_back(QueuedMessage { id, fragments: VecDeque::from([fragment]), bytes }),
        }
    }

    pub(super) fn push_retransmission(&mut self, fragment: QueuedFragment) {
        self.retransmissions.push_front(fragment);
    }

    /// How many messages at the front take turns: at most `turns`, of at
    /// most `max_bytes` together, at least one. The same messages until one
    /// of them is done (a message's `bytes` only grows when a reply's
    /// fragments are released, see [`SendQueue::append`]).
    fn in_turn(&self, turns: usize, max_bytes: usize) -> usize {
        let mut bytes = 0usize;
        let mut count = 0;
        for m in self.messages.iter().take(turns.max(1)) {
            bytes = bytes.saturating_add(m.bytes);
            if count > 0 && bytes > max_bytes {
                break;
            }
            count += 1;
        }
        count
    }

    /// The next fragment to send: a retransmission, else the next fragment
    /// of the message whose turn it is; that message, if it has more, goes
    /// to the back of the messages taking turns.
    pub(super) fn pop(&mut self, turns: usize, max_bytes: usize) -> Option<QueuedFragment> {
        if let Some(q) = self.retransmissions.pop_front() {
            return Some(q);
        }
        let in_turn = self.in_turn(turns, max_bytes);
        let mut message = self.messages.pop_front()?;
        let q = message.fragments.pop_front();
        self.fragments -= usize::from(q.is_some());
        if !message.fragments.is_empty() {
            let at = in_turn.saturating_sub(1).min(self.messages.len());
            self.messages.insert(at, message);
        }
        q
    }

    /// Drops every queued fragment of message `message_id`.
    pub(super) fn remove(&mut self, message_id: u64) {
        self.retransmissions.retain(|q| q.message_id != message_id);
        for m in &mut self.messages {
            let before = m.fragments.len();
            m.fragments.retain(|q| q.message_id != message_id);
            self.fragments -= before - m.fragments.len();
        }
        self.messages.retain(|m| !m.fragments.is_empty());
    }
}

/// How many messages take turns at once ([`SendQueue`]): as many as
/// keep a round (one packet each) under an eighth of the incomplete
/// message timeout on average, 1 to [`MAX_MESSAGES_IN_TURN`]. At
/// today's rates (20 ms, 60 s) that is 64, a round of ~1.3 s.
pub(super) fn messages_in_turn(config: &ClientConfig) -> usize {
    let delay = config.average_packet_delay.as_secs_f64();
    if delay <= 0.0 {
        return MAX_MESSAGES_IN_TURN;
    }
    let turns = config.incomplete_message_timeout.as_secs_f64() / 8.0 / delay;
    (turns as usize).clamp(1, MAX_MESSAGES_IN_TURN)
}

/// Most bytes of messages taking turns at once ([`SendQueue`]): half
/// what a recipient with our `max_message_size` holds of incomplete
/// messages (4 x `max_message_size`), the rest for its other senders.
/// One message alone always takes turns.
pub(super) fn bytes_in_turn(config: &ClientConfig) -> usize {
    config.max_message_size.saturating_mul(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fragment `n` of message `id` (its bytes say which, for the asserts).
    fn frag(id: u64, n: u8) -> QueuedFragment {
        QueuedFragment { message_id: id, via: Via::Surb(Vec::new()), fragment: vec![id as u8, n], retransmissions: 0 }
    }

    fn message(id: u64, fragments: u8) -> Vec<QueuedFragment> {
        (1..=fragments).map(|n| frag(id, n)).collect()
    }

    /// Pops everything: (message, fragment) in send order.
    fn drain(q: &mut SendQueue, turns: usize, max_bytes: usize) -> Vec<(u8, u8)> {
        let mut out = Vec::new();
        while let Some(f) = q.pop(turns, max_bytes) {
            out.push((f.fragment[0], f.fragment[1]));
        }
        assert_eq!(q.len(), 0);
        out
    }

    #[test]
    fn queued_messages_take_turns_one_fragment_each() {
        let mut q = SendQueue::default();
        q.push_message(1, message(1, 4));
        q.push_message(2, message(2, 1));
        q.push_message(3, message(3, 2));
        q.push_message(4, Vec::new()); // nothing to send: no turn
        assert_eq!(q.len(), 7);
        assert_eq!(drain(&mut q, 64, usize::MAX), [(1, 1), (2, 1), (3, 1), (1, 2), (3, 2), (1, 3), (1, 4)]);
    }

    #[test]
    fn retransmissions_go_before_every_message_latest_first() {
        let mut q = SendQueue::default();
        q.push_message(1, message(1, 2));
        q.push_message(2, message(2, 2));
        assert_eq!(q.pop(64, usize::MAX).map(|f| f.fragment), Some(vec![1, 1]));
        q.push_retransmission(frag(9, 1));
        q.push_retransmission(frag(9, 2));
        assert_eq!(q.len(), 5);
        assert_eq!(drain(&mut q, 64, usize::MAX), [(9, 2), (9, 1), (2, 1), (1, 2), (2, 2)]);
    }

    #[test]
    fn only_the_first_messages_take_turns_the_rest_wait_in_order() {
        let mut q = SendQueue::default();
        for id in 1..=4 {
            q.push_message(id, message(id, 3));
        }
        assert_eq!(
            drain(&mut q, 2, usize::MAX),
            [(1, 1), (2, 1), (1, 2), (2, 2), (1, 3), (2, 3), (3, 1), (4, 1), (3, 2), (4, 2), (3, 3), (4, 3)]
        );
        // One at a time: first in, first out, as before round robin.
        q.push_message(1, message(1, 2));
        q.push_message(2, message(2, 2));
        assert_eq!(drain(&mut q, 1, usize::MAX), [(1, 1), (1, 2), (2, 1), (2, 2)]);
    }

    #[test]
    fn messages_take_turns_only_while_their_bytes_fit_together() {
        // 2 bytes a fragment: messages of 6, 6, 2 and 4 bytes; 12 fit.
        let mut q = SendQueue::default();
        q.push_message(1, message(1, 3));
        q.push_message(2, message(2, 3));
        q.push_message(3, message(3, 1));
        q.push_message(4, message(4, 2));
        assert_eq!(
            drain(&mut q, 64, 12),
            [(1, 1), (2, 1), (1, 2), (2, 2), (1, 3), (2, 3), (3, 1), (4, 1), (4, 2)]
        );
        // The first one takes turns whatever its size.
        q.push_message(1, message(1, 3));
        q.push_message(2, message(2, 1));
        assert_eq!(drain(&mut q, 64, 1), [(1, 1), (1, 2), (1, 3), (2, 1)]);
    }

    #[test]
    fn appended_fragments_keep_their_message_place_and_failed_messages_leave() {
        let mut q = SendQueue::default();
        q.push_message(1, message(1, 2));
        q.push_message(2, message(2, 2));
        q.append(1, frag(1, 3)); // still queued: after its others
        q.append(3, frag(3, 1)); // none queued: a new message at the back
        q.push_retransmission(frag(2, 9));
        assert_eq!(q.len(), 7);
        q.remove(2);
        assert_eq!(q.len(), 4);
        assert_eq!(drain(&mut q, 64, usize::MAX), [(1, 1), (3, 1), (1, 2), (1, 3)]);
    }
}
