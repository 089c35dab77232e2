//! Sphinx packet creation, the same code in the browser and natively.
//!
//! One packet = what the engine does for every packet it sends before the
//! gateway framing: seal the payload end to end
//! ([`nym_client_core::payload::seal`]) and build the Sphinx packet
//! ([`nym_client_core::client::build_sphinx_packet`]) over a synthetic route
//! of three mixnodes and a gateway. Keys come from fixed seeds, so the
//! browser and the native run do exactly the same work.

use nym_client_core::client::build_sphinx_packet;
use nym_client_core::payload::{self, PayloadKind};
use nym_client_core::topology::{EpochKeys, Gateway, MixNode};
use nym_client_core::wire::mix_frame::PacketSize;
use nym_client_core::{Recipient, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use x25519_dalek::{PublicKey, StaticSecret};

/// A fixed 3-mixnode + gateway route and a recipient behind that gateway.
pub struct BenchSetup {
    mixnodes: Vec<MixNode>,
    gateway: Gateway,
    recipient: Recipient,
    rng: StdRng,
}

fn x25519_public(seed: u8) -> PublicKey {
    PublicKey::from(&StaticSecret::from([seed; 32]))
}

/// The one key epoch of the benchmark's nodes.
const EPOCH: u32 = 0;

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

impl BenchSetup {
    pub fn new() -> Self {
        let mixnodes = (1..=3u8)
            .map(|layer| MixNode {
                address: loopback(1000 + u16::from(layer)),
                sphinx_key: x25519_public(layer),
                epoch_keys: EpochKeys::new(vec![(EPOCH, x25519_public(layer))]),
                layer,
            })
            .collect();
        let identity = ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key().to_bytes();
        let gateway = Gateway {
            identity_key: identity,
            sphinx_key: x25519_public(10),
            epoch_keys: EpochKeys::new(vec![(EPOCH, x25519_public(10))]),
            mix_address: loopback(1789),
            client_listener: "ws://127.0.0.1:9000".into(),
        };
        let recipient = Recipient::new(*x25519_public(11).as_bytes(), identity);
        BenchSetup { mixnodes, gateway, recipient, rng: StdRng::from_seed([5; 32]) }
    }

    /// Builds one Regular-size packet carrying `body`; returns its length.
    pub fn build_one(&mut self, body: &[u8]) -> Result<usize> {
        let mut route: Vec<_> = self.mixnodes.iter().filter_map(|m| m.sphinx_node(EPOCH)).collect();
        route.extend(self.gateway.sphinx_node(EPOCH));
        let size = PacketSize::Regular;
        let sealed = payload::seal(
            &mut self.rng,
            &PublicKey::from(self.recipient.client_key),
            PayloadKind::Fragment,
            body,
            size,
        )?;
        let (packet, _) =
            build_sphinx_packet(&mut self.rng, &route, &self.recipient, &sealed, Duration::from_millis(15), size)?;
        Ok(packet.len())
    }

    /// Builds `n` packets; returns the total number of bytes built.
    pub fn build(&mut self, n: u32) -> Result<usize> {
        let body = vec![0xA5u8; 1000];
        let mut total = 0;
        for _ in 0..n {
            total += self.build_one(&body)?;
        }
        Ok(total)
    }
}

impl Default for BenchSetup {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_full_size_packets() {
        let mut setup = BenchSetup::new();
        let total = setup.build(3).expect("packets");
        assert_eq!(total, 3 * PacketSize::Regular.packet_len());
    }
}
