//! The client <-> gateway protocol, carried in binary websocket frames.
//!
//! ## Handshake (replaces 0.7.0's replayable HMAC token)
//! 1. client -> gateway `HELLO`: `0x01 || client key (x25519) || client ephemeral`
//! 2. gateway -> client `HELLO_REPLY`: `0x02 || gateway ephemeral || ed25519 signature`
//!    over the transcript (both client keys, the gateway identity, the gateway
//!    ephemeral), so the client knows it talks to the gateway in its address.
//! 3. Both derive directional keys with HKDF-SHA256 from
//!    `DH(client eph, gw eph) || DH(client key, gw eph)`. The client's first
//!    sealed frame (`Authenticate`) can only be made by the holder of the
//!    client key's private half, and the gateway's fresh ephemeral makes every
//!    handshake unique, so a recorded handshake cannot be replayed. The
//!    ephemeral-ephemeral DH gives forward secrecy.
//!
//! ## Session frames
//! `0x10 || ChaCha20-Poly1305(plaintext)`, one key per direction, the nonce a
//! per-direction counter (the websocket is ordered and reliable), so a
//! dropped, reordered or replayed frame fails to open.
//!
//! ## Delivery acknowledgements
//! Every `Deliver` carries a delivery id, a counter of that connection (not
//! the gateway's storage id, which would tell a client how much traffic the
//! gateway carries for everyone). The gateway made the message durable before
//! it pushed it, and keeps it until the client answers with an `Ack` naming
//! that id; the client acks only once the message is safe on its side
//! (handed to an application, or in its own store). Acks are batched, at most
//! [`MAX_ACK_IDS`] ids a frame. What is not acknowledged when a connection
//! ends is delivered again, with new ids, on the next one; the client drops
//! what it already has. Unknown and repeated ids change nothing.

use crate::error::{Error, Result};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use hkdf::Hkdf;
use rand::CryptoRng;
use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey, StaticSecret};

/// First byte of the client's first handshake frame.
pub const HELLO: u8 = 0x01;
/// First byte of the gateway's handshake answer.
pub const HELLO_REPLY: u8 = 0x02;
/// First byte of every frame once the session is up (then ciphertext).
pub const SEALED: u8 = 0x10;

const HELLO_LEN: usize = 1 + 32 + 32;
const HELLO_REPLY_LEN: usize = 1 + 32 + 64;
/// v2: deliveries carry ids and are acknowledged (a v1 peer fails the
/// handshake instead of misreading frames).
const TRANSCRIPT_LABEL: &[u8] = b"nym-gateway-handshake-v2";
/// Most delivery ids one `Ack` frame names.
pub const MAX_ACK_IDS: usize = 1024;

fn transcript(client_key: &[u8; 32], client_eph: &[u8; 32], gateway_identity: &[u8; 32], gateway_eph: &[u8; 32]) -> Vec<u8> {
    [TRANSCRIPT_LABEL, client_key, client_eph, gateway_identity, gateway_eph].concat()
}

fn derive_session(transcript: &[u8], dh_ee: &[u8; 32], dh_se: &[u8; 32], is_client: bool) -> Result<Session> {
    let salt = Sha256::digest(transcript);
    let hk = Hkdf::<Sha256>::new(Some(&salt), &[dh_ee.as_slice(), dh_se.as_slice()].concat());
    let mut c2g = [0u8; 32];
    let mut g2c = [0u8; 32];
    hk.expand(b"client to gateway", &mut c2g)
        .and_then(|_| hk.expand(b"gateway to client", &mut g2c))
        .map_err(|_| Error::Handshake("key derivation failed".into()))?;
    let (send, recv) = if is_client { (c2g, g2c) } else { (g2c, c2g) };
    Ok(Session {
        send: ChaCha20Poly1305::new(Key::from_slice(&send)),
        recv: ChaCha20Poly1305::new(Key::from_slice(&recv)),
        send_counter: 0,
        recv_counter: 0,
    })
}

/// `bytes` must hold at least 8 bytes (callers check lengths first).
fn u64_be(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(b)
}

fn key32(bytes: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 32];
    k.copy_from_slice(&bytes[..32]);
    k
}

/// An established, encrypted channel; each side holds one.
pub struct Session {
    send: ChaCha20Poly1305,
    recv: ChaCha20Poly1305,
    send_counter: u64,
    recv_counter: u64,
}

impl std::fmt::Debug for Session {
    // Keys are secrets: show only the counters.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Session(sent: {}, received: {})", self.send_counter, self.recv_counter)
    }
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    *Nonce::from_slice(&n)
}

impl Session {
    /// A frame carrying `plaintext` to the other side, under the next nonce.
    pub fn seal(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let n = nonce(self.send_counter);
        self.send_counter += 1;
        // Encryption with a valid key and in-memory buffer cannot fail.
        let ct = self.send.encrypt(&n, plaintext).unwrap_or_default();
        let mut out = Vec::with_capacity(1 + ct.len());
        out.push(SEALED);
        out.extend_from_slice(&ct);
        out
    }

    /// The plaintext of the other side's next frame; refuses anything not
    /// sealed by it, in order, under this session.
    pub fn open(&mut self, frame: &[u8]) -> Result<Vec<u8>> {
        match frame.split_first() {
            Some((&SEALED, ct)) => {
                let pt = self
                    .recv
                    .decrypt(&nonce(self.recv_counter), ct)
                    .map_err(|_| Error::MalformedFrame("sealed frame failed authentication".into()))?;
                self.recv_counter += 1;
                Ok(pt)
            }
            Some((tag, _)) => Err(Error::MalformedFrame(format!("expected a sealed frame, got tag {tag:#04x}"))),
            None => Err(Error::MalformedFrame("empty frame".into())),
        }
    }
}

/// The client's half of a handshake in progress.
pub struct ClientHandshake {
    client_key: StaticSecret,
    ephemeral: StaticSecret,
    gateway_identity: [u8; 32],
}

impl ClientHandshake {
    /// Starts a handshake with the gateway whose identity is in our address;
    /// returns the state and the `HELLO` frame to send.
    pub fn start<R: CryptoRng + ?Sized>(rng: &mut R, client_key: &StaticSecret, gateway_identity: [u8; 32]) -> (Self, Vec<u8>) {
        let ephemeral = StaticSecret::random_from_rng(rng);
        let mut hello = Vec::with_capacity(HELLO_LEN);
        hello.push(HELLO);
        hello.extend_from_slice(PublicKey::from(client_key).as_bytes());
        hello.extend_from_slice(PublicKey::from(&ephemeral).as_bytes());
        (ClientHandshake { client_key: client_key.clone(), ephemeral, gateway_identity }, hello)
    }

    /// Checks the gateway's reply; on success returns the session and the
    /// sealed `Authenticate` frame that completes the handshake.
    pub fn finish(self, reply: &[u8]) -> Result<(Session, Vec<u8>)> {
        if reply.len() != HELLO_REPLY_LEN || reply[0] != HELLO_REPLY {
            return Err(Error::Handshake(match reply.first() {
                Some(&SEALED) | None => "gateway did not answer the handshake".into(),
                _ => format!("malformed handshake reply ({} bytes)", reply.len()),
            }));
        }
        let gateway_eph = key32(&reply[1..33]);
        let signature = Signature::from_bytes(&reply[33..97].try_into().map_err(|_| Error::Handshake("bad signature length".into()))?);
        let identity = VerifyingKey::from_bytes(&self.gateway_identity)
            .map_err(|_| Error::Handshake("gateway identity key is not an ed25519 key".into()))?;
        let client_pub = *PublicKey::from(&self.client_key).as_bytes();
        let eph_pub = *PublicKey::from(&self.ephemeral).as_bytes();
        let t = transcript(&client_pub, &eph_pub, &self.gateway_identity, &gateway_eph);
        identity
            .verify(&t, &signature)
            .map_err(|_| Error::Handshake("gateway signature does not match its identity key".into()))?;
        let gw_eph = PublicKey::from(gateway_eph);
        let dh_ee = self.ephemeral.diffie_hellman(&gw_eph);
        let dh_se = self.client_key.diffie_hellman(&gw_eph);
        let mut session = derive_session(&t, dh_ee.as_bytes(), dh_se.as_bytes(), true)?;
        let auth = session.seal(&ClientRequest::Authenticate.encode());
        Ok((session, auth))
    }
}

/// The gateway's half, between `HELLO_REPLY` and the client's `Authenticate`.
pub struct GatewayHandshake {
    client_key: [u8; 32],
    session: Session,
}

impl GatewayHandshake {
    /// Answers a `HELLO`; returns the state and the `HELLO_REPLY` frame.
    pub fn respond<R: CryptoRng + ?Sized>(rng: &mut R, identity: &SigningKey, hello: &[u8]) -> Result<(Self, Vec<u8>)> {
        if hello.len() != HELLO_LEN || hello[0] != HELLO {
            return Err(Error::Handshake(format!("expected a {HELLO_LEN}-byte HELLO, got {} bytes", hello.len())));
        }
        let client_key = key32(&hello[1..33]);
        let client_eph = key32(&hello[33..65]);
        let ephemeral = StaticSecret::random_from_rng(rng);
        let eph_pub = *PublicKey::from(&ephemeral).as_bytes();
        let t = transcript(&client_key, &client_eph, identity.verifying_key().as_bytes(), &eph_pub);
        let signature = identity.sign(&t);
        let dh_ee = ephemeral.diffie_hellman(&PublicKey::from(client_eph));
        let dh_se = ephemeral.diffie_hellman(&PublicKey::from(client_key));
        let session = derive_session(&t, dh_ee.as_bytes(), dh_se.as_bytes(), false)?;
        let mut reply = Vec::with_capacity(HELLO_REPLY_LEN);
        reply.push(HELLO_REPLY);
        reply.extend_from_slice(&eph_pub);
        reply.extend_from_slice(&signature.to_bytes());
        Ok((GatewayHandshake { client_key, session }, reply))
    }

    /// Verifies the client's first sealed frame; on success the client has
    /// proven it holds the private key of `client_key`.
    pub fn verify(mut self, frame: &[u8]) -> Result<(Session, [u8; 32])> {
        let pt = self
            .session
            .open(frame)
            .map_err(|_| Error::Handshake("client could not prove its key".into()))?;
        match ClientRequest::decode(&pt)? {
            ClientRequest::Authenticate => Ok((self.session, self.client_key)),
            _ => Err(Error::Handshake("expected Authenticate".into())),
        }
    }
}

/// What a client asks of its gateway, inside sealed frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientRequest {
    /// Completes the handshake: the client proves its key (the handshake's
    /// last frame, sealed).
    Authenticate,
    /// Send `frame` (a [`super::mix_frame`] frame) to the node at `next_hop`
    /// (a Sphinx node address).
    Forward {
        /// The first mixnode's Sphinx node address.
        next_hop: [u8; 32],
        /// The packet, framed for that node.
        frame: Vec<u8>,
    },
    /// These deliveries (ids from [`GatewayResponse::Deliver`]) are safe on
    /// the client's side; the gateway may forget them. 1 to [`MAX_ACK_IDS`].
    Ack {
        /// Delivery ids of this connection.
        ids: Vec<u64>,
    },
}

/// What a gateway tells its client, inside sealed frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayResponse {
    /// Handshake done; `stored` messages are about to follow.
    Authenticated {
        /// Messages stored for the client, delivered next.
        stored: u32,
    },
    /// The plaintext of a Sphinx payload addressed to this client, kept by
    /// the gateway until an `Ack` names `id`.
    Deliver {
        /// Names the delivery in the client's `Ack` (this connection only).
        id: u64,
        /// The payload, as the final hop left it.
        payload: Vec<u8>,
    },
    /// The gateway refuses something (the authentication, a request).
    Error {
        /// Why, for people.
        message: String,
    },
    /// A `Forward` whose first hop the gateway does not send to (not a
    /// layer-1 mixnode of its current topology): nothing was sent. `packet`
    /// is that packet's [`crate::mix_frame::packet_tag`], so the client can
    /// send it again on a live route, and learns the node is gone.
    Refused {
        /// The first hop it refused, as the `Forward` named it.
        next_hop: [u8; 32],
        /// The refused packet's tag.
        packet: [u8; 32],
    },
}

const REQ_AUTHENTICATE: u8 = 0x01;
const REQ_FORWARD: u8 = 0x02;
const REQ_ACK: u8 = 0x03;
const RESP_AUTHENTICATED: u8 = 0x81;
const RESP_DELIVER: u8 = 0x82;
const RESP_ERROR: u8 = 0x83;
const RESP_REFUSED: u8 = 0x84;

impl ClientRequest {
    /// The plaintext a sealed frame carries: a type byte, then the fields.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ClientRequest::Authenticate => vec![REQ_AUTHENTICATE],
            ClientRequest::Forward { next_hop, frame } => [&[REQ_FORWARD][..], next_hop, frame].concat(),
            ClientRequest::Ack { ids } => {
                let mut out = Vec::with_capacity(1 + 8 * ids.len());
                out.push(REQ_ACK);
                for id in ids {
                    out.extend_from_slice(&id.to_be_bytes());
                }
                out
            }
        }
    }

    /// Reads what [`ClientRequest::encode`] wrote; refuses anything else.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        match bytes.split_first() {
            Some((&REQ_AUTHENTICATE, [])) => Ok(ClientRequest::Authenticate),
            Some((&REQ_FORWARD, rest)) if rest.len() > 32 => Ok(ClientRequest::Forward {
                next_hop: key32(rest),
                frame: rest[32..].to_vec(),
            }),
            Some((&REQ_ACK, rest)) if !rest.is_empty() && rest.len() % 8 == 0 && rest.len() / 8 <= MAX_ACK_IDS => {
                Ok(ClientRequest::Ack { ids: rest.chunks_exact(8).map(u64_be).collect() })
            }
            Some((&REQ_ACK, rest)) => Err(Error::MalformedFrame(format!(
                "an ack must name 1 to {MAX_ACK_IDS} 8-byte delivery ids, got {} bytes",
                rest.len()
            ))),
            Some((tag, _)) => Err(Error::MalformedFrame(format!("bad client request (tag {tag:#04x}, {} bytes)", bytes.len()))),
            None => Err(Error::MalformedFrame("empty client request".into())),
        }
    }
}

impl GatewayResponse {
    /// The plaintext a sealed frame carries: a type byte, then the fields.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            GatewayResponse::Authenticated { stored } => [&[RESP_AUTHENTICATED][..], &stored.to_be_bytes()].concat(),
            GatewayResponse::Deliver { id, payload } => [&[RESP_DELIVER][..], &id.to_be_bytes(), payload].concat(),
            GatewayResponse::Error { message } => [&[RESP_ERROR][..], message.as_bytes()].concat(),
            GatewayResponse::Refused { next_hop, packet } => [&[RESP_REFUSED][..], next_hop, packet].concat(),
        }
    }

    /// Reads what [`GatewayResponse::encode`] wrote; refuses anything else.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        match bytes.split_first() {
            Some((&RESP_AUTHENTICATED, rest)) if rest.len() == 4 => Ok(GatewayResponse::Authenticated {
                stored: u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]),
            }),
            Some((&RESP_DELIVER, rest)) if rest.len() >= 8 => {
                Ok(GatewayResponse::Deliver { id: u64_be(&rest[..8]), payload: rest[8..].to_vec() })
            }
            Some((&RESP_ERROR, rest)) => Ok(GatewayResponse::Error { message: String::from_utf8_lossy(rest).into_owned() }),
            Some((&RESP_REFUSED, rest)) if rest.len() == 64 => {
                Ok(GatewayResponse::Refused { next_hop: key32(rest), packet: key32(&rest[32..]) })
            }
            Some((tag, _)) => Err(Error::MalformedFrame(format!("bad gateway response (tag {tag:#04x}, {} bytes)", bytes.len()))),
            None => Err(Error::MalformedFrame("empty gateway response".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn setup() -> (rand::rngs::StdRng, StaticSecret, SigningKey) {
        let mut rng = rand::rngs::StdRng::from_seed([5; 32]);
        let client = StaticSecret::random_from_rng(&mut rng);
        let gw = SigningKey::from_bytes(&[6; 32]);
        (rng, client, gw)
    }

    #[test]
    fn handshake_establishes_matching_sessions() {
        let (mut rng, client, gw) = setup();
        let (hs, hello) = ClientHandshake::start(&mut rng, &client, gw.verifying_key().to_bytes());
        let (pending, reply) = GatewayHandshake::respond(&mut rng, &gw, &hello).unwrap();
        let (mut c, auth) = hs.finish(&reply).unwrap();
        let (mut g, key) = pending.verify(&auth).unwrap();
        assert_eq!(key, *PublicKey::from(&client).as_bytes());
        let f = c.seal(b"to gateway");
        assert_eq!(g.open(&f).unwrap(), b"to gateway");
        let f = g.seal(b"to client");
        assert_eq!(c.open(&f).unwrap(), b"to client");
        // a replayed frame fails: the counter moved on
        assert!(c.open(&f).is_err());
    }

    #[test]
    fn wrong_gateway_identity_is_detected() {
        let (mut rng, client, gw) = setup();
        let impostor = SigningKey::from_bytes(&[7; 32]);
        let (hs, hello) = ClientHandshake::start(&mut rng, &client, gw.verifying_key().to_bytes());
        let (_, reply) = GatewayHandshake::respond(&mut rng, &impostor, &hello).unwrap();
        assert!(hs.finish(&reply).unwrap_err().to_string().contains("signature"));
    }

    #[test]
    fn claiming_someone_elses_key_fails_and_replay_fails() {
        let (mut rng, client, gw) = setup();
        let victim = PublicKey::from(&StaticSecret::random_from_rng(&mut rng));
        // The attacker sends the victim's public key but only knows its own secret.
        let (hs, mut hello) = ClientHandshake::start(&mut rng, &client, gw.verifying_key().to_bytes());
        hello[1..33].copy_from_slice(victim.as_bytes());
        let (pending, reply) = GatewayHandshake::respond(&mut rng, &gw, &hello).unwrap();
        // its signature check fails (transcript differs) ...
        assert!(hs.finish(&reply).is_err());

        // ... and replaying an honest client's recorded handshake fails too.
        let (hs, hello) = ClientHandshake::start(&mut rng, &client, gw.verifying_key().to_bytes());
        let (_, reply) = GatewayHandshake::respond(&mut rng, &gw, &hello).unwrap();
        let (_, auth) = hs.finish(&reply).unwrap();
        let (fresh, _) = GatewayHandshake::respond(&mut rng, &gw, &hello).unwrap();
        assert!(fresh.verify(&auth).is_err());
        drop(pending);
    }

    #[test]
    fn messages_round_trip_and_garbage_is_an_error() {
        for r in [
            ClientRequest::Forward { next_hop: [3; 32], frame: vec![1, 2, 3] },
            ClientRequest::Ack { ids: vec![1, u64::MAX, 7] },
            ClientRequest::Ack { ids: (0..MAX_ACK_IDS as u64).collect() },
        ] {
            assert_eq!(ClientRequest::decode(&r.encode()).unwrap(), r);
        }
        // empty, ragged and oversized acks are errors
        assert!(ClientRequest::decode(&[REQ_ACK]).is_err());
        assert!(ClientRequest::decode(&[REQ_ACK, 1, 2, 3]).is_err());
        let too_many = ClientRequest::Ack { ids: vec![0; MAX_ACK_IDS + 1] }.encode();
        assert!(ClientRequest::decode(&too_many).is_err());
        assert!(GatewayResponse::decode(&[RESP_DELIVER, 1, 2]).is_err());
        for resp in [
            GatewayResponse::Authenticated { stored: 7 },
            GatewayResponse::Deliver { id: 42, payload: vec![9; 100] },
            GatewayResponse::Deliver { id: 0, payload: vec![] },
            GatewayResponse::Error { message: "nope".into() },
            GatewayResponse::Refused { next_hop: [4; 32], packet: [5; 32] },
        ] {
            assert_eq!(GatewayResponse::decode(&resp.encode()).unwrap(), resp);
        }
        assert!(GatewayResponse::decode(&[RESP_REFUSED, 1, 2]).is_err());
        assert!(ClientRequest::decode(&[]).is_err());
        assert!(ClientRequest::decode(&[REQ_FORWARD, 1]).is_err());
        assert!(GatewayResponse::decode(&[0x99]).is_err());
        let (mut rng, _, gw) = setup();
        assert!(GatewayHandshake::respond(&mut rng, &gw, &[1, 2, 3]).is_err());
    }
}
