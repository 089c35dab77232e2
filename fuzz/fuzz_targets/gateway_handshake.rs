//! The client <-> gateway protocol (`nym_wire::gateway`) fed
//! arbitrary bytes from either side. Never panics.
//!
//! Input: `selector (1 byte) || body`:
//! - 0: gateway: `GatewayHandshake::respond(body)` (any length), and
//!   `respond(body[..65])` then `verify(body[65..])` (the client's Authenticate);
//! - 1: client: `ClientHandshake::finish(body)` as the gateway's HELLO_REPLY;
//! - 2: `Session::open(body)` on an established pair, both directions, then
//!   the plaintext through `ClientRequest::decode` / `GatewayResponse::decode`;
//! - 3: `ClientRequest::decode(body)` and `GatewayResponse::decode(body)`.
//! Keys and rngs are fixed (nym_fuzz), so seeds can carry valid frames.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nym_wire::gateway::{ClientRequest, GatewayHandshake, GatewayResponse};
use nym_fuzz::{client_secret, client_start, gateway_identity, gateway_rng, session_pair};
use x25519_dalek::PublicKey;

const HELLO_LEN: usize = 65;

fn decode_both(bytes: &[u8]) {
    match ClientRequest::decode(bytes) {
        Ok(req) => assert_eq!(req.encode(), bytes, "client request encoding is canonical"),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    match GatewayResponse::decode(bytes) {
        Ok(resp) => assert_eq!(GatewayResponse::decode(&resp.encode()).as_ref(), Ok(&resp)),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let identity = gateway_identity();
    match selector % 4 {
        0 => {
            if let Ok((_, reply)) = GatewayHandshake::respond(&mut gateway_rng(), &identity, body) {
                assert_eq!(body.len(), HELLO_LEN);
                assert_eq!(reply.len(), 1 + 32 + 64);
            }
            let (hello, auth) = body.split_at(body.len().min(HELLO_LEN));
            if let Ok((pending, _)) = GatewayHandshake::respond(&mut gateway_rng(), &identity, hello) {
                match pending.verify(auth) {
                    Ok((mut session, client_key)) => {
                        // Only the holder of the client key's secret gets here.
                        assert_eq!(client_key, *PublicKey::from(&client_secret()).as_bytes());
                        let _ = session.open(auth);
                    }
                    Err(e) => assert!(!e.to_string().is_empty()),
                }
            }
        }
        1 => {
            let (hs, _) = client_start();
            match hs.finish(body) {
                Ok((_, auth)) => assert!(!auth.is_empty()),
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        }
        2 => {
            let (mut client, mut gateway, _) = session_pair();
            match client.open(body) {
                Ok(pt) => decode_both(&pt),
                Err(e) => assert!(!e.to_string().is_empty()),
            }
            match gateway.open(body) {
                Ok(pt) => decode_both(&pt),
                Err(e) => assert!(!e.to_string().is_empty()),
            }
            // The sessions still work after garbage was refused.
            let f = gateway.seal(b"x");
            let _ = client.open(&f);
        }
        _ => decode_both(body),
    }
});
