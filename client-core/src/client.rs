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
//! of each in turn (see `SendQueue` below), so a short message sent after a
//! long one is not held until the long one is done.

use crate::ack::{self, AckKey};
use crate::address::Recipient;
use crate::error::{Error, Result};
use crate::fragment::{self, Completed, Fragment, Insert, Reassembler, Receipt};
use crate::keys::ClientKeys;
use crate::payload::{self, PayloadKind};
use crate::reply::{self, Envelope, ReplyStore, SenderTag};
use crate::topology::Topology;
use crate::wire::gateway::{ClientHandshake, ClientRequest, GatewayResponse, Session, MAX_ACK_IDS};
use crate::wire::mix_frame::{self, PacketSize};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp};
use sphinx_packet::header::delays::Delay;
use sphinx_packet::route::{Destination, DestinationAddressBytes};
use sphinx_packet::SphinxPacketBuilder;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::Duration;
use x25519_dalek::{PublicKey, StaticSecret};

/// SURBs asked for beyond what a waiting reply needs.
const REPLY_SURB_TOP_UP: usize = 10;

/// Timer-driven sends to make up when the shim wakes late; more than this
/// would turn a stall into a burst an observer could see.
const MAX_CATCH_UP: usize = 4;

/// Most messages taking turns on the main stream at once (see [`SendQueue`]).
const MAX_MESSAGES_IN_TURN: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    /// Mean per-hop mixing delay. Zero: no delay.
    pub average_hop_delay: Duration,
    /// Mean gap of the main Poisson stream. Zero: no throttling; queued
    /// packets go out as fast as they can be built, and this stream sends no cover.
    pub average_packet_delay: Duration,
    /// Mean gap of the loop cover stream. Zero: that stream is off.
    pub loop_cover_delay: Duration,
    pub packet_size: PacketSize,
    /// An incomplete message is dropped after this long without a fragment.
    pub incomplete_message_timeout: Duration,
    pub max_message_size: usize,
    /// A packet not acknowledged within (its route delays + its ack's route
    /// delays) x `ack_wait_multiplier` + `ack_wait_addition` is sent again,
    /// on a fresh route.
    pub ack_wait_multiplier: f64,
    pub ack_wait_addition: Duration,
    /// Retransmissions of one packet before its message is given up. Each
    /// retransmission waits twice as long as the one before (up to 8x).
    pub max_retransmissions: u32,
    /// Most packets sent and not yet acknowledged; beyond it real packets
    /// wait (the Poisson stream sends cover meanwhile). Without it an
    /// unthrottled sender outruns the network and its own timers fire for
    /// packets that are only queued, and retransmissions make it worse.
    pub max_unacknowledged: usize,
}

impl Default for ClientConfig {
    /// Today's Nym rates.
    fn default() -> Self {
        ClientConfig {
            average_hop_delay: Duration::from_millis(15),
            average_packet_delay: Duration::from_millis(20),
            loop_cover_delay: Duration::from_millis(200),
            packet_size: PacketSize::Regular,
            incomplete_message_timeout: Duration::from_secs(60),
            max_message_size: 64 * 1024 * 1024,
            ack_wait_multiplier: 1.5,
            ack_wait_addition: Duration::from_millis(800),
            max_retransmissions: 20,
            max_unacknowledged: 256,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The gateway accepted our handshake; traffic flows.
    Connected,
    /// A whole message for the application. Taking it from
    /// [`Client::poll_event`] hands it over: the shim gives it to an
    /// application or writes it to its own store before it next calls
    /// [`Client::poll_transmit`], which acknowledges it to the gateway (the
    /// gateway forgets it then).
    Received(ReceivedMessage),
    /// The handshake failed (the gateway refused us, or its answer was
    /// bad): this connection is useless; close it and connect again.
    HandshakeFailed(String),
    /// Something the application should hear about on a working
    /// connection: the gateway reported an error, or a frame from it was bad.
    GatewayError(String),
    /// A message (the id `send`, `send_anonymous` or `reply` returned) could
    /// not be delivered; `recipient` is `None` for replies.
    SendFailed { message_id: u64, recipient: Option<Recipient>, reason: String },
    /// SURBs or reply keys changed: persist [`Client::export_reply_store`].
    ReplyStoreChanged,
}

/// A received message and what identifies it across restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub message: Vec<u8>,
    /// Set for an anonymous message: answer it with [`Client::reply`].
    pub sender_tag: Option<SenderTag>,
    /// The fragment sets it came in. A shim that keeps the message in its
    /// own store keeps these too and gives them back with
    /// [`Client::import_delivered_sets`] after a restart, so the same
    /// message delivered again by the gateway is recognised.
    pub sets: Vec<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientStats {
    pub real_packets_sent: u64,
    pub cover_packets_sent: u64,
    pub packets_received: u64,
    pub cover_packets_received: u64,
    pub messages_received: u64,
    pub duplicate_fragments: u64,
    pub malformed_packets: u64,
    pub expired_sets: u64,
    pub acks_received: u64,
    pub retransmissions: u64,
    /// Gateway deliveries acknowledged (the gateway may forget them).
    pub deliveries_acknowledged: u64,
}

enum Connection {
    Down,
    Handshaking(ClientHandshake),
    /// Handshake sent; waiting for `Authenticated`.
    Authenticating(Session),
    Up(Session),
}

/// How a fragment travels.
#[derive(Clone)]
enum Via {
    /// A normal packet to the recipient's address, acknowledged.
    Forward(Recipient),
    /// Through a SURB someone gave us; single use, so not retransmitted.
    Surb(Vec<u8>),
}

struct QueuedFragment {
    message_id: u64,
    via: Via,
    fragment: Vec<u8>,
    retransmissions: u32,
}

impl QueuedFragment {
    fn recipient(&self) -> Option<Recipient> {
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
/// held about one at a time from us. [`Client::messages_in_turn`] keeps a
/// round to a small part of that timeout and [`Client::bytes_in_turn`] to
/// half that budget.
#[derive(Default)]
struct SendQueue {
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
    fn len(&self) -> usize {
        self.retransmissions.len() + self.fragments
    }

    /// A new message, at the back.
    fn push_message(&mut self, id: u64, fragments: impl IntoIterator<Item = QueuedFragment>) {
        let fragments: VecDeque<QueuedFragment> = fragments.into_iter().collect();
        if !fragments.is_empty() {
            self.fragments += fragments.len();
            let bytes = fragments.iter().map(|q| q.fragment.len()).sum();
            self.messages.push_back(QueuedMessage { id, fragments, bytes });
        }
    }

    /// More fragments of message `id`: after its others if it still has
    /// some queued (its place is kept), else as a new message at the back.
    fn append(&mut self, id: u64, fragment: QueuedFragment) {
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

    fn push_retransmission(&mut self, fragment: QueuedFragment) {
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
    fn pop(&mut self, turns: usize, max_bytes: usize) -> Option<QueuedFragment> {
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
    fn remove(&mut self, message_id: u64) {
        self.retransmissions.retain(|q| q.message_id != message_id);
        for m in &mut self.messages {
            let before = m.fragments.len();
            m.fragments.retain(|q| q.message_id != message_id);
            self.fragments -= before - m.fragments.len();
        }
        self.messages.retain(|m| !m.fragments.is_empty());
    }
}

pub struct Client {
    keys: ClientKeys,
    gateway_identity: [u8; 32],
    config: ClientConfig,
    rng: StdRng,
    topology: Option<Topology>,
    connection: Connection,
    queue: SendQueue,
    transmits: VecDeque<Vec<u8>>,
    /// Events, each with the gateway deliveries to acknowledge once it is taken.
    events: VecDeque<(ClientEvent, Vec<Receipt>)>,
    /// Counts gateway connections: delivery ids mean something only on theirs.
    gateway_connection: u64,
    /// Delivery ids of the current connection to acknowledge.
    pending_acks: Vec<u64>,
    next_packet_at: Option<Duration>,
    next_cover_at: Option<Duration>,
    reassembler: Reassembler,
    stats: ClientStats,
    ack_key: AckKey,
    /// Messages given up recently, so their stragglers aren't retried.
    failed: Vec<u64>,
    /// ack id -> the packet it acknowledges
    in_flight: HashMap<u64, QueuedFragment>,
    /// (deadline, ack id); entries whose ack came are skipped when popped.
    ack_deadlines: BinaryHeap<Reverse<(Duration, u64)>>,
    next_message_id: u64,
    /// The latest `now` seen, for work done inside `poll_transmit`.
    last_now: Duration,
    replies: ReplyStore,
    /// Reply fragments waiting for more SURBs, per sender tag.
    waiting_for_surbs: HashMap<SenderTag, VecDeque<(u64, Vec<u8>)>>,
}

/// Exponentially distributed with the given mean; zero mean gives zero.
pub(crate) fn sample_exp<R: Rng + ?Sized>(rng: &mut R, mean: Duration) -> Duration {
    if mean.is_zero() {
        return Duration::ZERO;
    }
    match Exp::new(1.0 / mean.as_secs_f64()) {
        Ok(exp) => Duration::from_secs_f64(exp.sample(rng).min(3600.0)),
        Err(_) => mean,
    }
}

impl Client {
    pub fn new(keys: ClientKeys, gateway_identity: [u8; 32], config: ClientConfig, rng_seed: [u8; 32]) -> Self {
        let reassembler = Reassembler::new(config.incomplete_message_timeout, config.max_message_size.saturating_mul(4));
        let ack_key = AckKey::derive(keys.secret());
        Client {
            ack_key,
            failed: Vec::new(),
            in_flight: HashMap::new(),
            ack_deadlines: BinaryHeap::new(),
            next_message_id: 1,
            last_now: Duration::ZERO,
            replies: ReplyStore::default(),
            waiting_for_surbs: HashMap::new(),
            keys,
            gateway_identity,
            config,
            rng: StdRng::from_seed(rng_seed),
            topology: None,
            connection: Connection::Down,
            queue: SendQueue::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            gateway_connection: 0,
            pending_acks: Vec::new(),
            next_packet_at: None,
            next_cover_at: None,
            reassembler,
            stats: ClientStats::default(),
        }
    }

    pub fn address(&self) -> Recipient {
        Recipient::new(*self.keys.public().as_bytes(), self.gateway_identity)
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    pub fn is_connected(&self) -> bool {
        matches!(self.connection, Connection::Up(_))
    }

    /// Fragments waiting for their turn on the main stream.
    pub fn queued_packets(&self) -> usize {
        self.queue.len()
    }

    /// Packets sent and not yet acknowledged.
    pub fn unacknowledged_packets(&self) -> usize {
        self.in_flight.len()
    }

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
    pub fn handle_gateway_connected(&mut self, now: Duration) {
        self.last_now = self.last_now.max(now);
        self.transmits.clear();
        self.gateway_connection += 1;
        self.pending_acks.clear();
        let (handshake, hello) = ClientHandshake::start(&mut self.rng, self.keys.secret(), self.gateway_identity);
        self.connection = Connection::Handshaking(handshake);
        self.transmits.push_back(hello);
    }

    /// The websocket closed. Queued messages stay queued for the next connection.
    pub fn handle_gateway_disconnected(&mut self, _now: Duration) {
        self.connection = Connection::Down;
        // Sealed for the old session: useless on a new one. Unacknowledged
        // deliveries come again on the next connection (and are recognised).
        self.transmits.clear();
        self.pending_acks.clear();
        self.next_packet_at = None;
        self.next_cover_at = None;
    }

    /// A binary frame from the gateway: the handshake, a delivery, an error.
    /// Garbage is counted and reported, never fatal to the engine.
    pub fn handle_gateway_frame(&mut self, frame: &[u8], now: Duration) {
        self.last_now = self.last_now.max(now);
        match std::mem::replace(&mut self.connection, Connection::Down) {
            Connection::Down => {}
            Connection::Handshaking(handshake) => match handshake.finish(frame) {
                Ok((session, authenticate)) => {
                    self.transmits.push_back(authenticate);
                    self.connection = Connection::Authenticating(session);
                }
                Err(e) => self.push_event(ClientEvent::HandshakeFailed(e.to_string())),
            },
            Connection::Authenticating(mut session) => {
                let response = session.open(frame).and_then(|pt| GatewayResponse::decode(&pt));
                match response {
                    Ok(GatewayResponse::Authenticated { .. }) => {
                        self.connection = Connection::Up(session);
                        self.start_streams(now);
                        self.push_event(ClientEvent::Connected);
                    }
                    Ok(GatewayResponse::Error { message }) => {
                        self.push_event(ClientEvent::HandshakeFailed(format!("gateway refused us: {message}")));
                    }
                    Ok(other) => {
                        self.connection = Connection::Authenticating(session);
                        self.handle_response(other, now);
                    }
                    Err(e) => {
                        self.connection = Connection::Authenticating(session);
                        self.stats.malformed_packets += 1;
                        self.push_event(ClientEvent::GatewayError(e.to_string()));
                    }
                }
            }
            Connection::Up(mut session) => {
                let response = session.open(frame).and_then(|pt| GatewayResponse::decode(&pt));
                self.connection = Connection::Up(session);
                match response {
                    Ok(r) => self.handle_response(r, now),
                    Err(e) => {
                        self.stats.malformed_packets += 1;
                        self.push_event(ClientEvent::GatewayError(e.to_string()));
                    }
                }
            }
        }
    }

    fn push_event(&mut self, event: ClientEvent) {
        self.events.push_back((event, Vec::new()));
    }

    /// Delivery ids to acknowledge on the current connection.
    fn release(&mut self, receipts: impl IntoIterator<Item = Receipt>) {
        let connection = self.gateway_connection;
        self.pending_acks
            .extend(receipts.into_iter().filter(|r| r.connection == connection).map(|r| r.delivery));
    }

    /// Sets of messages delivered before a restart (the shim kept them with
    /// the messages, see [`ReceivedMessage::sets`]): the gateway may deliver
    /// their fragments again, and they are not new.
    pub fn import_delivered_sets(&mut self, sets: &[u32]) {
        self.reassembler.remember_delivered(sets);
    }

    fn handle_response(&mut self, response: GatewayResponse, now: Duration) {
        match response {
            GatewayResponse::Deliver { id, payload } => {
                let receipt = Receipt { connection: self.gateway_connection, delivery: id };
                let unneeded = self.handle_payload(&payload, receipt, now);
                self.release(unneeded);
                let released = self.reassembler.take_released();
                self.release(released);
            }
            GatewayResponse::Error { message } => self.push_event(ClientEvent::GatewayError(message)),
            GatewayResponse::Authenticated { .. } => {}
        }
    }

    /// Returns the receipt when nothing waits for it (cover, acks, garbage);
    /// fragments keep theirs in the reassembler.
    fn handle_payload(&mut self, payload: &[u8], receipt: Receipt, now: Duration) -> Option<Receipt> {
        self.stats.packets_received += 1;
        if payload.len() == ack::ACK_PAYLOAD_LEN {
            match self.ack_key.open(payload) {
                Some(id) => {
                    self.stats.acks_received += 1;
                    // Unknown ids are the acks of cover packets, or late ones.
                    self.in_flight.remove(&id);
                }
                None => self.stats.malformed_packets += 1,
            }
            return Some(receipt);
        }
        let opened = if payload.len() == 16 + self.config.packet_size.sphinx_payload_size() {
            self.open_reply(payload)
        } else {
            payload::open(self.keys.secret(), payload)
        };
        match opened {
            Ok((PayloadKind::LoopCover, _)) => self.stats.cover_packets_received += 1,
            Ok((PayloadKind::Fragment, body)) => match Fragment::decode(&body) {
                // The reassembler holds or releases the receipt from here on.
                Ok(f) => {
                    match self.reassembler.insert_received(f, Some(receipt), now) {
                        Insert::Complete(message) => {
                            let completed = self.reassembler.take_completed();
                            self.handle_message(message, completed, now);
                        }
                        Insert::Duplicate => self.stats.duplicate_fragments += 1,
                        Insert::Inconsistent => self.stats.malformed_packets += 1,
                        Insert::Buffered => {}
                    }
                    return None;
                }
                Err(_) => self.stats.malformed_packets += 1,
            },
            Err(_) => self.stats.malformed_packets += 1,
        }
        Some(receipt)
    }

    /// `identifier || payload` from a SURB we made: only we can read it.
    fn open_reply(&mut self, bytes: &[u8]) -> Result<(PayloadKind, Vec<u8>)> {
        let (identifier, payload) = bytes.split_at(16);
        let identifier: [u8; 16] = identifier.try_into().map_err(|_| Error::MalformedPacket("short reply".into()))?;
        let recovery = self
            .replies
            .take_recovery(&identifier)
            .ok_or_else(|| Error::MalformedPacket("reply through an unknown or used SURB".into()))?;
        self.push_event(ClientEvent::ReplyStoreChanged);
        let payload = sphinx_packet::payload::Payload::from_bytes(payload)?;
        payload::decode_content(&recovery.recover_plaintext(payload)?)
    }

    /// A reassembled message: an application's goes out as an event that
    /// carries its receipts; anything else is done with once handled.
    fn handle_message(&mut self, message: Vec<u8>, completed: Completed, now: Duration) {
        let Completed { sets, receipts } = completed;
        let for_application = match Envelope::decode(message) {
            Ok(Envelope::Plain(m)) => Some((m, None)),
            Ok(Envelope::Repliable { sender_tag, surbs, message }) => {
                self.replies.add_surbs(sender_tag, surbs);
                self.release_waiting_replies(sender_tag);
                self.push_event(ClientEvent::ReplyStoreChanged);
                Some((message, Some(sender_tag)))
            }
            Ok(Envelope::MoreSurbs { sender_tag, surbs }) => {
                self.replies.add_surbs(sender_tag, surbs);
                self.release_waiting_replies(sender_tag);
                self.push_event(ClientEvent::ReplyStoreChanged);
                None
            }
            Ok(Envelope::SurbRequest { sender_tag, count }) => {
                match self.replies.recipient_of_tag(&sender_tag) {
                    Some(recipient) => {
                        let count = usize::from(count).min(reply::MAX_SURBS_PER_MESSAGE);
                        if let Err(e) = self.send_envelope_with_surbs(recipient, sender_tag, count, None, now) {
                            self.push_event(ClientEvent::GatewayError(format!("could not send more reply SURBs: {e}")));
                        }
                    }
                    None => self.stats.malformed_packets += 1,
                }
                None
            }
            Err(_) => {
                self.stats.malformed_packets += 1;
                None
            }
        };
        match for_application {
            Some((message, sender_tag)) => {
                self.stats.messages_received += 1;
                let event = ClientEvent::Received(ReceivedMessage { message, sender_tag, sets });
                self.events.push_back((event, receipts));
            }
            None => self.release(receipts),
        }
    }

    /// Bytes of message one packet carries.
    pub fn fragment_capacity(&self) -> usize {
        payload::body_capacity(self.config.packet_size) - fragment::HEADER_LEN
    }

    /// Queues `message` for `recipient` and returns its id (named again if
    /// it fails later). Fails at once, with nothing queued, when it can't be
    /// sent: too large, no topology yet, unknown gateway.
    pub fn send(&mut self, recipient: Recipient, message: Vec<u8>, now: Duration) -> Result<u64> {
        self.last_now = self.last_now.max(now);
        self.check_sendable(&recipient, message.len())?;
        Ok(self.enqueue_forward(recipient, &Envelope::Plain(message).encode()))
    }

    /// Like [`Client::send`], but the recipient gets a sender tag instead of
    /// our address, and `reply_surbs` single-use blocks to answer with.
    pub fn send_anonymous(&mut self, recipient: Recipient, message: Vec<u8>, reply_surbs: usize, now: Duration) -> Result<u64> {
        self.last_now = self.last_now.max(now);
        if reply_surbs > reply::MAX_SURBS_PER_MESSAGE {
            return Err(Error::MessageTooLarge { size: reply_surbs, limit: reply::MAX_SURBS_PER_MESSAGE });
        }
        self.check_sendable(&recipient, message.len() + reply_surbs * reply::SURB_LEN)?;
        let sender_tag = reply::sender_tag_for(self.keys.secret(), &recipient);
        self.send_envelope_with_surbs(recipient, sender_tag, reply_surbs, Some(message), now)
    }

    /// Makes `count` SURBs back to us and sends them to `recipient`: with
    /// `message` as an anonymous message, without as a top-up.
    fn send_envelope_with_surbs(
        &mut self,
        recipient: Recipient,
        sender_tag: SenderTag,
        count: usize,
        message: Option<Vec<u8>>,
        _now: Duration,
    ) -> Result<u64> {
        let me = self.address();
        let topology = self.topology.as_ref().ok_or_else(|| Error::NoRoute("no network topology yet".into()))?;
        let mut surbs = Vec::with_capacity(count);
        let mut recoveries = Vec::with_capacity(count);
        for _ in 0..count {
            let (surb, recovery) = reply::create_surb(&mut self.rng, topology, &me, self.config.average_hop_delay)?;
            surbs.push(surb);
            recoveries.push(recovery);
        }
        for r in &recoveries {
            self.replies.remember_recovery(r);
        }
        self.replies.remember_tag(sender_tag, recipient);
        self.push_event(ClientEvent::ReplyStoreChanged);
        let envelope = match message {
            Some(message) => Envelope::Repliable { sender_tag, surbs, message },
            None => Envelope::MoreSurbs { sender_tag, surbs },
        };
        Ok(self.enqueue_forward(recipient, &envelope.encode()))
    }

    /// Answers an anonymous message through the SURBs its sender gave us.
    /// When they run short, the last one asks the sender for more, and the
    /// rest of the reply waits for them.
    pub fn reply(&mut self, sender_tag: SenderTag, message: Vec<u8>, now: Duration) -> Result<u64> {
        self.last_now = self.last_now.max(now);
        if message.len() > self.config.max_message_size {
            return Err(Error::MessageTooLarge { size: message.len(), limit: self.config.max_message_size });
        }
        let tag_text = reply::encode_sender_tag(&sender_tag);
        if !self.replies.knows_tag(&sender_tag) {
            return Err(Error::UnknownSenderTag(tag_text));
        }
        let have = self.replies.surbs_left(&sender_tag);
        if have == 0 {
            return Err(Error::NoSurbsLeft(tag_text));
        }
        let capacity = payload::reply_body_capacity(self.config.packet_size) - fragment::HEADER_LEN;
        let fragments = fragment::split(&mut self.rng, &Envelope::Plain(message).encode(), capacity);
        let message_id = self.next_message_id;
        self.next_message_id += 1;
        let needed = fragments.len();
        // Keep one SURB to ask for more when these won't do, or would leave none.
        let ask_for_more = have <= needed + 1 && have > 1 || have < needed;
        let usable = if ask_for_more { have - 1 } else { have };
        let mut fragments = fragments.into_iter().map(|f| f.encode());
        let mut queued = Vec::with_capacity(usable.min(needed) + 1);
        for fragment in fragments.by_ref().take(usable.min(needed)) {
            if let Some(surb) = self.replies.take_surb(&sender_tag) {
                queued.push(QueuedFragment { message_id, via: Via::Surb(surb), fragment, retransmissions: 0 });
            }
        }
        let rest: VecDeque<(u64, Vec<u8>)> = fragments.map(|f| (message_id, f)).collect();
        if ask_for_more {
            let wanted = (rest.len() + REPLY_SURB_TOP_UP).min(reply::MAX_SURBS_PER_MESSAGE) as u16;
            let request = Envelope::SurbRequest { sender_tag, count: wanted }.encode();
            // A request is a few bytes: one fragment, one SURB.
            let request = fragment::split(&mut self.rng, &request, capacity).into_iter().next();
            if let (Some(surb), Some(f)) = (self.replies.take_surb(&sender_tag), request) {
                // In this reply's turns, after its fragments (as before).
                queued.push(QueuedFragment { message_id: 0, via: Via::Surb(surb), fragment: f.encode(), retransmissions: 0 });
            }
        }
        self.queue.push_message(message_id, queued);
        if !rest.is_empty() {
            self.waiting_for_surbs.entry(sender_tag).or_default().extend(rest);
        }
        self.push_event(ClientEvent::ReplyStoreChanged);
        Ok(message_id)
    }

    /// Queues reply fragments that were waiting for SURBs we now have.
    fn release_waiting_replies(&mut self, sender_tag: SenderTag) {
        let Some(waiting) = self.waiting_for_surbs.get_mut(&sender_tag) else { return };
        while !waiting.is_empty() {
            let Some(surb) = self.replies.take_surb(&sender_tag) else { break };
            if let Some((message_id, fragment)) = waiting.pop_front() {
                self.queue.append(message_id, QueuedFragment { message_id, via: Via::Surb(surb), fragment, retransmissions: 0 });
            }
        }
        if waiting.is_empty() {
            self.waiting_for_surbs.remove(&sender_tag);
        }
    }

    /// Unused SURBs we hold for answering `sender_tag`.
    pub fn reply_surbs_left(&self, sender_tag: &SenderTag) -> usize {
        self.replies.surbs_left(sender_tag)
    }

    /// The reply state to persist (SURBs we hold, keys to read replies).
    pub fn export_reply_store(&self) -> Vec<u8> {
        self.replies.to_bytes()
    }

    /// Restores what [`Client::export_reply_store`] saved.
    pub fn import_reply_store(&mut self, bytes: &[u8]) -> Result<()> {
        self.replies = ReplyStore::from_bytes(bytes)?;
        Ok(())
    }

    fn check_sendable(&self, recipient: &Recipient, len: usize) -> Result<()> {
        if len > self.config.max_message_size {
            return Err(Error::MessageTooLarge { size: len, limit: self.config.max_message_size });
        }
        let topology = self.topology.as_ref().ok_or_else(|| Error::NoRoute("no network topology yet".into()))?;
        if topology.gateway(&recipient.gateway_key).is_none() {
            return Err(Error::NoRoute(format!(
                "the recipient's gateway {} is not in the network topology",
                crate::address::encode_key(&recipient.gateway_key)
            )));
        }
        Ok(())
    }

    fn enqueue_forward(&mut self, recipient: Recipient, message: &[u8]) -> u64 {
        let capacity = self.fragment_capacity();
        let message_id = self.next_message_id;
        self.next_message_id += 1;
        let fragments = fragment::split(&mut self.rng, message, capacity).into_iter().map(|f| QueuedFragment {
            message_id,
            via: Via::Forward(recipient),
            fragment: f.encode(),
            retransmissions: 0,
        });
        self.queue.push_message(message_id, fragments);
        message_id
    }

    fn start_streams(&mut self, now: Duration) {
        self.next_packet_at = (!self.config.average_packet_delay.is_zero())
            .then(|| now + sample_exp(&mut self.rng, self.config.average_packet_delay));
        self.next_cover_at = (!self.config.loop_cover_delay.is_zero())
            .then(|| now + sample_exp(&mut self.rng, self.config.loop_cover_delay));
    }

    /// The timer armed for [`Client::poll_timeout`] fired (calling it
    /// early or late is harmless): sends the Poisson stream's packets that
    /// are due, cover, retransmissions; expires stale reassemblies.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.last_now = self.last_now.max(now);
        self.stats.expired_sets += self.reassembler.expire(now) as u64;
        let released = self.reassembler.take_released();
        self.release(released);
        self.retransmit_unacknowledged(now);
        if !self.is_connected() {
            return;
        }
        for _ in 0..MAX_CATCH_UP {
            match self.next_packet_at {
                Some(at) if at <= now => {
                    self.send_next_real_or_cover();
                    self.next_packet_at = Some(at + sample_exp(&mut self.rng, self.config.average_packet_delay));
                }
                _ => break,
            }
        }
        if self.next_packet_at.is_some_and(|at| at <= now) {
            // Woke too late to make up every tick: resume from now, no burst.
            self.next_packet_at = Some(now + sample_exp(&mut self.rng, self.config.average_packet_delay));
        }
        match self.next_cover_at {
            Some(at) if at <= now => {
                self.send_cover();
                let from = if at + self.config.loop_cover_delay * MAX_CATCH_UP as u32 <= now { now } else { at };
                self.next_cover_at = Some(from + sample_exp(&mut self.rng, self.config.loop_cover_delay));
            }
            _ => {}
        }
    }

    /// Puts packets whose ack is overdue back at the head of the queue
    /// (ahead of every message's turn), or gives their message up after too
    /// many tries.
    fn retransmit_unacknowledged(&mut self, now: Duration) {
        let mut again = Vec::new();
        while let Some(Reverse((deadline, id))) = self.ack_deadlines.peek().copied() {
            if deadline > now {
                break;
            }
            self.ack_deadlines.pop();
            let Some(mut fragment) = self.in_flight.remove(&id) else { continue };
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
            if !self.failed.contains(&fragment.message_id) {
                self.queue.push_retransmission(fragment);
            }
        }
    }

    fn fail_message(&mut self, message_id: u64, recipient: Option<Recipient>, reason: String) {
        if self.failed.contains(&message_id) {
            return;
        }
        self.failed.push(message_id);
        if self.failed.len() > 1024 {
            self.failed.remove(0);
        }
        self.queue.remove(message_id);
        self.in_flight.retain(|_, f| f.message_id != message_id);
        self.push_event(ClientEvent::SendFailed { message_id, recipient, reason });
    }

    /// When [`Client::handle_timeout`] wants to run next (the next Poisson
    /// tick, cover packet, ack deadline or reassembly expiry); `None`: no
    /// timer needed. Arm one timer for it after draining the outputs.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let next_retransmission = self.ack_deadlines.peek().map(|Reverse((t, _))| *t);
        [self.next_packet_at, self.next_cover_at, self.reassembler.next_expiry(), next_retransmission]
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
        self.last_now = self.last_now.max(now);
        if let Some(ack) = self.next_ack_frame() {
            return Some(ack);
        }
        if self.transmits.is_empty() && self.config.average_packet_delay.is_zero() && self.is_connected() {
            // Unthrottled: build the next real packet only when asked, so a
            // large message never sits in memory as packets all at once.
            self.send_next_real();
        }
        self.transmits.pop_front()
    }

    /// The next event. A [`ClientEvent::Received`] taken here is the
    /// shim's to keep: its gateway acknowledgement goes out with the next
    /// [`Client::poll_transmit`].
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        let (event, receipts) = self.events.pop_front()?;
        self.release(receipts);
        Some(event)
    }

    /// One sealed `Ack` for up to [`MAX_ACK_IDS`] pending delivery ids.
    fn next_ack_frame(&mut self) -> Option<Vec<u8>> {
        if self.pending_acks.is_empty() {
            return None;
        }
        let Connection::Up(session) = &mut self.connection else { return None };
        let take = self.pending_acks.len().min(MAX_ACK_IDS);
        let ids: Vec<u64> = self.pending_acks.drain(..take).collect();
        self.stats.deliveries_acknowledged += ids.len() as u64;
        Some(session.seal(&ClientRequest::Ack { ids }.encode()))
    }

    /// How many messages take turns at once ([`SendQueue`]): as many as
    /// keep a round (one packet each) under an eighth of the incomplete
    /// message timeout on average, 1 to [`MAX_MESSAGES_IN_TURN`]. At
    /// today's rates (20 ms, 60 s) that is 64, a round of ~1.3 s.
    fn messages_in_turn(&self) -> usize {
        let delay = self.config.average_packet_delay.as_secs_f64();
        if delay <= 0.0 {
            return MAX_MESSAGES_IN_TURN;
        }
        let turns = self.config.incomplete_message_timeout.as_secs_f64() / 8.0 / delay;
        (turns as usize).clamp(1, MAX_MESSAGES_IN_TURN)
    }

    /// Most bytes of messages taking turns at once ([`SendQueue`]): half
    /// what a recipient with our `max_message_size` holds of incomplete
    /// messages (4 x `max_message_size`), the rest for its other senders.
    /// One message alone always takes turns.
    fn bytes_in_turn(&self) -> usize {
        self.config.max_message_size.saturating_mul(2)
    }

    fn send_next_real_or_cover(&mut self) {
        if !self.send_next_real() {
            self.send_cover();
        }
    }

    /// Sends the next queued fragment; false when the queue is empty or too
    /// many packets await their ack.
    fn send_next_real(&mut self) -> bool {
        while self.in_flight.len() < self.config.max_unacknowledged {
            let Some(q) = self.queue.pop(self.messages_in_turn(), self.bytes_in_turn()) else { break };
            let recipient = match &q.via {
                Via::Forward(recipient) => *recipient,
                Via::Surb(surb) => match self.build_reply_frame(surb, &q.fragment) {
                    Ok(frame) => {
                        self.stats.real_packets_sent += 1;
                        self.transmits.push_back(frame);
                        return true;
                    }
                    Err(e) => {
                        self.fail_message(q.message_id, None, e.to_string());
                        continue;
                    }
                },
            };
            let ack_id = self.rng.next_u64();
            match self.build_frame(&recipient, PayloadKind::Fragment, &q.fragment, ack_id) {
                Ok((frame, round_trip_delay)) => {
                    self.stats.real_packets_sent += 1;
                    self.transmits.push_back(frame);
                    let backoff = 1u32 << q.retransmissions.min(3);
                    let wait = (round_trip_delay.mul_f64(self.config.ack_wait_multiplier) + self.config.ack_wait_addition) * backoff;
                    self.ack_deadlines.push(Reverse((self.last_now + wait, ack_id)));
                    self.in_flight.insert(ack_id, q);
                    return true;
                }
                Err(e) => self.fail_message(q.message_id, Some(recipient), e.to_string()),
            }
        }
        false
    }

    fn send_cover(&mut self) {
        let me = self.address();
        // Its ack id is random and not tracked: the ack is dropped on arrival.
        let ack_id = self.rng.next_u64();
        if let Ok((frame, _)) = self.build_frame(&me, PayloadKind::LoopCover, &[], ack_id) {
            self.stats.cover_packets_sent += 1;
            self.transmits.push_back(frame);
        }
    }

    /// One sealed gateway frame carrying a reply fragment through `surb`.
    fn build_reply_frame(&mut self, surb: &[u8], fragment: &[u8]) -> Result<Vec<u8>> {
        let size = self.config.packet_size;
        let content = payload::encode_content(PayloadKind::Fragment, fragment, size.plaintext_size());
        let (packet, first_hop) = sphinx_packet::SURB::from_bytes(surb)?.use_surb(&content, size.sphinx_payload_size())?;
        let request = ClientRequest::Forward { next_hop: first_hop.to_bytes(), frame: mix_frame::encode(&packet.to_bytes())? };
        match &mut self.connection {
            Connection::Up(session) => Ok(session.seal(&request.encode())),
            _ => Err(Error::NotConnected),
        }
    }

    /// One sealed gateway frame carrying one Sphinx packet (with a SURB-ACK
    /// for `ack_id`) to `recipient`, and the total mixing delay of the packet
    /// and its ack.
    fn build_frame(&mut self, recipient: &Recipient, kind: PayloadKind, body: &[u8], ack_id: u64) -> Result<(Vec<u8>, Duration)> {
        if !self.is_connected() {
            return Err(Error::NotConnected);
        }
        let me = self.address();
        let topology = self.topology.as_ref().ok_or_else(|| Error::NoRoute("no network topology".into()))?;
        let hop_delay = self.config.average_hop_delay;
        let (surb_ack, ack_delay) = ack::build_surb_ack(&mut self.rng, topology, &me, &self.ack_key, ack_id, hop_delay)?;
        let route = topology.random_route(&mut self.rng, &recipient.gateway_key)?;
        let sealed = payload::seal(&mut self.rng, &PublicKey::from(recipient.client_key), kind, body, self.config.packet_size)?;
        let payload = [surb_ack.as_slice(), &sealed].concat();
        let (packet, delay) = build_sphinx_packet(&mut self.rng, &route, recipient, &payload, hop_delay, self.config.packet_size)?;
        let request = ClientRequest::Forward { next_hop: route[0].address.to_bytes(), frame: mix_frame::encode(&packet)? };
        match &mut self.connection {
            Connection::Up(session) => Ok((session.seal(&request.encode()), delay + ack_delay)),
            _ => Err(Error::NotConnected),
        }
    }
}

/// Builds the Sphinx packet bytes for `payload` along `route` (mixnodes,
/// then the recipient's gateway), with exponential per-hop delays; returns
/// the packet and the sum of its delays.
pub fn build_sphinx_packet<R: rand::CryptoRng + ?Sized>(
    rng: &mut R,
    route: &[sphinx_packet::route::Node],
    recipient: &Recipient,
    payload: &[u8],
    average_hop_delay: Duration,
    packet_size: PacketSize,
) -> Result<(Vec<u8>, Duration)> {
    let delays: Vec<Delay> = route
        .iter()
        .map(|_| Delay::new_from_nanos(sample_exp(rng, average_hop_delay).as_nanos() as u64))
        .collect();
    let destination = Destination::new(DestinationAddressBytes::from_bytes(recipient.client_key), [0u8; 16]);
    let initial_secret = StaticSecret::random_from_rng(rng);
    let packet = SphinxPacketBuilder::new()
        .with_payload_size(packet_size.sphinx_payload_size())
        .with_initial_secret(&initial_secret)
        .build_packet(payload, route, &destination, &delays)?;
    let total = delays.iter().map(|d| d.to_duration()).sum();
    Ok((packet.to_bytes(), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_samples_have_the_configured_mean() {
        let mut rng = StdRng::from_seed([1; 32]);
        let mean = Duration::from_millis(20);
        let n = 20_000;
        let total: Duration = (0..n).map(|_| sample_exp(&mut rng, mean)).sum();
        let avg = total.as_secs_f64() / n as f64;
        assert!((avg - 0.020).abs() < 0.001, "mean {avg}");
        assert_eq!(sample_exp(&mut rng, Duration::ZERO), Duration::ZERO);
    }

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
