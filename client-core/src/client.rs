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

use crate::ack::{self, AckKey};
use crate::address::Recipient;
use crate::error::{Error, Result};
use crate::fragment::{self, Fragment, Insert, Reassembler};
use crate::keys::ClientKeys;
use crate::payload::{self, PayloadKind};
use crate::topology::Topology;
use crate::wire::gateway::{ClientHandshake, ClientRequest, GatewayResponse, Session};
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

/// Timer-driven sends to make up when the shim wakes late; more than this
/// would turn a stall into a burst an observer could see.
const MAX_CATCH_UP: usize = 4;

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
    /// Retransmissions of one packet before its message is given up.
    pub max_retransmissions: u32,
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
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The gateway accepted our handshake; traffic flows.
    Connected,
    /// A whole message for the application.
    Received(Vec<u8>),
    /// Something the application should hear about: the gateway refused us,
    /// or a frame from it was bad.
    GatewayError(String),
    /// A message (the id [`Client::send`] returned) could not be delivered.
    SendFailed { message_id: u64, recipient: Recipient, reason: String },
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
}

enum Connection {
    Down,
    Handshaking(ClientHandshake),
    /// Handshake sent; waiting for `Authenticated`.
    Authenticating(Session),
    Up(Session),
}

struct QueuedFragment {
    message_id: u64,
    recipient: Recipient,
    fragment: Vec<u8>,
    retransmissions: u32,
}

/// A packet sent and not yet acknowledged.
struct InFlight {
    fragment: QueuedFragment,
}

pub struct Client {
    keys: ClientKeys,
    gateway_identity: [u8; 32],
    config: ClientConfig,
    rng: StdRng,
    topology: Option<Topology>,
    connection: Connection,
    queue: VecDeque<QueuedFragment>,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<ClientEvent>,
    next_packet_at: Option<Duration>,
    next_cover_at: Option<Duration>,
    reassembler: Reassembler,
    stats: ClientStats,
    ack_key: AckKey,
    /// Messages given up recently, so their stragglers aren't retried.
    failed: Vec<u64>,
    /// ack id -> the packet it acknowledges
    in_flight: HashMap<u64, InFlight>,
    /// (deadline, ack id); entries whose ack came are skipped when popped.
    ack_deadlines: BinaryHeap<Reverse<(Duration, u64)>>,
    next_message_id: u64,
    /// The latest `now` seen, for work done inside `poll_transmit`.
    last_now: Duration,
}

/// Exponentially distributed with the given mean; zero mean gives zero.
fn sample_exp<R: Rng + ?Sized>(rng: &mut R, mean: Duration) -> Duration {
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
            keys,
            gateway_identity,
            config,
            rng: StdRng::from_seed(rng_seed),
            topology: None,
            connection: Connection::Down,
            queue: VecDeque::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
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

    pub fn handle_topology(&mut self, topology: Topology) {
        self.topology = Some(topology);
    }

    /// The websocket to the gateway is open: start the handshake.
    pub fn handle_gateway_connected(&mut self, now: Duration) {
        self.last_now = self.last_now.max(now);
        self.transmits.clear();
        let (handshake, hello) = ClientHandshake::start(&mut self.rng, self.keys.secret(), self.gateway_identity);
        self.connection = Connection::Handshaking(handshake);
        self.transmits.push_back(hello);
    }

    /// The websocket closed. Queued messages stay queued for the next connection.
    pub fn handle_gateway_disconnected(&mut self, _now: Duration) {
        self.connection = Connection::Down;
        // Sealed for the old session: useless on a new one.
        self.transmits.clear();
        self.next_packet_at = None;
        self.next_cover_at = None;
    }

    pub fn handle_gateway_frame(&mut self, frame: &[u8], now: Duration) {
        self.last_now = self.last_now.max(now);
        match std::mem::replace(&mut self.connection, Connection::Down) {
            Connection::Down => {}
            Connection::Handshaking(handshake) => match handshake.finish(frame) {
                Ok((session, authenticate)) => {
                    self.transmits.push_back(authenticate);
                    self.connection = Connection::Authenticating(session);
                }
                Err(e) => self.events.push_back(ClientEvent::GatewayError(e.to_string())),
            },
            Connection::Authenticating(mut session) => {
                let response = session.open(frame).and_then(|pt| GatewayResponse::decode(&pt));
                match response {
                    Ok(GatewayResponse::Authenticated { .. }) => {
                        self.connection = Connection::Up(session);
                        self.start_streams(now);
                        self.events.push_back(ClientEvent::Connected);
                    }
                    Ok(GatewayResponse::Error { message }) => {
                        self.events.push_back(ClientEvent::GatewayError(format!("gateway refused us: {message}")));
                    }
                    Ok(other) => {
                        self.connection = Connection::Authenticating(session);
                        self.handle_response(other, now);
                    }
                    Err(e) => {
                        self.connection = Connection::Authenticating(session);
                        self.stats.malformed_packets += 1;
                        self.events.push_back(ClientEvent::GatewayError(e.to_string()));
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
                        self.events.push_back(ClientEvent::GatewayError(e.to_string()));
                    }
                }
            }
        }
    }

    fn handle_response(&mut self, response: GatewayResponse, now: Duration) {
        match response {
            GatewayResponse::Deliver { payload } => self.handle_payload(&payload, now),
            GatewayResponse::Error { message } => self.events.push_back(ClientEvent::GatewayError(message)),
            GatewayResponse::Authenticated { .. } => {}
        }
    }

    fn handle_payload(&mut self, payload: &[u8], now: Duration) {
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
            return;
        }
        let opened = payload::open(self.keys.secret(), payload);
        match opened {
            Ok((PayloadKind::LoopCover, _)) => self.stats.cover_packets_received += 1,
            Ok((PayloadKind::Fragment, body)) => match Fragment::decode(&body) {
                Ok(f) => match self.reassembler.insert(f, now) {
                    Insert::Complete(message) => {
                        self.stats.messages_received += 1;
                        self.events.push_back(ClientEvent::Received(message));
                    }
                    Insert::Duplicate => self.stats.duplicate_fragments += 1,
                    Insert::Inconsistent => self.stats.malformed_packets += 1,
                    Insert::Buffered => {}
                },
                Err(_) => self.stats.malformed_packets += 1,
            },
            Err(_) => self.stats.malformed_packets += 1,
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
        if message.len() > self.config.max_message_size {
            return Err(Error::MessageTooLarge { size: message.len(), limit: self.config.max_message_size });
        }
        let topology = self.topology.as_ref().ok_or_else(|| Error::NoRoute("no network topology yet".into()))?;
        if topology.gateway(&recipient.gateway_key).is_none() {
            return Err(Error::NoRoute(format!(
                "the recipient's gateway {} is not in the network topology",
                crate::address::encode_key(&recipient.gateway_key)
            )));
        }
        let capacity = self.fragment_capacity();
        let message_id = self.next_message_id;
        self.next_message_id += 1;
        for f in fragment::split(&mut self.rng, &message, capacity) {
            self.queue.push_back(QueuedFragment { message_id, recipient, fragment: f.encode(), retransmissions: 0 });
        }
        Ok(message_id)
    }

    fn start_streams(&mut self, now: Duration) {
        self.next_packet_at = (!self.config.average_packet_delay.is_zero())
            .then(|| now + sample_exp(&mut self.rng, self.config.average_packet_delay));
        self.next_cover_at = (!self.config.loop_cover_delay.is_zero())
            .then(|| now + sample_exp(&mut self.rng, self.config.loop_cover_delay));
    }

    pub fn handle_timeout(&mut self, now: Duration) {
        self.last_now = self.last_now.max(now);
        self.stats.expired_sets += self.reassembler.expire(now) as u64;
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
        if let Some(at) = self.next_packet_at.filter(|at| *at <= now) {
            // Woke too late to make up every tick: resume from now, no burst.
            let _ = at;
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

    /// Puts packets whose ack is overdue back at the head of the queue, or
    /// gives their message up after too many tries.
    fn retransmit_unacknowledged(&mut self, now: Duration) {
        let mut again = Vec::new();
        while let Some(Reverse((deadline, id))) = self.ack_deadlines.peek().copied() {
            if deadline > now {
                break;
            }
            self.ack_deadlines.pop();
            let Some(sent) = self.in_flight.remove(&id) else { continue };
            let mut fragment = sent.fragment;
            if fragment.retransmissions >= self.config.max_retransmissions {
                self.fail_message(fragment.message_id, fragment.recipient, format!(
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
            if !self.failed_recently(fragment.message_id) {
                self.queue.push_front(fragment);
            }
        }
    }

    fn failed_recently(&self, message_id: u64) -> bool {
        // A failed message leaves nothing behind in the queue or in flight;
        // fragments retried in the same pass are filtered by fail_message.
        self.failed.contains(&message_id)
    }

    fn fail_message(&mut self, message_id: u64, recipient: Recipient, reason: String) {
        if self.failed.contains(&message_id) {
            return;
        }
        self.failed.push(message_id);
        if self.failed.len() > 1024 {
            self.failed.remove(0);
        }
        self.queue.retain(|q| q.message_id != message_id);
        self.in_flight.retain(|_, f| f.fragment.message_id != message_id);
        self.events.push_back(ClientEvent::SendFailed { message_id, recipient, reason });
    }

    pub fn poll_timeout(&self) -> Option<Duration> {
        let next_retransmission = self.ack_deadlines.peek().map(|Reverse((t, _))| *t);
        [self.next_packet_at, self.next_cover_at, self.reassembler.next_expiry(), next_retransmission]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.transmits.is_empty() && self.config.average_packet_delay.is_zero() && self.is_connected() {
            // Unthrottled: build the next real packet only when asked, so a
            // large message never sits in memory as packets all at once.
            self.send_next_real();
        }
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    fn send_next_real_or_cover(&mut self) {
        if !self.send_next_real() {
            self.send_cover();
        }
    }

    /// Sends the next queued fragment; false when the queue is empty.
    fn send_next_real(&mut self) -> bool {
        while let Some(q) = self.queue.pop_front() {
            let ack_id = self.rng.next_u64();
            match self.build_frame(&q.recipient, PayloadKind::Fragment, &q.fragment, ack_id) {
                Ok((frame, round_trip_delay)) => {
                    self.stats.real_packets_sent += 1;
                    self.transmits.push_back(frame);
                    let wait = round_trip_delay.mul_f64(self.config.ack_wait_multiplier) + self.config.ack_wait_addition;
                    self.ack_deadlines.push(Reverse((self.last_now + wait, ack_id)));
                    self.in_flight.insert(ack_id, InFlight { fragment: q });
                    return true;
                }
                Err(e) => self.fail_message(q.message_id, q.recipient, e.to_string()),
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
}
