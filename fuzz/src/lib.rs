//! Fixed keys and helpers shared by the fuzz targets and by the corpus seeder
//! (`cargo run --release --example seed_corpus`), so that seeds built with the
//! real encoders pass the MACs and signatures the targets check.

use ed25519_dalek::SigningKey;
use nym_wire::gateway::{ClientHandshake, GatewayHandshake, Session};
use rand::rngs::StdRng;
use rand::SeedableRng;
use x25519_dalek::StaticSecret;

/// The mixnode's Sphinx secret in `sphinx_frame`.
pub fn node_secret() -> StaticSecret {
    StaticSecret::from([7u8; 32])
}

/// The recipient client's secret (final-hop payloads are sealed to it).
pub fn client_secret() -> StaticSecret {
    StaticSecret::from([9u8; 32])
}

/// The gateway's ed25519 identity in `gateway_handshake`.
pub fn gateway_identity() -> SigningKey {
    SigningKey::from_bytes(&[6u8; 32])
}

/// The directory's ed25519 key in `signed_topology`: the key the target pins.
pub fn directory_identity() -> SigningKey {
    SigningKey::from_bytes(&[5u8; 32])
}

/// The wall clock (Unix ms) `signed_topology` verifies at; seeds are issued
/// just before it and expire a day after.
pub const SIGNED_TOPOLOGY_NOW_MS: u64 = 1_800_000_000_000;

/// The gateway's rng: fixed seed, so a seed corpus can hold a valid
/// `Authenticate` frame for the ephemeral the gateway will pick.
pub fn gateway_rng() -> StdRng {
    StdRng::from_seed([1u8; 32])
}

/// The client's rng (for `ClientHandshake::start`).
pub fn client_rng() -> StdRng {
    StdRng::from_seed([2u8; 32])
}

/// A client handshake in progress and its HELLO, deterministically.
pub fn client_start() -> (ClientHandshake, Vec<u8>) {
    ClientHandshake::start(&mut client_rng(), &client_secret(), gateway_identity().verifying_key().to_bytes())
}

/// An established (client, gateway) session pair, deterministically; also the
/// HELLO, HELLO_REPLY and Authenticate frames that made it.
pub fn session_pair() -> (Session, Session, [Vec<u8>; 3]) {
    let (hs, hello) = client_start();
    let (pending, reply) =
        GatewayHandshake::respond(&mut gateway_rng(), &gateway_identity(), &hello).expect("honest HELLO");
    let (client, auth) = hs.finish(&reply).expect("honest HELLO_REPLY");
    let (gateway, _) = pending.verify(&auth).expect("honest Authenticate");
    (client, gateway, [hello, reply, auth])
}

/// Chunk lengths for splitting a stream, from a one-byte seed (xorshift), so
/// the fuzzer controls where a TCP read would have cut the stream.
pub struct Chunker(u32);

impl Chunker {
    pub fn new(seed: u8) -> Self {
        Chunker(u32::from(seed).wrapping_mul(2_654_435_761) | 1)
    }

    pub fn next_len(&mut self) -> usize {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        // mostly small reads, sometimes large ones
        match x % 4 {
            0 => 1 + (x as usize >> 8) % 8,
            1 => 1 + (x as usize >> 8) % 600,
            _ => 1 + (x as usize >> 8) % 4096,
        }
    }
}

/// The three authorities' keys in `authority_consensus`.
pub fn authority_identity(i: u8) -> SigningKey {
    SigningKey::from_bytes(&[40 + i; 32])
}

/// The three authorities `authority_consensus` pins (threshold 2).
pub fn fuzz_authorities() -> nym_wire::authority::Authorities {
    let list = (0..3)
        .map(|i| nym_wire::authority::Authority {
            key: authority_identity(i).verifying_key().to_bytes(),
            url: format!("http://127.0.0.1:{}", 8080 + u16::from(i)),
        })
        .collect();
    nym_wire::authority::Authorities::new(list, None).expect("three distinct authorities")
}
