//! The types a [`Client`] is configured with and reports through: its
//! configuration, its events, a received message and its counters.
//!
//! Plain data, no behaviour beyond [`ClientConfig`]'s defaults: kept apart
//! so the shims (and the driver) can read what they exchange with the
//! engine without reading the engine.

#[cfg(doc)]
use super::Client;
use crate::address::Recipient;
use crate::reply::SenderTag;
use nym_wire::mix_frame::PacketSize;
use std::time::Duration;

/// How a [`Client`] sends: its rates, delays, sizes and limits.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    /// Mean per-hop mixing delay. Zero: no delay.
    pub average_hop_delay: Duration,
    /// Mean gap of the main Poisson stream. Zero: no throttling; queued
    /// packets go out as fast as they can be built, and this stream sends no cover.
    pub average_packet_delay: Duration,
    /// Mean gap of the loop cover stream. Zero: that stream is off.
    pub loop_cover_delay: Duration,
    /// The size of the packets it sends (every client of a network uses the same).
    pub packet_size: PacketSize,
    /// An incomplete message is dropped after this long without a fragment.
    pub incomplete_message_timeout: Duration,
    /// The largest message `send` accepts, in bytes; received messages may
    /// use four times this much buffer while being reassembled.
    pub max_message_size: usize,
    /// A packet not acknowledged within (its route delays + its ack's route
    /// delays) x `ack_wait_multiplier` + `ack_wait_addition` is sent again,
    /// on a fresh route.
    pub ack_wait_multiplier: f64,
    /// See [`ClientConfig::ack_wait_multiplier`].
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

/// What the client tells its shim ([`Client::poll_event`]).
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
    SendFailed {
        /// The id `send`, `send_anonymous` or `reply` returned.
        message_id: u64,
        /// Its recipient; `None` for a reply (the client never knew one).
        recipient: Option<Recipient>,
        /// Why, for people.
        reason: String,
    },
    /// SURBs or reply keys changed: persist [`Client::export_reply_store`].
    ReplyStoreChanged,
    /// The gateway refused a packet's first hop (a mixnode it no longer
    /// lists); the packet is sent again on a live route. Fetch the topology.
    RouteRefused {
        /// The refused mixnode's address (or why it could not be read).
        first_hop: String,
    },
}

/// A received message and what identifies it across restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The message's bytes.
    pub message: Vec<u8>,
    /// Set for an anonymous message: answer it with [`Client::reply`].
    pub sender_tag: Option<SenderTag>,
    /// The fragment sets it came in. A shim that keeps the message in its
    /// own store keeps these too and gives them back with
    /// [`Client::import_delivered_sets`] after a restart, so the same
    /// message delivered again by the gateway is recognised.
    pub sets: Vec<u32>,
}

/// Counters of what the client did, since it was made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Packets carrying a fragment (to an address or through a SURB),
    /// retransmissions included.
    pub real_packets_sent: u64,
    /// Loop cover packets sent to ourselves.
    pub cover_packets_sent: u64,
    /// Payloads the gateway delivered (acks, cover, fragments, garbage).
    pub packets_received: u64,
    /// Our loop cover packets that came home.
    pub cover_packets_received: u64,
    /// Whole messages handed to the application.
    pub messages_received: u64,
    /// Fragments that came again (a retransmission, a delivery repeated
    /// after a reconnection) and were recognised.
    pub duplicate_fragments: u64,
    /// Deliveries and frames that could not be opened or made no sense.
    pub malformed_packets: u64,
    /// Incomplete messages dropped after their timeout.
    pub expired_sets: u64,
    /// Acknowledgements of our packets that came back.
    pub acks_received: u64,
    /// Packets sent again for want of an ack (or refused and not rerouted).
    pub retransmissions: u64,
    /// Packets the gateway refused for a departed first hop, sent again on
    /// a live route (not counted as retransmissions).
    pub rerouted_packets: u64,
    /// Gateway deliveries acknowledged (the gateway may forget them).
    pub deliveries_acknowledged: u64,
}
