//! SURB-ACKs: how a sender learns that a packet arrived.
//!
//! Every packet's Sphinx payload starts with a SURB-ACK: the node address of
//! a first hop and a small, complete Sphinx packet routed through the mixnet
//! back to the sender's own gateway, whose payload is an acknowledgement id
//! sealed under the sender's ack key. The recipient's gateway cuts the
//! SURB-ACK off and sends the packet on, so the ack costs the recipient
//! nothing and tells the mixnodes nothing: it looks like any small packet.
//! Cover packets carry real SURB-ACKs too, so a gateway can't tell them apart.

use crate::address::Recipient;
use crate::client::build_sphinx_packet;
use crate::error::{Error, Result};
use crate::topology::Topology;
use crate::wire::mix_frame::PacketSize;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use rand::CryptoRng;
use sha2::Sha256;
use sphinx_packet::route::NodeAddressBytes;
use std::time::Duration;
use x25519_dalek::StaticSecret;

const NONCE_LEN: usize = 12;
const ID_LEN: usize = 8;
const TAG_LEN: usize = 16;
/// Plaintext payload of an ack packet: nonce, sealed id.
pub const ACK_PAYLOAD_LEN: usize = NONCE_LEN + ID_LEN + TAG_LEN;
/// First hop address + the ack packet.
pub const SURB_ACK_LEN: usize = 32 + HEADER_PLUS_ACK;
const HEADER_PLUS_ACK: usize =
    sphinx_packet::header::HEADER_SIZE + ACK_PAYLOAD_LEN + sphinx_packet::payload::PAYLOAD_OVERHEAD_SIZE;

/// Seals and opens acknowledgement ids; derived from the client's key so
/// that it needs no file of its own and survives restarts.
#[derive(Clone)]
pub struct AckKey(ChaCha20Poly1305);

impl AckKey {
    pub fn derive(client_secret: &StaticSecret) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(b"nym-ack-key-v1"), client_secret.as_bytes());
        let mut key = [0u8; 32];
        // 32 bytes is always a valid HKDF-SHA256 output length.
        let _ = hk.expand(b"surb-ack", &mut key);
        AckKey(ChaCha20Poly1305::new(Key::from_slice(&key)))
    }

    pub fn seal<R: CryptoRng + ?Sized>(&self, rng: &mut R, id: u64) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let sealed = self.0.encrypt(Nonce::from_slice(&nonce), id.to_be_bytes().as_slice()).unwrap_or_default();
        [nonce.as_slice(), &sealed].concat()
    }

    /// The id inside an ack payload, if it is one of ours.
    pub fn open(&self, payload: &[u8]) -> Option<u64> {
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

/// A SURB-ACK for `id`, routed back to `own_address`; also returns the sum
/// of its per-hop delays (for the retransmission timer).
pub fn build_surb_ack<R: CryptoRng + ?Sized>(
    rng: &mut R,
    topology: &Topology,
    own_address: &Recipient,
    key: &AckKey,
    id: u64,
    average_hop_delay: Duration,
) -> Result<(Vec<u8>, Duration)> {
    let route = topology.random_route(rng, &own_address.gateway_key)?;
    let payload = key.seal(rng, id);
    let (packet, delay) = build_sphinx_packet(rng, &route, own_address, &payload, average_hop_delay, PacketSize::Ack)?;
    let mut out = Vec::with_capacity(SURB_ACK_LEN);
    out.extend_from_slice(route[0].address.as_bytes());
    out.extend_from_slice(&packet);
    Ok((out, delay))
}

/// What a gateway finds in a final-hop payload.
#[derive(Debug, PartialEq, Eq)]
pub enum FinalPayload<'a> {
    /// An ack packet arriving at its sender's gateway: deliver as it is.
    Ack(&'a [u8]),
    /// A data or cover packet: send `ack_packet` to `ack_first_hop`,
    /// deliver `content` to the client.
    WithSurbAck { ack_first_hop: NodeAddressBytes, ack_packet: &'a [u8], content: &'a [u8] },
}

/// Splits a final-hop Sphinx payload the way the recipient's gateway must.
pub fn split_final_payload(payload: &[u8]) -> Result<FinalPayload<'_>> {
    if payload.len() == ACK_PAYLOAD_LEN {
        return Ok(FinalPayload::Ack(payload));
    }
    if payload.len() <= SURB_ACK_LEN {
        return Err(Error::MalformedPacket(format!("payload of {} bytes has no room for a SURB-ACK", payload.len())));
    }
    let mut first_hop = [0u8; 32];
    first_hop.copy_from_slice(&payload[..32]);
    Ok(FinalPayload::WithSurbAck {
        ack_first_hop: NodeAddressBytes::from_bytes(first_hop),
        ack_packet: &payload[32..SURB_ACK_LEN],
        content: &payload[SURB_ACK_LEN..],
    })
}

/// What a gateway does with a final-hop packet for one of its clients:
/// returns the bytes to deliver and, for data and cover packets, the ack
/// packet (as a mix frame) with the address to send it to.
///
/// A payload whose plaintext can't be recovered is a reply through a SURB:
/// only the client can read it, so it gets `identifier || payload` as is.
pub fn gateway_final_hop(
    identifier: [u8; 16],
    payload: sphinx_packet::payload::Payload,
) -> Result<(Vec<u8>, Option<(NodeAddressBytes, Vec<u8>)>)> {
    let raw = payload.as_bytes().to_vec();
    let Ok(plaintext) = payload.recover_plaintext() else {
        return Ok(([identifier.as_slice(), &raw].concat(), None));
    };
    match split_final_payload(&plaintext)? {
        FinalPayload::Ack(ack) => Ok((ack.to_vec(), None)),
        FinalPayload::WithSurbAck { ack_first_hop, ack_packet, content } => {
            let frame = crate::wire::mix_frame::encode(ack_packet)?;
            Ok((content.to_vec(), Some((ack_first_hop, frame))))
        }
    }
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

    #[test]
    fn final_payloads_split_by_size() {
        assert!(matches!(split_final_payload(&[0; ACK_PAYLOAD_LEN]), Ok(FinalPayload::Ack(_))));
        assert!(split_final_payload(&[0; 100]).is_err());
        let p = vec![3u8; 2048];
        match split_final_payload(&p).unwrap() {
            FinalPayload::WithSurbAck { ack_packet, content, .. } => {
                assert_eq!(ack_packet.len(), PacketSize::Ack.packet_len());
                assert_eq!(content.len(), 2048 - SURB_ACK_LEN);
            }
            other => panic!("{other:?}"),
        }
    }
}
