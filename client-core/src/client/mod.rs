//! The client state machine: one type a shim drives.
//!
//! The shim feeds in what happened (`handle_*`, with `now`) and carries out
//! what comes out: frames for the gateway ([`Client::poll_transmit`]), news
//! for the application ([`Client::poll_event`]) and when to call back
//! ([`Client::poll_timeout`]). After every `handle_*` or `send`, drain
//! `poll_transmit` and `poll_event`, then wait until `poll_timeout`.
//!
//! Traffic follows Loopix: a Poisson stream that sends the next queued real
//! packet or, when none is queued, a loop cover packet to ourselves; and a
//! second Poisson stream of loop cover packets. An observer of the client's
//! link sees the same rate whether or not the user is talking.
//!
//! Fairness: queued messages share the first stream round robin, one packet
//! of each in turn, so a short message sent after a long one is not held
//! until the long one is done.
//!
//! This module holds [`Client`], its public API and the glue between its
//! parts; each part lives in its own module, most owning its state in a
//! small type:
//!
//! - `config`: [`ClientConfig`], [`ClientEvent`], [`ReceivedMessage`],
//!   [`ClientStats`].
//! - `gateway`: the session with the gateway (`Gateway`): handshake,
//!   sealing and opening frames.
//! - `schedule`: when the two Poisson streams tick (`Schedule`), the
//!   catch-up rule.
//! - `send_queue`: fragments waiting to go (`SendQueue`), messages taking
//!   turns round robin, retransmissions first.
//! - `transmit`: what a send builds: real, reply and cover packets, and
//!   `build_sphinx_packet`.
//! - `retransmit`: packets awaiting their ack (`InFlight`), retransmission,
//!   giving a message up.
//! - `replies`: anonymous messages, replies through SURBs (`Replies`), SURB
//!   top-ups.
//! - `receive`: deliveries from the gateway, reassembly, messages for the
//!   application, delivery acks to the gateway (`DeliveryAcks`).

mod config;
mod gateway;
mod receive;
mod replies;
mod retransmit;
mod schedule;
mod send_queue;
mod transmit;

pub use config::{ClientConfig, ClientEvent, ClientStats, ReceivedMessage};

use crate::ack::AckKey;
use crate::address::Recipient;
use crate::error::{Error, Result};
use crate::fragment::{self, Reassembler, Receipt};
use nym_wire::keys::ClientKeys;
use crate::payload;
use crate::reply::{self, Envelope, SenderTag};
use nym_wire::topology::Topology;
use nym_wire::epoch::KeyEpoch;
use gateway::{Gateway, Incoming};
use rand::rngs::StdRng;
use rand::SeedableRng;
use receive::DeliveryAcks;
use replies::Replies;
use retransmit::InFlight;
use schedule::{Schedule, MAX_CATCH_UP};
use send_queue::{QueuedFragment, SendQueue, Via};
use std::collections::VecDeque;
use std::time::Duration;

/// How long before its keys retire a SURB of the previous epoch is no
/// longer used: its reply must cross the mixnet before the rotation.
pub(crate) const SURB_RETIREMENT_MARGIN: Duration = Duration::from_secs(30);

/// One client's engine: its keys, its gateway session, what it sends and
/// receives (see the module doc for how a shim drives it).
pub struct Client {
    keys: ClientKeys,
    config: ClientConfig,
    rng: StdRng,
    topology: Option<Topology>,
    gateway: Gateway,
    /// Frames for the gateway, in order.
    transmits: VecDeque<Vec<u8>>,
    /// Events, each with the gateway deliveries to acknowledge once it is taken.
    events: VecDeque<(ClientEvent, Vec<Receipt>)>,
    schedule: Schedule,
    queue: SendQueue,
    in_flight: InFlight,
    ack_key: AckKey,
    replies: Replies,
    reassembler: Reassembler,
    delivery_acks: DeliveryAcks,
    stats: ClientStats,
    next_message_id: u64,
    /// Unix milliseconds minus `now` in milliseconds, from the shim's last
    /// reading of the wall clock ([`Client::handle_clock`]): key epochs
    /// follow the wall clock.
    unix_offset_ms: Option<i128>,
    /// The key epoch the last `handle_timeout` saw.
    epoch_seen: Option<KeyEpoch>,
}

impl Client {
    /// A client with `keys`, using the gateway whose identity is
    /// `gateway_identity`, not yet connected and with no topology; its
    /// randomness (routes, delays, padding) comes from `rng_seed`.
    pub fn new(keys: ClientKeys, gateway_identity: [u8; 32], config: ClientConfig, rng_seed: [u8; 32]) -> Self {
        let reassembler = Reassembler::new(config.incomplete_message_timeout, config.max_message_size.saturating_mul(4));
        let ack_key = AckKey::derive(keys.secret());
        Client {
            keys,
            rng: StdRng::from_seed(rng_seed),
            topology: None,
            gateway: Gateway::new(gateway_identity),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            schedule: Schedule::new(&config),
            queue: SendQueue::default(),
            in_flight: InFlight::default(),
            ack_key,
            replies: Replies::default(),
            reassembler,
            delivery_acks: DeliveryAcks::default(),
            stats: ClientStats::default(),
            next_message_id: 1,
            unix_offset_ms: None,
            epoch_seen: None,
            config,
        }
    }

    /// The wall clock: at `now`, Unix time is `unix_ms`. Packets are built
    /// for the key epoch of the wall clock, so the shim gives a reading at
    /// start and with every topology (the driver does both).
    pub fn handle_clock(&mut self, now: Duration, unix_ms: u64) {
        self.unix_offset_ms = Some(i128::from(unix_ms) - now.as_millis() as i128);
    }

    /// Unix milliseconds at `now`, once the clock is known.
    fn unix_ms(&self, now: Duration) -> Option<u64> {
        let ms = self.unix_offset_ms? + now.as_millis() as i128;
        u64::try_from(ms).ok()
    }

    /// The key epoch packets built at `now` are for.
    fn key_epoch(&self, now: Duration) -> Result<KeyEpoch> {
        let topology = self.topology.as_ref().ok_or_else(|| nym_wire::Error::NoRoute("no network topology yet".into()))?;
        let unix_ms = self.unix_ms(now).ok_or_else(|| nym_wire::Error::NoRoute("the wall clock is not known yet".into()))?;
        Ok(topology.epoch_at(unix_ms))
    }

    /// Which SURB epochs a reply may still go through at `now`: the current
    /// and next, and the previous while more than [`SURB_RETIREMENT_MARGIN`]
    /// (or a quarter epoch, if shorter) is left before its keys retire.
    fn surb_usability(&self, now: Duration) -> impl Fn(KeyEpoch) -> bool {
        let now = self.topology.as_ref().map(Topology::epoch_ms).zip(self.unix_ms(now));
        move |epoch| match now {
            Some((epoch_ms, unix_ms)) => {
                let margin = (SURB_RETIREMENT_MARGIN.as_millis() as u64).min(epoch_ms / 4);
                nym_wire::epoch::key_usable(epoch, unix_ms, epoch_ms, margin)
            }
            None => true,
        }
    }

    fn surb_usable(&self, epoch: KeyEpoch, now: Duration) -> bool {
        self.surb_usability(now)(epoch)
    }

    /// At the first tick of a new key epoch: conversations whose SURBs are
    /// about to retire ask for fresh ones.
    fn check_key_epoch(&mut self, now: Duration) {
        let Ok(epoch) = self.key_epoch(now) else { return };
        if self.epoch_seen.is_some_and(|seen| seen < epoch) {
            self.refresh_reply_surbs(epoch, now);
        }
        self.epoch_seen = Some(epoch);
    }

    /// This client's address: its key behind its gateway.
    pub fn address(&self) -> Recipient {
        Recipient::new(*self.keys.public().as_bytes(), self.gateway.identity())
    }

    /// Binds the engine to the gateway its address belongs to, before its
    /// first connection (the driver chooses one from the first topology
    /// when the shim named none).
    pub(crate) fn set_gateway(&mut self, identity: [u8; 32]) {
        self.gateway = Gateway::new(identity);
    }

    /// The configuration it was made with.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Its counters since it was made.
    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// Whether the gateway session is up (handshake done, not disconnected).
    pub fn is_connected(&self) -> bool {
        self.gateway.is_up()
    }

    /// Fragments waiting for their turn on the main stream.
    pub fn queued_packets(&self) -> usize {
        self.queue.len()
    }

    /// Packets sent and not yet acknowledged.
    pub fn unacknowledged_packets(&self) -> usize {
        self.in_flight.len()
    }

    /// The topology routes are drawn from, once one was given.
    pub fn topology(&self) -> Option<&Topology> {
        self.topology.as_ref()
    }

    /// A verified topology (the driver checks it): routes are drawn from it
    /// from now on. Call at start and after every accepted refresh.
    pub fn handle_topology(&mut self, topology: Topology) {
        self.topology = Some(topology);
    }

    /// The websocket to the gateway is open: start the handshake (its
    /// first frame comes out of [`Client::poll_transmit`]).
    pub fn handle_gateway_connected(&mut self, _now: Duration) {
        self.transmits.clear();
        self.delivery_acks.new_connection();
        let hello = self.gateway.connect(&mut self.rng, self.keys.secret());
        self.transmits.push_back(hello);
    }

    /// The websocket closed. Queued messages stay queued for the next connection.
    pub fn handle_gateway_disconnected(&mut self, _now: Duration) {
        self.gateway.disconnect();
        // Sealed for the old session: useless on a new one. Unacknowledged
        // deliveries come again on the next connection (and are recognised).
        self.transmits.clear();
        self.delivery_acks.connection_lost();
        self.schedule.stop();
    }

    /// A binary frame from the gateway: the handshake, a delivery, an error.
    /// Garbage is counted and reported, never fatal to the engine.
    pub fn handle_gateway_frame(&mut self, frame: &[u8], now: Duration) {
        match self.gateway.open(frame) {
            None => {}
            Some(Incoming::Handshake(next)) => self.transmits.push_back(next),
            Some(Incoming::Connected) => {
                self.schedule.start(now, &mut self.rng);
                self.push_event(ClientEvent::Connected);
            }
            Some(Incoming::HandshakeFailed(reason)) => self.push_event(ClientEvent::HandshakeFailed(reason)),
            Some(Incoming::Response(response)) => self.handle_response(response, now),
            Some(Incoming::Malformed(e)) => {
                self.stats.malformed_packets += 1;
                self.push_event(ClientEvent::GatewayError(e.to_string()));
            }
        }
    }

    /// Sets of messages delivered before a restart (the shim kept them with
    /// the messages, see [`ReceivedMessage::sets`]): the gateway may deliver
    /// their fragments again, and they are not new.
    pub fn import_delivered_sets(&mut self, sets: &[u32]) {
        self.reassembler.remember_delivered(sets);
    }

    /// Bytes of message one packet carries.
    pub fn fragment_capacity(&self) -> usize {
        payload::body_capacity(self.config.packet_size) - fragment::HEADER_LEN
    }

    /// Queues `message` for `recipient` and returns its id (named again if
    /// it fails later). Fails at once, with nothing queued, when it can't be
    /// sent: too large, no topology yet, unknown gateway.
    ///
    /// Nothing is built here (so `_now` dates nothing): packets are built,
    /// for the key epoch of the moment, when their turn comes.
    pub fn send(&mut self, recipient: Recipient, message: Vec<u8>, _now: Duration) -> Result<u64> {
        self.check_sendable(&recipient, message.len())?;
        Ok(self.enqueue_forward(recipient, &Envelope::Plain(message).encode()))
    }

    /// Like [`Client::send`], but the recipient gets a sender tag instead of
    /// our address, and `reply_surbs` single-use blocks to answer with.
    pub fn send_anonymous(&mut self, recipient: Recipient, message: Vec<u8>, reply_surbs: usize, now: Duration) -> Result<u64> {
        if reply_surbs > reply::MAX_SURBS_PER_MESSAGE {
            return Err(Error::MessageTooLarge { size: reply_surbs, limit: reply::MAX_SURBS_PER_MESSAGE });
        }
        self.check_sendable(&recipient, message.len() + reply_surbs * reply::SURB_LEN)?;
        let sender_tag = reply::sender_tag_for(self.keys.secret(), &recipient);
        self.send_surbs(recipient, sender_tag, reply_surbs, Some(message), now)
    }

    /// Answers an anonymous message through the SURBs its sender gave us.
    /// When they run short, the last one asks the sender for more, and the
    /// rest of the reply waits for them.
    pub fn reply(&mut self, sender_tag: SenderTag, message: Vec<u8>, now: Duration) -> Result<u64> {
        if message.len() > self.config.max_message_size {
            return Err(Error::MessageTooLarge { size: message.len(), limit: self.config.max_message_size });
        }
        let usable = self.surb_usability(now);
        self.replies.check_can_reply(&sender_tag, usable)?;
        let capacity = payload::reply_body_capacity(self.config.packet_size) - fragment::HEADER_LEN;
        let message_id = self.new_message_id();
        let message = Envelope::Plain(message).encode();
        let fragments = self.replies.reply(&mut self.rng, sender_tag, message_id, &message, capacity);
        self.queue.push_message(message_id, fragments);
        self.push_event(ClientEvent::ReplyStoreChanged);
        Ok(message_id)
    }

    /// Unused SURBs we hold for answering `sender_tag`.
    pub fn reply_surbs_left(&self, sender_tag: &SenderTag) -> usize {
        self.replies.surbs_left(sender_tag)
    }

    /// The reply state to persist (SURBs we hold, keys to read replies).
    pub fn export_reply_store(&self) -> Vec<u8> {
        self.replies.export()
    }

    /// Restores what [`Client::export_reply_store`] saved.
    pub fn import_reply_store(&mut self, bytes: &[u8]) -> Result<()> {
        self.replies.import(bytes)
    }

    /// The timer armed for [`Client::poll_timeout`] fired (calling it
    /// early or late is harmless): sends the Poisson stream's packets that
    /// are due, cover, retransmissions; expires stale reassemblies.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.check_key_epoch(now);
        self.expire_incomplete(now);
        self.retransmit_unacknowledged(now);
        if !self.is_connected() {
            return;
        }
        for _ in 0..MAX_CATCH_UP {
            let Some(at) = self.schedule.packet_due(now) else { break };
            self.send_next_real_or_cover(now);
            self.schedule.packet_sent(at, &mut self.rng);
        }
        self.schedule.resume_if_behind(now, &mut self.rng);
        if let Some(at) = self.schedule.cover_due(now) {
            self.send_cover(now);
            self.schedule.cover_sent(at, now, &mut self.rng);
        }
    }

    /// When [`Client::handle_timeout`] wants to run next (the next Poisson
    /// tick, cover packet, ack deadline or reassembly expiry); `None`: no
    /// timer needed. Arm one timer for it after draining the outputs.
    pub fn poll_timeout(&self) -> Option<Duration> {
        [self.schedule.next_tick(), self.reassembler.next_expiry(), self.in_flight.next_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next frame for the gateway, `None` when there is nothing to send
    /// now. Call after every `handle_*`, `send*`, `reply` and after taking the
    /// events, until it returns `None`. `now` dates what is built here (an
    /// unthrottled client builds its packets when asked, and their ack
    /// deadlines start then).
    pub fn poll_transmit(&mut self, now: Duration) -> Option<Vec<u8>> {
        if let Some(ack) = self.next_ack_frame() {
            return Some(ack);
        }
        if self.transmits.is_empty() && self.config.average_packet_delay.is_zero() && self.is_connected() {
            // Unthrottled: build the next real packet only when asked, so a
            // large message never sits in memory as packets all at once.
            self.send_next_real(now);
        }
        self.transmits.pop_front()
    }

    /// The next event. A [`ClientEvent::Received`] taken here is the
    /// shim's to keep: its gateway acknowledgement goes out with the next
    /// [`Client::poll_transmit`].
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        let (event, receipts) = self.events.pop_front()?;
        self.delivery_acks.release(receipts);
        Some(event)
    }

    fn push_event(&mut self, event: ClientEvent) {
        self.events.push_back((event, Vec::new()));
    }

    fn new_message_id(&mut self) -> u64 {
        let id = self.next_message_id;
        self.next_message_id += 1;
        id
    }

    fn check_sendable(&self, recipient: &Recipient, len: usize) -> Result<()> {
        if len > self.config.max_message_size {
            return Err(Error::MessageTooLarge { size: len, limit: self.config.max_message_size });
        }
        let topology = self.topology.as_ref().ok_or_else(|| nym_wire::Error::NoRoute("no network topology yet".into()))?;
        if topology.gateway(&recipient.gateway_key).is_none() {
            return Err(nym_wire::Error::NoRoute(format!(
                "the recipient's gateway {} is not in the network topology",
                crate::address::encode_key(&recipient.gateway_key)
            )).into());
        }
        Ok(())
    }

    /// Splits `message` into fragments for `recipient` and queues them as
    /// a new message; returns its id.
    fn enqueue_forward(&mut self, recipient: Recipient, message: &[u8]) -> u64 {
        let capacity = self.fragment_capacity();
        let message_id = self.new_message_id();
        let fragments = fragment::split(&mut self.rng, message, capacity).into_iter().map(|f| QueuedFragment {
            message_id,
            via: Via::Forward(recipient),
            fragment: f.encode(),
            retransmissions: 0,
        });
        self.queue.push_message(message_id, fragments);
        message_id
    }
}
