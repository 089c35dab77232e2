//! Framing of Sphinx packets between nodes (and inside gateway `Forward`
//! requests): one flag byte naming the packet size, the 4-byte big-endian
//! key epoch the packet was built for ([`crate::epoch`]), then the packet.
//!
//! Packet sizes are fixed per flag, so a frame needs no length field and every
//! packet of one size looks alike on the wire. An unknown flag means the
//! stream has lost its framing; the receiver must drop the connection. The
//! epoch tells the node which of its Sphinx keys (and replay filters) to use;
//! every hop of one packet uses the same epoch.

use crate::epoch::KeyEpoch;
use crate::error::{Error, Result};
use sphinx_packet::header::HEADER_SIZE;
use sphinx_packet::payload::PAYLOAD_OVERHEAD_SIZE;

/// Plaintext payload of an ack packet ([`PacketSize::Ack`]): a 12-byte
/// nonce, then an 8-byte id sealed with ChaCha20-Poly1305 (16-byte tag).
/// What SURB-ACKs carry ([`crate::surb_ack`]).
pub const ACK_PAYLOAD_LEN: usize = 12 + 8 + 16;

/// The sizes of packet a node accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum PacketSize {
    /// 2048-byte plaintext payload, a 2413-byte packet: Nym's default.
    #[default]
    Regular = 1,
    /// The small packets of SURB-ACKs: an encrypted acknowledgement id.
    Ack = 2,
    /// 8 KiB plaintext payload.
    Extended8 = 3,
    /// 16 KiB plaintext payload.
    Extended16 = 4,
    /// 32 KiB plaintext payload.
    Extended32 = 5,
}

impl PacketSize {
    /// Every size, in flag order.
    pub const ALL: [PacketSize; 5] = [
        PacketSize::Regular,
        PacketSize::Ack,
        PacketSize::Extended8,
        PacketSize::Extended16,
        PacketSize::Extended32,
    ];

    /// The size a frame's flag byte names, if any.
    pub fn from_flag(flag: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|s| *s as u8 == flag)
    }

    /// The flag byte that starts a frame of this size.
    pub fn flag(self) -> u8 {
        self as u8
    }

    /// Bytes of plaintext a packet of this size carries to its destination.
    pub fn plaintext_size(self) -> usize {
        match self {
            PacketSize::Regular => 2048,
            PacketSize::Ack => ACK_PAYLOAD_LEN,
            PacketSize::Extended8 => 8 * 1024,
            PacketSize::Extended16 => 16 * 1024,
            PacketSize::Extended32 => 32 * 1024,
        }
    }

    /// The `payload_size` argument of sphinx-packet's builder.
    pub fn sphinx_payload_size(self) -> usize {
        self.plaintext_size() + PAYLOAD_OVERHEAD_SIZE
    }

    /// Length of the whole Sphinx packet (header + payload).
    pub fn packet_len(self) -> usize {
        HEADER_SIZE + self.sphinx_payload_size()
    }

    /// Length of the whole frame on the wire: [`FRAME_HEADER_LEN`] + the packet.
    pub fn frame_len(self) -> usize {
        FRAME_HEADER_LEN + self.packet_len()
    }

    /// The size whose packets are `len` bytes long, if any.
    pub fn from_packet_len(len: usize) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.packet_len() == len)
    }

    /// Its name in configuration files and messages.
    pub fn name(self) -> &'static str {
        match self {
            PacketSize::Regular => "regular",
            PacketSize::Ack => "ack",
            PacketSize::Extended8 => "extended8",
            PacketSize::Extended16 => "extended16",
            PacketSize::Extended32 => "extended32",
        }
    }

    /// Sizes a client may choose for its data packets (not `Ack`).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().filter(|s| *s != PacketSize::Ack).find(|s| s.name() == name)
    }
}

/// Bytes before the packet: the size flag and the epoch.
pub const FRAME_HEADER_LEN: usize = 1 + 4;

/// `flag || epoch || packet`. Fails when the packet's length is not one of the sizes.
pub fn encode(packet: &[u8], epoch: KeyEpoch) -> Result<Vec<u8>> {
    let size = PacketSize::from_packet_len(packet.len()).ok_or_else(|| {
        Error::MalformedFrame(format!("{} bytes is no known packet size", packet.len()))
    })?;
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + packet.len());
    out.push(size.flag());
    out.extend_from_slice(&epoch.to_be_bytes());
    out.extend_from_slice(packet);
    Ok(out)
}

/// One packet read from a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MixPacket {
    /// Its size, from the frame's flag.
    pub size: PacketSize,
    /// The key epoch it was built for.
    pub epoch: KeyEpoch,
    /// The Sphinx packet's bytes.
    pub packet: Vec<u8>,
}

/// A packet's tag: its first 32 bytes (the Sphinx header's group element,
/// fresh for every packet), by which a gateway names a packet it refused.
pub fn packet_tag(packet: &[u8]) -> [u8; 32] {
    let mut tag = [0u8; 32];
    let n = packet.len().min(32);
    tag[..n].copy_from_slice(&packet[..n]);
    tag
}

/// Splits one whole frame (as carried inside a message) into size, epoch and packet.
pub fn decode(frame: &[u8]) -> Result<(PacketSize, KeyEpoch, &[u8])> {
    let (&flag, rest) = frame
        .split_first()
        .ok_or_else(|| Error::MalformedFrame("empty frame".into()))?;
    let size = PacketSize::from_flag(flag)
        .ok_or_else(|| Error::MalformedFrame(format!("unknown packet size flag {flag}")))?;
    let (epoch, packet) = rest
        .split_first_chunk::<4>()
        .ok_or_else(|| Error::MalformedFrame("frame ends before its epoch".into()))?;
    if packet.len() != size.packet_len() {
        return Err(Error::MalformedFrame(format!(
            "{} packet must be {} bytes, got {}",
            size.name(),
            size.packet_len(),
            packet.len()
        )));
    }
    Ok((size, KeyEpoch::from_be_bytes(*epoch), packet))
}

/// Incremental decoder for a TCP stream of frames.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    /// A decoder holding nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes read from the stream, in order.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held that do not (yet) make a whole frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next whole packet, `Ok(None)` when more bytes are needed, or an
    /// error when the stream is corrupt (the caller drops the connection).
    pub fn next_packet(&mut self) -> Result<Option<MixPacket>> {
        let Some(&flag) = self.buf.first() else {
            return Ok(None);
        };
        let size = PacketSize::from_flag(flag)
            .ok_or_else(|| Error::MalformedFrame(format!("unknown packet size flag {flag}")))?;
        let need = size.frame_len();
        if self.buf.len() < need {
            return Ok(None);
        }
        let mut epoch = [0u8; 4];
        epoch.copy_from_slice(&self.buf[1..FRAME_HEADER_LEN]);
        let packet = self.buf[FRAME_HEADER_LEN..need].to_vec();
        self.buf.drain(..need);
        Ok(Some(MixPacket { size, epoch: KeyEpoch::from_be_bytes(epoch), packet }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn regular_packet_is_2413_bytes() {
        assert_eq!(PacketSize::Regular.packet_len(), 2413);
    }

    #[test]
    fn decoder_splits_a_stream_and_rejects_unknown_flags() {
        let p1 = vec![7u8; PacketSize::Regular.packet_len()];
        let p2 = vec![9u8; PacketSize::Extended8.packet_len()];
        let mut stream = encode(&p1, 7).unwrap();
        stream.extend(encode(&p2, 0x0102_0304).unwrap());
        assert_eq!(&stream[..FRAME_HEADER_LEN], &[1, 0, 0, 0, 7]);
        let mut d = FrameDecoder::new();
        for chunk in stream.chunks(1000) {
            d.push(chunk);
        }
        assert_eq!(d.next_packet().unwrap(), Some(MixPacket { size: PacketSize::Regular, epoch: 7, packet: p1.clone() }));
        assert_eq!(d.next_packet().unwrap(), Some(MixPacket { size: PacketSize::Extended8, epoch: 0x0102_0304, packet: p2 }));
        assert_eq!(d.next_packet().unwrap(), None);
        d.push(&[0xEE, 1, 2]);
        assert!(d.next_packet().is_err());
        assert!(encode(&[1, 2, 3], 0).is_err());
        assert!(decode(&[1, 2, 3]).is_err());
        assert!(decode(&[1, 0, 0]).is_err(), "no room for the epoch");
        let frame = encode(&p1, 9).unwrap();
        assert_eq!(decode(&frame).unwrap(), (PacketSize::Regular, 9, p1.as_slice()));
    }

    proptest! {
        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..6000)) {
            let mut d = FrameDecoder::new();
            d.push(&bytes);
            while let Ok(Some(_)) = d.next_packet() {}
            let _ = decode(&bytes);
        }
    }
}
