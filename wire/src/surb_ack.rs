//! SURB-ACKs as the recipient's gateway sees them.
//!
//! Every packet's Sphinx payload starts with a SURB-ACK: the node address of
//! a first hop and a small, complete Sphinx packet routed through the mixnet
//! back to the sender's own gateway, whose payload is an acknowledgement id
//! sealed under the sender's ack key. The recipient's gateway cuts the
//! SURB-ACK off and sends the packet on ([`gateway_final_hop`]). What is
//! inside the ack payload (a nonce and a sealed id) is the sender's business:
//! only its length is shared. Building SURB-ACKs and opening acks is the
//! client's (client-core's `ack` module).

use crate::error::{Error, Result};
use sphinx_packet::route::NodeAddressBytes;

/// Plaintext payload of an ack packet (defined with the packet sizes, in
/// [`crate::mix_frame`]: the ack is one of them).
pub use crate::mix_frame::ACK_PAYLOAD_LEN;
/// First hop address + the ack packet.
pub const SURB_ACK_LEN: usize = 32 + HEADER_PLUS_ACK;
const HEADER_PLUS_ACK: usize =
    sphinx_packet::header::HEADER_SIZE + ACK_PAYLOAD_LEN + sphinx_packet::payload::PAYLOAD_OVERHEAD_SIZE;

/// What a gateway finds in a final-hop payload.
#[derive(Debug, PartialEq, Eq)]
pub enum FinalPayload<'a> {
    /// An ack packet arriving at its sender's gateway: deliver as it is.
    Ack(&'a [u8]),
    /// A data or cover packet: send `ack_packet` to `ack_first_hop`,
    /// deliver `content` to the client.
    WithSurbAck {
        /// Where the ack packet goes first.
        ack_first_hop: NodeAddressBytes,
        /// The ack's Sphinx packet.
        ack_packet: &'a [u8],
        /// What the recipient client gets.
        content: &'a [u8],
    },
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
/// packet (as a mix frame) with the address to send it to. The sender built
/// the ack with the packet, for the same key `epoch`: its frame says so.
///
/// A payload whose plaintext can't be recovered is a reply through a SURB:
/// only the client can read it, so it gets `identifier || payload` as is.
pub fn gateway_final_hop(
    identifier: [u8; 16],
    payload: sphinx_packet::payload::Payload,
    epoch: crate::epoch::KeyEpoch,
) -> Result<(Vec<u8>, Option<(NodeAddressBytes, Vec<u8>)>)> {
    let raw = payload.as_bytes().to_vec();
    let Ok(plaintext) = payload.recover_plaintext() else {
        return Ok(([identifier.as_slice(), &raw].concat(), None));
    };
    match split_final_payload(&plaintext)? {
        FinalPayload::Ack(ack) => Ok((ack.to_vec(), None)),
        FinalPayload::WithSurbAck { ack_first_hop, ack_packet, content } => {
            let frame = crate::mix_frame::encode(ack_packet, epoch)?;
            Ok((content.to_vec(), Some((ack_first_hop, frame))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mix_frame::PacketSize;

    #[test]
    fn surb_ack_is_a_first_hop_and_an_ack_packet() {
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
