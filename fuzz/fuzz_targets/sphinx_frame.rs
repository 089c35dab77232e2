//! What a mixnode does with bytes from a TCP peer: frame them
//! (`FrameDecoder`, fed in fuzzer-chosen chunk splits, and the whole-frame
//! `mix_frame::decode` used inside gateway `Forward` requests), then
//! `SphinxPacket::from_bytes` and processing with the node's key, as
//! mixnet/src/processor.rs does; the final hop's plaintext goes through
//! `payload::open` as the recipient client would. Must never panic.
//!
//! Input: `chunk seed (1 byte) || stream bytes`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nym_client_core::fuzzing::payload;
use nym_wire::topology::decode_node_address;
use nym_wire::mix_frame::{self, FrameDecoder, PacketSize};
use nym_fuzz::{client_secret, node_secret, Chunker};
use sphinx_packet::{ProcessedPacketData, SphinxPacket};

/// Packets processed per input (each costs a few scalar multiplications).
const MAX_PROCESSED: usize = 4;

fn handle(size: PacketSize, packet: &[u8]) {
    assert_eq!(packet.len(), size.packet_len(), "decoder returned a packet of the wrong length");
    let secret = node_secret();

    // `process`, as the brief's mixnode would.
    if let Ok(p) = SphinxPacket::from_bytes(packet) {
        let _ = p.process(&secret);
    }

    // processor.rs's exact path: expanded secret, replay tag, process.
    let Ok(p) = SphinxPacket::from_bytes(packet) else { return };
    let expanded = p.header.compute_expanded_shared_secret(&secret);
    let _tag = *expanded.replay_tag();
    let Ok(processed) = p.process_with_expanded_secret(&expanded) else { return };
    match processed.data {
        ProcessedPacketData::ForwardHop { next_hop_packet, next_hop_address, delay } => {
            let _ = decode_node_address(&next_hop_address);
            let _ = delay.to_duration();
            let bytes = next_hop_packet.to_bytes();
            // A processed packet keeps its size, so it must frame again.
            let frame = mix_frame::encode(&bytes, 7).expect("forwarded packet has a known size");
            let (again, epoch, _) = mix_frame::decode(&frame).expect("own frame decodes");
            assert_eq!((again, epoch), (size, 7));
        }
        ProcessedPacketData::FinalHop { destination, payload, .. } => {
            let _ = destination.as_bytes();
            if let Ok(plaintext) = payload.recover_plaintext() {
                if let Ok((_, body)) = payload::open(&client_secret(), &plaintext) {
                    assert!(body.len() <= payload::body_capacity(size));
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else { return };
    let mut budget = MAX_PROCESSED;

    // Whole frame, as inside a gateway Forward request.
    if let Ok((size, _epoch, packet)) = mix_frame::decode(stream) {
        budget -= 1;
        handle(size, packet);
    }

    // A TCP stream cut at fuzzer-chosen places.
    let mut decoder = FrameDecoder::new();
    let mut chunker = Chunker::new(seed);
    let mut rest = stream;
    let mut consumed = 0usize;
    'stream: while !rest.is_empty() {
        let n = chunker.next_len().min(rest.len());
        decoder.push(&rest[..n]);
        rest = &rest[n..];
        loop {
            match decoder.next_packet() {
                Ok(Some(mix_frame::MixPacket { size, packet, .. })) => {
                    consumed += mix_frame::FRAME_HEADER_LEN + packet.len();
                    if budget > 0 {
                        budget -= 1;
                        handle(size, &packet);
                    }
                }
                Ok(None) => break,
                // Corrupt framing: the node drops the connection.
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    break 'stream;
                }
            }
        }
        assert_eq!(consumed + decoder.pending(), stream.len() - rest.len(), "bytes lost or invented");
    }
});
