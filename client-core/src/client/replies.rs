//! Anonymous messages and replies through SURBs, both directions.
//!
//! As a sender, `send_anonymous` ships SURBs back to us under a sender tag
//! ([`Client::send_surbs`]); we keep their keys, alone can read the replies
//! ([`Client::open_reply`]) and send more when the replier asks.
//!
//! As a replier, [`Replies`] owns the SURBs others gave us and the rule for
//! spending them: one SURB per reply fragment, and when they run short the
//! last one asks the sender for more while the rest of the reply waits,
//! per sender tag, until they come ([`Replies::add_surbs`]). Reply packets
//! are single use: not acknowledged, never retransmitted.
//!
//! Everything in the [`ReplyStore`] persists across restarts through
//! `export_reply_store` / `import_reply_store`; a change is announced with
//! [`ClientEvent::ReplyStoreChanged`]. Fragments waiting for SURBs don't
//! persist.

use super::send_queue::{QueuedFragment, Via};
use super::{Client, ClientEvent};
use crate::address::Recipient;
use crate::error::{Error, Result};
use crate::fragment;
use crate::payload::{self, PayloadKind};
use crate::reply::{self, Envelope, ReplyStore, SenderTag};
use nym_wire::epoch::KeyEpoch;
use rand::Rng;
use sphinx_packet::SurbReplyRecovery;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// SURBs asked for beyond what a waiting reply needs.
const REPLY_SURB_TOP_UP: usize = 10;
/// Most SURBs asked for when a conversation's SURBs near retirement.
const MAX_SURB_REFRESH: usize = 50;

#[derive(Default)]
pub(super) struct Replies {
    store: ReplyStore,
    /// Reply fragments (message id, encoded fragment) waiting for more
    /// SURBs, per sender tag.
    waiting_for_surbs: HashMap<SenderTag, VecDeque<(u64, Vec<u8>)>>,
    /// SURBs dropped because their keys retired, per tag (memory only: to
    /// say why a reply can't go).
    retired: HashMap<SenderTag, usize>,
}

impl Replies {
    /// Unused SURBs we hold for answering `sender_tag`.
    pub(super) fn surbs_left(&self, sender_tag: &SenderTag) -> usize {
        self.store.surbs_left(sender_tag)
    }

    pub(super) fn export(&self) -> Vec<u8> {
        self.store.to_bytes()
    }

    /// Replaces the store with what [`Replies::export`] saved.
    pub(super) fn import(&mut self, bytes: &[u8]) -> Result<()> {
        self.store = ReplyStore::from_bytes(bytes)?;
        Ok(())
    }

    /// We sent SURBs (their `recoveries`) to `recipient` under `sender_tag`.
    fn expect_replies(&mut self, sender_tag: SenderTag, recipient: Recipient, recoveries: &[SurbReplyRecovery]) {
        for r in recoveries {
            self.store.remember_recovery(r);
        }
        self.store.remember_tag(sender_tag, recipient);
    }

    /// Whether we can answer `sender_tag` at all: we know it and hold a
    /// SURB whose key epoch the mixnet still serves (the others are dropped
    /// here: a reply through them would be lost).
    pub(super) fn check_can_reply(&mut self, sender_tag: &SenderTag, usable: impl Fn(KeyEpoch) -> bool) -> Result<()> {
        let tag_text = reply::encode_sender_tag(sender_tag);
        if !self.store.knows_tag(sender_tag) {
            return Err(Error::UnknownSenderTag(tag_text));
        }
        self.discard_retired(sender_tag, usable);
        if self.store.surbs_left(sender_tag) == 0 {
            let retired = self.retired.get(sender_tag).copied().unwrap_or(0);
            return Err(Error::NoSurbsLeft(if retired > 0 {
                format!("{tag_text} (its {retired} were made for retired keys; fresh ones come when the sender next writes)")
            } else {
                tag_text
            }));
        }
        Ok(())
    }

    fn discard_retired(&mut self, tag: &SenderTag, usable: impl Fn(KeyEpoch) -> bool) {
        let retired = self.store.discard_surbs(tag, usable);
        if retired > 0 {
            *self.retired.entry(*tag).or_default() += retired;
        }
    }

    /// A key epoch began (`current`): every conversation whose SURBs are
    /// all older spends one of them (still usable: nodes keep the previous
    /// epoch's keys) on asking its sender for fresh ones, so a reply after
    /// the next rotation still has a path. SURBs already retired are
    /// dropped first; a conversation left without any asks nothing (its
    /// sender is gone, or writes again with new SURBs).
    fn refresh_before_retirement<R: Rng + ?Sized>(
        &mut self,
        rng: &mut R,
        current: KeyEpoch,
        usable: impl Fn(KeyEpoch) -> bool,
        capacity: usize,
    ) -> Vec<QueuedFragment> {
        let mut requests = Vec::new();
        for (tag, newest) in self.store.surb_epochs() {
            self.discard_retired(&tag, &usable);
            let held = self.store.surbs_left(&tag);
            if newest >= current || held == 0 {
                continue;
            }
            let wanted = held.max(REPLY_SURB_TOP_UP).min(MAX_SURB_REFRESH) as u16;
            let request = Envelope::SurbRequest { sender_tag: tag, count: wanted }.encode();
            let request = fragment::split(rng, &request, capacity).into_iter().next();
            if let (Some(surb), Some(f)) = (self.store.take_surb(&tag), request) {
                requests.push(QueuedFragment { message_id: 0, via: Via::Surb(surb), fragment: f.encode(), retransmissions: 0 });
            }
        }
        requests
    }

    /// Splits reply `message` (an encoded envelope) into fragments of
    /// `capacity` bytes and spends a SURB on each it can; returns those, to
    /// queue as message `message_id`. When the SURBs won't do, or would
    /// leave none, the last one carries a request for more (after the
    /// fragments) and the rest of the reply waits for them.
    pub(super) fn reply<R: Rng + ?Sized>(
        &mut self,
        rng: &mut R,
        sender_tag: SenderTag,
        message_id: u64,
        message: &[u8],
        capacity: usize,
    ) -> Vec<QueuedFragment> {
        let have = self.store.surbs_left(&sender_tag);
        let fragments = fragment::split(rng, message, capacity);
        let needed = fragments.len();
        // Keep one SURB to ask for more when these won't do, or would leave none.
        let ask_for_more = have <= needed + 1 && have > 1 || have < needed;
        let usable = if ask_for_more { have - 1 } else { have };
        let mut fragments = fragments.into_iter().map(|f| f.encode());
        let mut queued = Vec::with_capacity(usable.min(needed) + 1);
        for fragment in fragments.by_ref().take(usable.min(needed)) {
            if let Some(surb) = self.store.take_surb(&sender_tag) {
                queued.push(QueuedFragment { message_id, via: Via::Surb(surb), fragment, retransmissions: 0 });
            }
        }
        let rest: VecDeque<(u64, Vec<u8>)> = fragments.map(|f| (message_id, f)).collect();
        if ask_for_more {
            let wanted = (rest.len() + REPLY_SURB_TOP_UP).min(reply::MAX_SURBS_PER_MESSAGE) as u16;
            let request = Envelope::SurbRequest { sender_tag, count: wanted }.encode();
            // A request is a few bytes: one fragment, one SURB.
            let request = fragment::split(rng, &request, capacity).into_iter().next();
            if let (Some(surb), Some(f)) = (self.store.take_surb(&sender_tag), request) {
                // In this reply's turns, after its fragments (as before).
                queued.push(QueuedFragment { message_id: 0, via: Via::Surb(surb), fragment: f.encode(), retransmissions: 0 });
            }
        }
        if !rest.is_empty() {
            self.waiting_for_surbs.entry(sender_tag).or_default().extend(rest);
        }
        queued
    }

    /// SURBs from the sender of `sender_tag`; returns the reply fragments
    /// that were waiting for them, each now with its SURB, to queue.
    fn add_surbs(&mut self, sender_tag: SenderTag, surbs: Vec<Vec<u8>>) -> Vec<QueuedFragment> {
        self.store.add_surbs(sender_tag, surbs);
        let mut released = Vec::new();
        let Some(waiting) = self.waiting_for_surbs.get_mut(&sender_tag) else { return released };
        while !waiting.is_empty() {
            let Some(surb) = self.store.take_surb(&sender_tag) else { break };
            if let Some((message_id, fragment)) = waiting.pop_front() {
                released.push(QueuedFragment { message_id, via: Via::Surb(surb), fragment, retransmissions: 0 });
            }
        }
        if waiting.is_empty() {
            self.waiting_for_surbs.remove(&sender_tag);
        }
        released
    }
}

impl Client {
    /// Makes `count` SURBs back to us and sends them to `recipient`: with
    /// `message` as an anonymous message, without as a top-up.
    pub(super) fn send_surbs(
        &mut self,
        recipient: Recipient,
        sender_tag: SenderTag,
        count: usize,
        message: Option<Vec<u8>>,
        now: Duration,
    ) -> Result<u64> {
        let me = self.address();
        let topology = self.topology.as_ref().ok_or_else(|| nym_wire::Error::NoRoute("no network topology yet".into()))?;
        let mut surbs = Vec::with_capacity(count);
        let mut recoveries = Vec::with_capacity(count);
        let epoch = self.key_epoch(now)?;
        for _ in 0..count {
            let (surb, recovery) = reply::create_surb(&mut self.rng, topology, &me, self.config.average_hop_delay, epoch)?;
            surbs.push(surb);
            recoveries.push(recovery);
        }
        self.replies.expect_replies(sender_tag, recipient, &recoveries);
        self.push_event(ClientEvent::ReplyStoreChanged);
        let envelope = match message {
            Some(message) => Envelope::Repliable { sender_tag, surbs, message },
            None => Envelope::MoreSurbs { sender_tag, surbs },
        };
        Ok(self.enqueue_forward(recipient, &envelope.encode()))
    }

    /// At a new key epoch: conversations whose SURBs will retire ask for
    /// fresh ones (see `Replies::refresh_before_retirement`).
    pub(super) fn refresh_reply_surbs(&mut self, current: KeyEpoch, now: Duration) {
        let capacity = payload::reply_body_capacity(self.config.packet_size) - fragment::HEADER_LEN;
        let usable = self.surb_usability(now);
        let requests = self.replies.refresh_before_retirement(&mut self.rng, current, usable, capacity);
        if requests.is_empty() {
            return;
        }
        for request in requests {
            // message 0: bookkeeping, as the requests `reply` sends
            self.queue.append(0, request);
        }
        self.push_event(ClientEvent::ReplyStoreChanged);
    }

    /// The sender of `sender_tag` asks for `count` more SURBs.
    pub(super) fn answer_surb_request(&mut self, sender_tag: SenderTag, count: u16, now: Duration) {
        match self.replies.store.recipient_of_tag(&sender_tag) {
            Some(recipient) => {
                let count = usize::from(count).min(reply::MAX_SURBS_PER_MESSAGE);
                if let Err(e) = self.send_surbs(recipient, sender_tag, count, None, now) {
                    self.push_event(ClientEvent::GatewayError(format!("could not send more reply SURBs: {e}")));
                }
            }
            None => self.stats.malformed_packets += 1,
        }
    }

    /// SURBs to answer `sender_tag` with came: reply fragments waiting for
    /// them join their reply's turns.
    pub(super) fn add_reply_surbs(&mut self, sender_tag: SenderTag, surbs: Vec<Vec<u8>>) {
        for released in self.replies.add_surbs(sender_tag, surbs) {
            self.queue.append(released.message_id, released);
        }
        self.push_event(ClientEvent::ReplyStoreChanged);
    }

    /// `identifier || payload` from a SURB we made: only we can read it.
    pub(super) fn open_reply(&mut self, bytes: &[u8]) -> Result<(PayloadKind, Vec<u8>)> {
        let (identifier, payload) = bytes.split_at(16);
        let identifier: [u8; 16] = identifier.try_into().map_err(|_| nym_wire::Error::MalformedPacket("short reply".into()))?;
        let recovery = self
            .replies
            .store
            .take_recovery(&identifier)
            .ok_or_else(|| nym_wire::Error::MalformedPacket("reply through an unknown or used SURB".into()))?;
        self.push_event(ClientEvent::ReplyStoreChanged);
        let payload = sphinx_packet::payload::Payload::from_bytes(payload)?;
        payload::decode_content(&recovery.recover_plaintext(payload)?)
    }
}
