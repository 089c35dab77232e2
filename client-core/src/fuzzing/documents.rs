//! Topology documents of any size, signed as a network of several
//! authorities signs them: for the benchmarks of what verifying one costs
//! (natively and in the browser: the same code, the same keys).
//!
//! Node `i` has the identity derived from `i`, Sphinx keys for the epoch of
//! `unix_ms` and the next, an address `127.x.y.z` (nothing listens there);
//! mixnodes are spread over the three layers in turn.

use nym_wire::address::encode_key;
use nym_wire::authority::{Authorities, Authority};
use nym_wire::epoch::epoch_at;
use nym_wire::topology::{EpochKeyJson, GatewayJson, MixNodeJson, TopologyJson};
use ed25519_dalek::SigningKey;
use x25519_dalek::{PublicKey, StaticSecret};

/// The key epoch length of the sample documents.
const EPOCH_SECS: u64 = 3600;
/// How long a sample document is valid from `unix_ms`.
const VALIDITY_MS: u64 = 3_600_000;

fn seed(kind: u8, i: u32) -> [u8; 32] {
    let mut s = [kind; 32];
    s[..4].copy_from_slice(&i.to_be_bytes());
    s
}

fn host(i: u32) -> String {
    let [_, a, b, c] = (i + 1).to_be_bytes();
    format!("127.{a}.{b}.{c}:1789")
}

fn sphinx_keys(i: u32, unix_ms: u64) -> Vec<EpochKeyJson> {
    let epoch = epoch_at(unix_ms, EPOCH_SECS * 1000);
    (epoch..=epoch + 1)
        .map(|e| {
            let mut s = seed(7, i);
            s[4..8].copy_from_slice(&e.to_be_bytes());
            EpochKeyJson::new(e, &PublicKey::from(&StaticSecret::from(s)))
        })
        .collect()
}

/// A network's worth of signed descriptors in one document, and the
/// authorities that signed it.
pub struct SampleDocument {
    /// The document's JSON text, as an authority serves it.
    pub text: String,
    /// Its authorities (threshold: a majority), every one of which signed it.
    pub authorities: Authorities,
    /// Unix milliseconds at which it is fresh.
    pub now_ms: u64,
}

/// `mixnodes` (at least 3) and `gateways` (at least 1), each descriptor
/// signed by its node, the document signed by `authorities` authorities.
pub fn sample_document(mixnodes: u32, gateways: u32, authorities: u8, unix_ms: u64) -> SampleDocument {
    let version = crate::VERSION.to_string();
    let mix_nodes = (0..mixnodes)
        .map(|i| {
            let keys = sphinx_keys(i, unix_ms);
            let mut m = MixNodeJson {
                host: host(i),
                pub_key: keys[0].key.clone(),
                sphinx_keys: keys,
                layer: (i % 3) as u8 + 1,
                version: version.clone(),
                location: "bench".into(),
                last_seen: unix_ms * 1_000_000,
                ..MixNodeJson::default()
            };
            m.sign(&SigningKey::from_bytes(&seed(1, i)), unix_ms);
            m
        })
        .collect();
    let gateway_nodes = (0..gateways)
        .map(|j| {
            let i = mixnodes + j;
            let keys = sphinx_keys(i, unix_ms);
            let mut g = GatewayJson {
                client_listener: format!("ws://{}", host(i).replace(":1789", ":9000")),
                mixnet_listener: host(i),
                sphinx_key: keys[0].key.clone(),
                sphinx_keys: keys,
                version: version.clone(),
                location: "bench".into(),
                last_seen: unix_ms * 1_000_000,
                ..GatewayJson::default()
            };
            g.sign(&SigningKey::from_bytes(&seed(1, i)), unix_ms);
            g
        })
        .collect();
    let signers: Vec<SigningKey> = (0..authorities).map(|a| SigningKey::from_bytes(&[200 + a; 32])).collect();
    let mut doc = TopologyJson {
        mix_nodes,
        gateway_nodes,
        round: unix_ms / 60_000,
        issued_at: unix_ms,
        expires_at: unix_ms + VALIDITY_MS,
        epoch_length_secs: EPOCH_SECS,
        served_by: signers.first().map(|k| encode_key(k.verifying_key().as_bytes())).unwrap_or_default(),
        ..TopologyJson::default()
    };
    for k in &signers {
        doc.sign(k);
    }
    let list = signers
        .iter()
        .enumerate()
        .map(|(n, k)| Authority { key: k.verifying_key().to_bytes(), url: format!("http://127.0.0.1:{}", 8080 + n) })
        .collect();
    SampleDocument {
        text: serde_json::to_string(&doc).unwrap_or_default(),
        // 1..=255 distinct keys and URLs: only an empty list is refused
        authorities: Authorities::new(list, None).unwrap_or_else(|_| Authorities::single([0; 32], "http://127.0.0.1:1")),
        now_ms: unix_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_document_verifies_with_every_node_and_signature() {
        let d = sample_document(30, 2, 3, 1_800_000_000_000);
        let v = crate::verify_topology(&d.text, Some(&d.authorities), d.now_ms, crate::VERSION).unwrap();
        assert_eq!(v.topology.mixnodes().count(), 30);
        assert_eq!(v.topology.gateways().len(), 2);
        assert_eq!(v.document.signers.keys.len(), 3);
    }
}
