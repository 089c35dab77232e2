//! What one Sphinx payload carries from sender to recipient.
//!
//! The gateway removes the last Sphinx layer and cuts off the SURB-ACK
//! ([`crate::ack`]), so everything else is sealed again end to end: `ephemeral x25519 key (32) || ChaCha20-Poly1305(
//! kind (1) || body length (2, BE) || body || zero padding)`. The key is
//! HKDF(DH(ephemeral, recipient key)), fresh for every packet, so packets of
//! one message can't be linked by their keys and every payload is the same
//! size: a gateway can't tell cover from data, nor a last fragment from a
//! full one.

use crate::error::{Error, Result};
use nym_wire::mix_frame::PacketSize;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use rand::CryptoRng;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};

const EPHEMERAL_LEN: usize = 32;
const TAG_LEN: usize = 16;
const CONTENT_HEADER_LEN: usize = 3;
const KDF_INFO: &[u8] = b"nym-e2e-payload-v1";

/// What the payload is, readable only by its recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PayloadKind {
    /// A loop cover packet the client sent to itself; never delivered.
    LoopCover = 0,
    /// A fragment of an application message (see [`crate::fragment`]).
    Fragment = 1,
}

impl PayloadKind {
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(PayloadKind::LoopCover),
            1 => Some(PayloadKind::Fragment),
            _ => None,
        }
    }
}

/// Length of a sealed payload in a data packet of `size`: what is left
/// after the SURB-ACK the recipient's gateway cuts off.
pub(crate) fn sealed_len(size: PacketSize) -> usize {
    size.plaintext_size().saturating_sub(crate::ack::SURB_ACK_LEN)
}

/// Bytes of body a payload of `size` can carry.
pub fn body_capacity(size: PacketSize) -> usize {
    sealed_len(size).saturating_sub(EPHEMERAL_LEN + TAG_LEN + CONTENT_HEADER_LEN)
}

fn cipher(shared: &[u8; 32], ephemeral: &[u8; 32], recipient: &[u8; 32]) -> ChaCha20Poly1305 {
    let hk = Hkdf::<Sha256>::new(None, shared);
    let mut key = [0u8; 32];
    // 32 bytes is always a valid HKDF-SHA256 output length.
    let _ = hk.expand(&[KDF_INFO, ephemeral, recipient].concat(), &mut key);
    ChaCha20Poly1305::new(Key::from_slice(&key))
}

/// Seals `body` for `recipient`; the result is exactly [`sealed_len`] bytes.
pub fn seal<R: CryptoRng + ?Sized>(
    rng: &mut R,
    recipient: &PublicKey,
    kind: PayloadKind,
    body: &[u8],
    size: PacketSize,
) -> Result<Vec<u8>> {
    let capacity = body_capacity(size);
    if body.len() > capacity {
        return Err(Error::MessageTooLarge { size: body.len(), limit: capacity });
    }
    let ephemeral = StaticSecret::random_from_rng(rng);
    let ephemeral_pub = PublicKey::from(&ephemeral);
    let shared = ephemeral.diffie_hellman(recipient);
    let content = encode_content(kind, body, CONTENT_HEADER_LEN + capacity);

    // The key is fresh for every payload, so a fixed nonce is safe.
    let sealed = cipher(shared.as_bytes(), ephemeral_pub.as_bytes(), recipient.as_bytes())
        .encrypt(Nonce::from_slice(&[0u8; 12]), content.as_slice())
        .map_err(|_| nym_wire::Error::MalformedPacket("payload encryption failed".into()))?;
    let mut out = Vec::with_capacity(sealed_len(size));
    out.extend_from_slice(ephemeral_pub.as_bytes());
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens a payload addressed to `secret`'s public key.
pub fn open(secret: &StaticSecret, payload: &[u8]) -> Result<(PayloadKind, Vec<u8>)> {
    if payload.len() < EPHEMERAL_LEN + TAG_LEN + CONTENT_HEADER_LEN {
        return Err(nym_wire::Error::MalformedPacket(format!("payload of {} bytes is too short", payload.len())).into());
    }
    let mut ephemeral = [0u8; 32];
    ephemeral.copy_from_slice(&payload[..EPHEMERAL_LEN]);
    let shared = secret.diffie_hellman(&PublicKey::from(ephemeral));
    let recipient = PublicKey::from(secret);
    let content = cipher(shared.as_bytes(), &ephemeral, recipient.as_bytes())
        .decrypt(Nonce::from_slice(&[0u8; 12]), &payload[EPHEMERAL_LEN..])
        .map_err(|_| nym_wire::Error::MalformedPacket("payload failed authentication".into()))?;
    decode_content(&content)
}

/// `kind || body length || body || zeros`, exactly `len` bytes (callers
/// check that the body fits).
pub(crate) fn encode_content(kind: PayloadKind, body: &[u8], len: usize) -> Vec<u8> {
    let mut content = Vec::with_capacity(len.max(CONTENT_HEADER_LEN + body.len()));
    content.push(kind as u8);
    content.extend_from_slice(&(body.len() as u16).to_be_bytes());
    content.extend_from_slice(body);
    content.resize(len.max(content.len()), 0);
    content
}

pub(crate) fn decode_content(content: &[u8]) -> Result<(PayloadKind, Vec<u8>)> {
    let [kind, a, b, ..] = *content else {
        return Err(nym_wire::Error::MalformedPacket("payload content too short".into()).into());
    };
    let kind = PayloadKind::from_byte(kind).ok_or_else(|| nym_wire::Error::MalformedPacket(format!("unknown payload kind {kind}")))?;
    let len = usize::from(u16::from_be_bytes([a, b]));
    let body = content
        .get(CONTENT_HEADER_LEN..CONTENT_HEADER_LEN + len)
        .ok_or_else(|| nym_wire::Error::MalformedPacket("payload body length exceeds the payload".into()))?;
    Ok((kind, body.to_vec()))
}

/// Bytes of body a reply (sent through a SURB, no SURB-ACK, no end-to-end
/// layer: only the SURB's creator can read it) of `size` can carry.
pub(crate) fn reply_body_capacity(size: PacketSize) -> usize {
    size.plaintext_size() - CONTENT_HEADER_LEN
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    proptest! {
        #[test]
        fn seal_open_round_trip(body in proptest::collection::vec(any::<u8>(), 0..1564), seed in any::<[u8; 32]>()) {
            let mut rng = rand::rngs::StdRng::from_seed(seed);
            let secret = StaticSecret::random_from_rng(&mut rng);
            let sealed = seal(&mut rng, &PublicKey::from(&secret), PayloadKind::Fragment, &body, PacketSize::Regular).unwrap();
            prop_assert_eq!(sealed.len(), 2048 - crate::ack::SURB_ACK_LEN);
            prop_assert_eq!(open(&secret, &sealed).unwrap(), (PayloadKind::Fragment, body));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2100)) {
            let secret = StaticSecret::from([1u8; 32]);
            prop_assert!(open(&secret, &bytes).is_err());
        }
    }

    #[test]
    fn only_the_recipient_can_open_and_sizes_are_enforced() {
        let mut rng = rand::rngs::StdRng::from_seed([2; 32]);
        let alice = StaticSecret::random_from_rng(&mut rng);
        let eve = StaticSecret::random_from_rng(&mut rng);
        let sealed = seal(&mut rng, &PublicKey::from(&alice), PayloadKind::LoopCover, b"", PacketSize::Regular).unwrap();
        assert!(open(&eve, &sealed).is_err());
        assert_eq!(open(&alice, &sealed).unwrap().0, PayloadKind::LoopCover);
        let too_big = vec![0u8; body_capacity(PacketSize::Regular) + 1];
        assert!(seal(&mut rng, &PublicKey::from(&alice), PayloadKind::Fragment, &too_big, PacketSize::Regular).is_err());
    }
}
