//! The packet layer, at the bottom of the client: a Sphinx packet along a
//! route with exponential per-hop delays, and the exponential sampling the
//! traffic schedule uses too. SURB-ACKs (`ack`), replies (`reply`) and the
//! client's real and cover packets (`client`) are built on it; the sizes and
//! frames it uses are `nym-wire`'s (`wire::mix_frame`), shared with the nodes.

use crate::address::Recipient;
use crate::error::Result;
use nym_wire::mix_frame::PacketSize;
use rand::Rng;
use rand_distr::{Distribution, Exp};
use sphinx_packet::header::delays::Delay;
use sphinx_packet::route::{Destination, DestinationAddressBytes};
use sphinx_packet::SphinxPacketBuilder;
use std::time::Duration;
use x25519_dalek::StaticSecret;

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

