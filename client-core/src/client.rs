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
use std::collections::VecDeque;
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
    /// or a queued message could not be sent.
    GatewayError(String),
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
}

enum Connection {
    Down,
    Handshaking(ClientHandshake),
    /// Handshake sent; waiting for `Authenticated`.
    Authenticating(Session),
    Up(Session),
}

struct QueuedFragment {
    recipient: Recipient,
    fragment: Vec<u8>,
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
        Client {
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

    pub fn topology(&self) -> Option<&Topology> {
        self.topology.as_ref()
    }

    pub fn handle_topology(&mut self, topology: Topology) {
        self.topology = Some(topology);
    }

    /// The websocket to the gateway is open: start the handshake.
    pub fn handle_gateway_connected(&mut self, _now: Duration) {
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

    /// Queues `message` for `recipient`. Fails at once, with nothing queued,
    /// when it can't be sent: too large, no topology yet, unknown gateway.
    pub fn send(&mut self, recipient: Recipient, message: Vec<u8>, _now: Duration) -> Result<()> {
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
        for f in fragment::split(&mut self.rng, &message, capacity) {
            self.queue.push_back(QueuedFragment { recipient, fragment: f.encode() });
        }
        Ok(())
    }

    fn start_streams(&mut self, now: Duration) {
        self.next_packet_at = (!self.config.average_packet_delay.is_zero())
            .then(|| now + sample_exp(&mut self.rng, self.config.average_packet_delay));
        self.next_cover_at = (!self.config.loop_cover_delay.is_zero())
            .then(|| now + sample_exp(&mut self.rng, self.config.loop_cover_delay));
    }

    pub fn handle_timeout(&mut self, now: Duration) {
        self.stats.expired_sets += self.reassembler.expire(now) as u64;
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

    pub fn poll_timeout(&self) -> Option<Duration> {
        [self.next_packet_at, self.next_cover_at, self.reassembler.next_expiry()]
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
            match self.build_frame(&q.recipient, PayloadKind::Fragment, &q.fragment) {
                Ok(frame) => {
                    self.stats.real_packets_sent += 1;
                    self.transmits.push_back(frame);
                    return true;
                }
                Err(e) => {
                    self.events.push_back(ClientEvent::GatewayError(format!(
                        "a message to {} was dropped: {e}",
                        q.recipient
                    )));
                    // The rest of that message can't complete either.
                    self.queue.retain(|other| other.recipient != q.recipient);
                }
            }
        }
        false
    }

    fn send_cover(&mut self) {
        let me = self.address();
        if let Ok(frame) = self.build_frame(&me, PayloadKind::LoopCover, &[]) {
            self.stats.cover_packets_sent += 1;
            self.transmits.push_back(frame);
        }
    }

    /// One sealed gateway frame carrying one Sphinx packet to `recipient`.
    fn build_frame(&mut self, recipient: &Recipient, kind: PayloadKind, body: &[u8]) -> Result<Vec<u8>> {
        let topology = self.topology.as_ref().ok_or_else(|| Error::NoRoute("no network topology".into()))?;
        let route = topology.random_route(&mut self.rng, &recipient.gateway_key)?;
        let payload = payload::seal(&mut self.rng, &PublicKey::from(recipient.client_key), kind, body, self.config.packet_size)?;
        let packet = build_sphinx_packet(&mut self.rng, &route, recipient, &payload, self.config.average_hop_delay, self.config.packet_size)?;
        let request = ClientRequest::Forward { next_hop: route[0].address.to_bytes(), frame: mix_frame::encode(&packet)? };
        match &mut self.connection {
            Connection::Up(session) => Ok(session.seal(&request.encode())),
            _ => Err(Error::NotConnected),
        }
    }
}

/// Builds the Sphinx packet bytes for `payload` along `route` (mixnodes,
/// then the recipient's gateway), with exponential per-hop delays.
pub fn build_sphinx_packet<R: rand::CryptoRng + ?Sized>(
    rng: &mut R,
    route: &[sphinx_packet::route::Node],
    recipient: &Recipient,
    payload: &[u8],
    average_hop_delay: Duration,
    packet_size: PacketSize,
) -> Result<Vec<u8>> {
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
    Ok(packet.to_bytes())
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
