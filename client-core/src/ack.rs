//! SURB-ACKs: how a sender learns that a packet arrived.
//!
//! Every packet's Sphinx payload starts with a SURB-ACK: the node address of
//! a first hop and a small, complete Sphinx packet routed through the mixnet
//! back to the sender's own gateway, whose payload is an acknowledgement id
//! sealed under the sender's ack key. The recipient's gateway cuts the
//! SURB-ACK off and sends the packet on, so the ack costs the recipient
//! nothing and tells the mixnodes nothing: it looks like any small packet.
//! Cover packets carry real SURB-ACKs too, so a gateway can't tell them apart.
//!
//! The sizes and the gateway's side (splitting a final-hop payload) are shared
//! with the servers: they live in `nym_wire::surb_ack`. This module is the
//! sender's side: the ack key, building SURB-ACKs.

use crate::address::Recipient;
use crate::packet::build_sphinx_packet;
use crate::error::Result;
use nym_wire::topology::Topology;
use nym_wire::mix_frame::PacketSize;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use rand::CryptoRng;
use sha2::Sha256;
use std::time::Duration;
use x25519_dalek::StaticSecret;

// The sizes and the gateway's side are shared with the servers.
pub(crate) use nym_wire::surb_ack::{ACK_PAYLOAD_LEN, SURB_ACK_LEN};

const NONCE_LEN: usize = 12;
const ID_LEN: usize = 8;
const TAG_LEN: usize = 16;
// An ack payload is a nonce and a sealed id: the length the gateways expect.
const _: () = assert!(NONCE_LEN + ID_LEN + TAG_LEN == ACK_PAYLOAD_LEN);

/// Seals and opens acknowledgement ids; derived from the client's key so
/// that it needs no file of its own and survives restarts.
#[derive(Clone)]
pub(crate) struct AckKey(ChaCha20Poly1305);

impl AckKey {
    pub(crate) fn derive(client_secret: &StaticSecret) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(b"nym-ack-key-v1"), client_secret.as_bytes());
        let mut key = [0u8; 32];
        // 32 bytes is always a valid HKDF-SHA256 output length.
        let _ = hk.expand(b"surb-ack", &mut key);
        AckKey(ChaCha20Poly1305::new(Key::from_slice(&key)))
    }

    pub(crate) fn seal<R: CryptoRng + ?Sized>(&self, rng: &mut R, id: u64) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let sealed = self.0.encrypt(Nonce::from_slice(&nonce), id.to_be_bytes().as_slice()).unwrap_or_default();
        [nonce.as_slice(), &sealed].concat()
    }

    /// The id inside an ack payload, if it is one of ours.
    pub(crate) fn open(&self, payload: &[u8]) -> Option<u64> {
        if payload.len() != ACK_PAYLOAD_LEN {
            return None;
        }
        let (nonce, sealed) = payload.split_at(NONCE_LEN);
        let id = self.0.decrypt(Nonce::from_slice(nonce), sealed).ok()?;
        Some(u64::from_be_bytes(id.try_into().ok()?))
    }
}

impl std::fmt::Debug for AckKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AckKey(..)")
    }
}

/// A SURB-ACK for `id`, routed back to `own_address` with the keys of
/// `epoch` (the packet carrying it must be built for the same epoch: the
/// recipient's gateway frames the ack with the packet's epoch); also returns
/// the sum of its per-hop delays (for the retransmission timer).
pub(crate) fn build_surb_ack<R: CryptoRng + ?Sized>(
    rng: &mut R,
    topology: &Topology,
    own_address: &Recipient,
    key: &AckKey,
    id: u64,
    average_hop_delay: Duration,
    epoch: nym_wire::epoch::KeyEpoch,
) -> Result<(Vec<u8>, Duration)> {
    let route = topology.random_route(rng, &own_address.gateway_key, epoch)?;
    let payload = key.seal(rng, id);
    let (packet, delay) = build_sphinx_packet(rng, &route, own_address, &payload, average_hop_delay, PacketSize::Ack)?;
    let mut out = Vec::with_capacity(SURB_ACK_LEN);
    out.extend_from_slice(route[0].address.as_bytes());
    out.extend_from_slice(&packet);
    Ok((out, delay))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn ack_ids_round_trip_only_under_their_key() {
        let mut rng = rand::rngs::StdRng::from_seed([1; 32]);
        let a = AckKey::derive(&StaticSecret::from([1; 32]));
        let b = AckKey::derive(&StaticSecret::from([2; 32]));
        let sealed = a.seal(&mut rng, 0xDEAD_BEEF);
        assert_eq!(sealed.len(), ACK_PAYLOAD_LEN);
        assert_eq!(a.open(&sealed), Some(0xDEAD_BEEF));
        assert_eq!(b.open(&sealed), None);
        assert_eq!(a.open(&sealed[1..]), None);
        assert_eq!(PacketSize::Ack.packet_len() + 32, SURB_ACK_LEN);
    }
}
