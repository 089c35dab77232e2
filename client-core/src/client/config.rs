//! The types a [`Client`] is configured with and reports through: its
//! configuration, its events, a received message and its counters.
//!
//! Plain data, no behaviour beyond [`ClientConfig`]'s defaults: kept apart
//! so the shims (and the driver) can read what they exchange with the
//! engine without reading the engine. All re-exported from `client`.

#[cfg(doc)]
use super::Client;
use crate::address::Recipient;
use crate::reply::SenderTag;
use nym_wire::mix_frame::PacketSize;
use std::time::Duration;

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
    /// The gateway refused a packet's first hop (a mixnode it no longer
    /// lists); the packet is sent again on a live route. Fetch the topology.
    RouteRefused { first_hop: String },
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
    /// Packets the gateway refused for a departed first hop, sent again on
    /// a live route (not counted as retransmissions).
    pub rerouted_packets: u64,
    /// Gateway deliveries acknowledged (the gateway may forget them).
    pub deliveries_acknowledged: u64,
}
