//! What anonymous replies and SURB-ACKs read from the network or disk:
//! message envelopes (SURBs inside), the persisted reply store, and a
//! gateway's split of final-hop payloads. Never panics; what decodes
//! re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nym_wire::surb_ack::{gateway_final_hop, split_final_payload, FinalPayload};
use nym_client_core::fuzzing::reply::{Envelope, ReplyStore};

fuzz_target!(|input: &[u8]| {
    if let Ok(envelope) = Envelope::decode(input.to_vec()) {
        assert_eq!(Envelope::decode(envelope.encode()).ok(), Some(envelope));
    }
    if let Ok(store) = ReplyStore::from_bytes(input) {
        let again = ReplyStore::from_bytes(&store.to_bytes());
        assert!(again.is_ok());
    }
    if let Ok(FinalPayload::WithSurbAck { ack_packet, content, .. }) = split_final_payload(input) {
        assert_eq!(32 + ack_packet.len() + content.len(), input.len());
    }
    if let Ok(payload) = sphinx_packet::payload::Payload::from_bytes(input) {
        let _ = gateway_final_hop([1; 16], payload, 7);
    }
});
