//! Sphinx packet creation, the same code in the browser and natively.
//!
//! One packet = what the engine does for every packet it sends before the
//! gateway framing: seal the payload end to end
//! ([`nym_client_core::fuzzing::payload::seal`]) and build the Sphinx packet
//! ([`nym_client_core::fuzzing::packet::build_sphinx_packet`]) over a route
//! of three mixnodes and a gateway of the engine's test network
//! ([`TestNetwork`]). Keys come from fixed seeds, so the browser and the
//! native run do exactly the same work.

use nym_client_core::fuzzing::packet::build_sphinx_packet;
use nym_client_core::fuzzing::payload::{self, PayloadKind};
use nym_client_core::fuzzing::TestNetwork;
use nym_client_core::{PacketSize, Recipient, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;
use sphinx_packet::route::Node;
use std::time::Duration;
use x25519_dalek::{PublicKey, StaticSecret};

/// A fixed 3-mixnode + gateway route and a recipient behind that gateway.
pub struct BenchSetup {
    route: Vec<Node>,
    recipient: Recipient,
    rng: StdRng,
}

impl BenchSetup {
    /// The test network with one mixnode per layer: its only route.
    pub fn new() -> Self {
        let network = TestNetwork::new([1, 1, 1], 1);
        let mut rng = StdRng::from_seed([5; 32]);
        let gateway = network.gateway_identity(0);
        let route = network
            .topology(0)
            .and_then(|t| Ok(t.random_route(&mut rng, &gateway, 0)?))
            .expect("the test network has a route");
        let recipient = Recipient::new(*PublicKey::from(&StaticSecret::from([11; 32])).as_bytes(), gateway);
        BenchSetup { route, recipient, rng }
    }

    /// Builds one Regular-size packet carrying `body`; returns its length.
    pub fn build_one(&mut self, body: &[u8]) -> Result<usize> {
        let size = PacketSize::Regular;
        let sealed = payload::seal(
            &mut self.rng,
            &PublicKey::from(self.recipient.client_key),
            PayloadKind::Fragment,
            body,
            size,
        )?;
        let (packet, _) = build_sphinx_packet(
            &mut self.rng,
            &self.route,
            &self.recipient,
            &sealed,
            Duration::from_millis(15),
            size,
        )?;
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
