//! Packets sent and not yet acknowledged: their ack deadlines, their
//! retransmission, and giving their message up.
//!
//! Every real packet sent to an address carries a SURB-ACK under a random
//! ack id; [`InFlight`] keeps the packet under that id until its ack comes
//! back. A packet whose ack is overdue (its route's and its ack's mixing
//! delays x `ack_wait_multiplier` + `ack_wait_addition`, doubled per
//! retransmission up to 8x) goes back to the head of the send queue, to be
//! sent again on a fresh route; after `max_retransmissions` its whole
//! message is given up ([`Client::fail_message`]) and the application told.
//! Packets through SURBs are single use and never tracked here.

use super::config::ClientConfig;
use super::send_queue::QueuedFragment;
use super::{Client, ClientEvent};
use crate::address::Recipient;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

/// Failed messages remembered, so their stragglers aren't retried.
const FAILED_REMEMBERED: usize = 1024;

/// A packet in flight: what it carries, and its tag (how a gateway that
/// refused it names it).
struct Sent {
    fragment: QueuedFragment,
    tag: [u8; 32],
}

#[derive(Default)]
pub(super) struct InFlight {
    /// ack id -> the packet it acknowledges
    packets: HashMap<u64, Sent>,
    /// packet tag -> ack id, for the packets in `packets`
    by_tag: HashMap<[u8; 32], u64>,
    /// (deadline, ack id); entries whose ack came are skipped when popped.
    deadlines: BinaryHeap<Reverse<(Duration, u64)>>,
    /// Messages given up recently, so their stragglers aren't retried.
    failed: Vec<u64>,
}

impl InFlight {
    /// Packets sent and not yet acknowledged.
    pub(super) fn len(&self) -> usize {
        self.packets.len()
    }

    /// `fragment` went out at `now` under `ack_id` as the packet tagged
    /// `tag`, on a route (and with an ack) whose mixing delays add up to
    /// `round_trip_delay`.
    pub(super) fn sent(
        &mut self,
        ack_id: u64,
        tag: [u8; 32],
        fragment: QueuedFragment,
        now: Duration,
        round_trip_delay: Duration,
        config: &ClientConfig,
    ) {
        let backoff = 1u32 << fragment.retransmissions.min(3);
        let wait = (round_trip_delay.mul_f64(config.ack_wait_multiplier) + config.ack_wait_addition) * backoff;
        self.deadlines.push(Reverse((now + wait, ack_id)));
        self.packets.insert(ack_id, Sent { fragment, tag });
        self.by_tag.insert(tag, ack_id);
    }

    fn remove(&mut self, ack_id: u64) -> Option<QueuedFragment> {
        let sent = self.packets.remove(&ack_id)?;
        self.by_tag.remove(&sent.tag);
        Some(sent.fragment)
    }

    /// The ack for `ack_id` came. Unknown ids are the acks of cover
    /// packets, or late ones.
    pub(super) fn acknowledged(&mut self, ack_id: u64) {
        self.remove(ack_id);
    }

    /// The gateway refused the packet tagged `tag` (nothing was sent): it
    /// is no longer awaited, and goes back to be sent again.
    pub(super) fn refused(&mut self, tag: &[u8; 32]) -> Option<QueuedFragment> {
        let ack_id = self.by_tag.get(tag).copied()?;
        self.remove(ack_id)
    }

    /// The earliest ack deadline (perhaps of a packet acknowledged since).
    pub(super) fn next_deadline(&self) -> Option<Duration> {
        self.deadlines.peek().map(|Reverse((t, _))| *t)
    }

    /// Takes out the next packet whose ack is overdue at `now`.
    fn pop_overdue(&mut self, now: Duration) -> Option<QueuedFragment> {
        while let Some(Reverse((deadline, id))) = self.deadlines.peek().copied() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            if let Some(fragment) = self.remove(id) {
                return Some(fragment);
            }
        }
        None
    }

    /// Message `message_id` is given up: its packets are no longer awaited.
    /// False when it already was.
    fn give_up(&mut self, message_id: u64) -> bool {
        if self.has_failed(message_id) {
            return false;
        }
        self.failed.push(message_id);
        if self.failed.len() > FAILED_REMEMBERED {
            self.failed.remove(0);
        }
        let by_tag = &mut self.by_tag;
        self.packets.retain(|_, s| {
            let keep = s.fragment.message_id != message_id;
            if !keep {
                by_tag.remove(&s.tag);
            }
            keep
        });
        true
    }

    fn has_failed(&self, message_id: u64) -> bool {
        self.failed.contains(&message_id)
    }
}

impl Client {
    /// Puts packets whose ack is overdue back at the head of the queue
    /// (ahead of every message's turn), or gives their message up after too
    /// many tries.
    pub(super) fn retransmit_unacknowledged(&mut self, now: Duration) {
        let mut again = Vec::new();
        while let Some(mut fragment) = self.in_flight.pop_overdue(now) {
            if fragment.retransmissions >= self.config.max_retransmissions {
                let recipient = fragment.recipient();
                self.fail_message(fragment.message_id, recipient, format!(
                    "a packet was not acknowledged after {} retransmissions",
                    fragment.retransmissions
                ));
                continue;
            }
            fragment.retransmissions += 1;
            self.stats.retransmissions += 1;
            again.push(fragment);
        }
        for fragment in again.into_iter().rev() {
            // Stragglers of a message failed in this same pass stay out.
            if !self.in_flight.has_failed(fragment.message_id) {
                self.queue.push_retransmission(fragment);
            }
        }
    }

    /// Gives message `message_id` up (once): drops what of it is queued or
    /// awaited and tells the application.
    pub(super) fn fail_message(&mut self, message_id: u64, recipient: Option<Recipient>, reason: String) {
        if self.in_flight.give_up(message_id) {
            self.queue.remove(message_id);
            self.push_event(ClientEvent::SendFailed { message_id, recipient, reason });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::send_queue::Via;

    fn fragment(message_id: u64, retransmissions: u32) -> QueuedFragment {
        QueuedFragment { message_id, via: Via::Surb(Vec::new()), fragment: Vec::new(), retransmissions }
    }

    #[test]
    fn overdue_packets_come_out_by_deadline_acknowledged_ones_never() {
        let config = ClientConfig { ack_wait_multiplier: 1.0, ack_wait_addition: Duration::from_secs(1), ..ClientConfig::default() };
        let mut in_flight = InFlight::default();
        in_flight.sent(1, [1; 32], fragment(10, 0), Duration::ZERO, Duration::ZERO, &config); // due at 1 s
        in_flight.sent(2, [2; 32], fragment(11, 0), Duration::ZERO, Duration::ZERO, &config); // due at 1 s
        in_flight.sent(3, [3; 32], fragment(12, 3), Duration::ZERO, Duration::ZERO, &config); // backoff 8x: due at 8 s
        in_flight.acknowledged(1);
        assert_eq!(in_flight.len(), 2);
        assert_eq!(in_flight.next_deadline(), Some(Duration::from_secs(1)));
        let overdue = in_flight.pop_overdue(Duration::from_secs(2)).map(|f| f.message_id);
        assert_eq!(overdue, Some(11));
        assert!(in_flight.pop_overdue(Duration::from_secs(2)).is_none());
        assert_eq!(in_flight.pop_overdue(Duration::from_secs(8)).map(|f| f.message_id), Some(12));
        assert_eq!(in_flight.len(), 0);
    }

    #[test]
    fn a_message_is_given_up_once_with_all_its_packets() {
        let config = ClientConfig::default();
        let mut in_flight = InFlight::default();
        in_flight.sent(1, [1; 32], fragment(10, 0), Duration::ZERO, Duration::ZERO, &config);
        in_flight.sent(2, [2; 32], fragment(10, 0), Duration::ZERO, Duration::ZERO, &config);
        in_flight.sent(3, [3; 32], fragment(11, 0), Duration::ZERO, Duration::ZERO, &config);
        assert!(in_flight.give_up(10));
        assert!(!in_flight.give_up(10));
        assert!(in_flight.has_failed(10) && !in_flight.has_failed(11));
        assert_eq!(in_flight.len(), 1);
        assert!(in_flight.refused(&[1; 32]).is_none(), "its tags went with it");
        assert_eq!(in_flight.by_tag.len(), 1);
    }

    #[test]
    fn a_refused_packet_leaves_flight_once_by_its_tag() {
        let config = ClientConfig::default();
        let mut in_flight = InFlight::default();
        in_flight.sent(1, [1; 32], fragment(10, 2), Duration::ZERO, Duration::ZERO, &config);
        in_flight.sent(2, [2; 32], fragment(11, 0), Duration::ZERO, Duration::ZERO, &config);
        let back = in_flight.refused(&[1; 32]).expect("tracked");
        assert_eq!((back.message_id, back.retransmissions), (10, 2), "a refusal is not a retransmission");
        assert!(in_flight.refused(&[1; 32]).is_none());
        assert!(in_flight.refused(&[9; 32]).is_none(), "cover and unknown tags");
        in_flight.acknowledged(2);
        assert!(in_flight.refused(&[2; 32]).is_none());
        assert_eq!((in_flight.len(), in_flight.by_tag.len()), (0, 0));
        // its deadline passes without a retransmission
        assert!(in_flight.pop_overdue(Duration::from_secs(3600)).is_none());
    }
}
