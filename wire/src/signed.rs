//! Signatures: who a node is, and what the topology says.
//!
//! A node's descriptor (its entry in the topology: addresses, keys, layer or
//! role, version) is signed by the node's long-term ed25519 identity key; the
//! directory serves every live descriptor, with its signature, in a document
//! it signs with its own key, with an issued-at time and an expiry. A client
//! pins the directory's key and believes nothing else: [`verify_topology`] is
//! the one check the client engine, the gateways and the mixnodes all run.
//!
//! Signatures cover a canonical byte string, not JSON text: a domain tag,
//! then every field as a 4-byte big-endian length and its bytes (strings as
//! they appear in the JSON, numbers as 8-byte big-endian). The layout is in
//! docs/topology-document.md.

use crate::address::{decode_key, encode_key, KEY_LENGTH};
use crate::error::{Error, Result};
use crate::topology::{EpochKeyJson, GatewayJson, MixNodeJson, Topology, TopologyJson};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

/// How far in the future a document's `issuedAt` may be before a client
/// refuses it: clocks differ, but not by more than this.
pub const MAX_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;

const MIXNODE_TAG: &[u8] = b"nym-mixnode-descriptor/2";
const GATEWAY_TAG: &[u8] = b"nym-gateway-descriptor/2";
const TOPOLOGY_TAG: &[u8] = b"nym-topology/2";

/// Canonical encoding: each field length-prefixed, so no two different
/// field lists encode alike.
struct Canonical(Vec<u8>);

impl Canonical {
    fn new(tag: &[u8]) -> Self {
        let mut c = Canonical(Vec::with_capacity(256));
        c.bytes(tag);
        c
    }

    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        // Fields come from bounded JSON bodies; a >4 GiB field can't occur,
        // and saturating keeps the encoding total anyway.
        let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(b);
        self
    }

    fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    fn u64(&mut self, n: u64) -> &mut Self {
        self.bytes(&n.to_be_bytes())
    }

    /// The count, then each key's epoch (as a u64) and key text.
    fn epoch_keys(&mut self, keys: &[EpochKeyJson]) -> &mut Self {
        self.u64(keys.len() as u64);
        for k in keys {
            self.u64(u64::from(k.epoch)).str(&k.key);
        }
        self
    }
}

fn sign(key: &SigningKey, bytes: &[u8]) -> String {
    encode_key(&key.sign(bytes).to_bytes())
}

fn parse_identity(text: &str, what: &str) -> Result<VerifyingKey> {
    let bytes = decode_key(text, what).map_err(|e| Error::Topology(e.to_string().replace("invalid address: ", "")))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| Error::Topology(format!("{what} is not an ed25519 public key")))
}

fn verify(key: &VerifyingKey, bytes: &[u8], signature: &str, what: &str) -> Result<()> {
    if signature.is_empty() {
        return Err(Error::Topology(format!("{what} is not signed")));
    }
    let raw = bs58::decode(signature).into_vec().ok().and_then(|v| <[u8; 64]>::try_from(v).ok());
    let raw = raw.ok_or_else(|| Error::Topology(format!("{what}: the signature is not 64 bytes of base58")))?;
    key.verify_strict(bytes, &Signature::from_bytes(&raw))
        .map_err(|_| Error::Topology(format!("{what}: the signature does not verify")))
}

/// A descriptor's signature checked against the identity it names; that
/// identity (the one that may change the entry) comes back.
fn verify_descriptor(identity_key: &str, bytes: &[u8], signature: &str, what: &str) -> Result<[u8; KEY_LENGTH]> {
    let key = parse_identity(identity_key, &format!("{what}: identity key"))?;
    verify(&key, bytes, signature, what)?;
    Ok(key.to_bytes())
}

impl MixNodeJson {
    /// The bytes the node's identity signs: everything but `lastSeen` (the
    /// directory's) and the signature itself.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut c = Canonical::new(MIXNODE_TAG);
        c.str(&self.identity_key).str(&self.host).str(&self.pub_key).epoch_keys(&self.sphinx_keys).bytes(&[self.layer]);
        c.str(&self.version).str(&self.location).u64(self.seq);
        c.0
    }

    /// Sets `identity_key` and `seq` and signs the descriptor.
    pub fn sign(&mut self, identity: &SigningKey, seq: u64) {
        self.identity_key = encode_key(identity.verifying_key().as_bytes());
        self.seq = seq;
        self.signature = sign(identity, &self.signed_bytes());
    }

    /// Checks the signature against the descriptor's own identity key, and
    /// returns that key: the one that may change this entry.
    pub fn verify_signature(&self) -> Result<[u8; KEY_LENGTH]> {
        verify_descriptor(&self.identity_key, &self.signed_bytes(), &self.signature, &format!("mixnode {}", self.host))
    }
}

impl GatewayJson {
    /// As [`MixNodeJson::signed_bytes`].
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut c = Canonical::new(GATEWAY_TAG);
        c.str(&self.identity_key).str(&self.client_listener).str(&self.mixnet_listener).str(&self.sphinx_key);
        c.epoch_keys(&self.sphinx_keys);
        c.str(&self.version).str(&self.location).u64(self.seq);
        c.0
    }

    /// Sets `identity_key` and `seq` and signs the descriptor.
    pub fn sign(&mut self, identity: &SigningKey, seq: u64) {
        self.identity_key = encode_key(identity.verifying_key().as_bytes());
        self.seq = seq;
        self.signature = sign(identity, &self.signed_bytes());
    }

    /// As [`MixNodeJson::verify_signature`].
    pub fn verify_signature(&self) -> Result<[u8; KEY_LENGTH]> {
        verify_descriptor(&self.identity_key, &self.signed_bytes(), &self.signature, &format!("gateway {}", self.mixnet_listener))
    }
}

impl TopologyJson {
    /// The bytes the directory signs: its key, the times, and every node
    /// descriptor in order with its signature and `lastSeen`.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut c = Canonical::new(TOPOLOGY_TAG);
        c.str(&self.directory_key).u64(self.issued_at).u64(self.expires_at).u64(self.epoch_length_secs);
        c.u64(self.mix_nodes.len() as u64);
        for m in &self.mix_nodes {
            c.bytes(&m.signed_bytes()).str(&m.signature).u64(m.last_seen);
        }
        c.u64(self.gateway_nodes.len() as u64);
        for g in &self.gateway_nodes {
            c.bytes(&g.signed_bytes()).str(&g.signature).u64(g.last_seen);
        }
        c.0
    }

    /// Sets the directory key and the times, and signs the document.
    pub fn sign(&mut self, directory: &SigningKey, issued_at_ms: u64, expires_at_ms: u64) {
        self.directory_key = encode_key(directory.verifying_key().as_bytes());
        self.issued_at = issued_at_ms;
        self.expires_at = expires_at_ms;
        self.signature = sign(directory, &self.signed_bytes());
    }

    /// Checks the directory's signature, by `pinned` when given, else by the
    /// key the document names (trust on first use); returns the key.
    pub fn verify_signature(&self, pinned: Option<&[u8; KEY_LENGTH]>) -> Result<[u8; KEY_LENGTH]> {
        if self.signature.is_empty() || self.directory_key.is_empty() {
            return Err(Error::Topology("the topology is not signed".into()));
        }
        let named = parse_identity(&self.directory_key, "the topology's directory key")?;
        if let Some(pinned) = pinned {
            if named.as_bytes() != pinned {
                return Err(Error::Topology(format!(
                    "the topology is signed by {}, not by the pinned directory key {}",
                    self.directory_key,
                    encode_key(pinned)
                )));
            }
        }
        verify(&named, &self.signed_bytes(), &self.signature, "the topology")?;
        Ok(named.to_bytes())
    }
}

/// A topology that passed every check of [`verify_topology`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedTopology {
    /// The network it describes.
    pub topology: Topology,
    /// The key that signed it (the pinned one, or the one learned on first use).
    pub directory_key: [u8; KEY_LENGTH],
    /// Unix milliseconds.
    pub issued_at: u64,
    /// Unix milliseconds.
    pub expires_at: u64,
    /// The Unix milliseconds it was checked at (the caller's wall clock).
    pub verified_at: u64,
}

/// Everything anyone who uses a topology checks, in this order: the JSON
/// parses; the document is signed by `pinned` (or, with `None`, by the key it
/// names: trust on first use, and the caller keeps the key); it is not
/// expired at `now_unix_ms` nor issued implausibly far in the future; every
/// node descriptor carries a valid signature by its own identity; and then
/// what [`Topology::from_json`] checks for `our_version`.
pub fn verify_topology(
    text: &str,
    pinned: Option<&[u8; KEY_LENGTH]>,
    now_unix_ms: u64,
    our_version: &str,
) -> Result<VerifiedTopology> {
    let json: TopologyJson =
        serde_json::from_str(text).map_err(|e| Error::Topology(format!("not topology JSON: {e}")))?;
    verify_topology_json(&json, pinned, now_unix_ms, our_version)
}

/// [`verify_topology`] of an already parsed document.
pub fn verify_topology_json(
    json: &TopologyJson,
    pinned: Option<&[u8; KEY_LENGTH]>,
    now_unix_ms: u64,
    our_version: &str,
) -> Result<VerifiedTopology> {
    let directory_key = json.verify_signature(pinned)?;
    if json.expires_at <= now_unix_ms {
        return Err(Error::Topology(format!(
            "the topology expired {} s ago",
            (now_unix_ms - json.expires_at) / 1000
        )));
    }
    if json.issued_at > now_unix_ms.saturating_add(MAX_CLOCK_SKEW_MS) {
        return Err(Error::Topology(format!(
            "the topology was issued {} s in the future (check the clocks)",
            (json.issued_at - now_unix_ms) / 1000
        )));
    }
    for m in &json.mix_nodes {
        m.verify_signature()?;
    }
    for g in &json.gateway_nodes {
        g.verify_signature()?;
    }
    Ok(VerifiedTopology {
        topology: Topology::from_json(json, our_version)?,
        directory_key,
        issued_at: json.issued_at,
        expires_at: json.expires_at,
        verified_at: now_unix_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::tests::{b58_x25519, epoch_keys};
    use proptest::prelude::*;

    const NOW: u64 = 1_800_000_000_000;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn mix(layer: u8, port: u16) -> MixNodeJson {
        let mut m = MixNodeJson {
            identity_key: String::new(),
            host: format!("127.0.0.1:{port}"),
            pub_key: b58_x25519(port as u8),
            sphinx_keys: epoch_keys(port as u8),
            layer,
            version: crate::VERSION.into(),
            location: "here".into(),
            last_seen: 7,
            seq: 0,
            signature: String::new(),
        };
        m.sign(&key(port as u8), NOW - 1000);
        m
    }

    fn gateway() -> GatewayJson {
        let mut g = GatewayJson {
            client_listener: "ws://127.0.0.1:9000".into(),
            mixnet_listener: "127.0.0.1:1789".into(),
            identity_key: String::new(),
            sphinx_key: b58_x25519(10),
            sphinx_keys: epoch_keys(10),
            version: crate::VERSION.into(),
            location: "here".into(),
            last_seen: 7,
            seq: 0,
            signature: String::new(),
        };
        g.sign(&key(9), NOW - 1000);
        g
    }

    fn document() -> TopologyJson {
        let mut t = TopologyJson {
            mix_nodes: vec![mix(1, 1), mix(2, 2), mix(3, 3)],
            gateway_nodes: vec![gateway()],
            epoch_length_secs: 3600,
            ..TopologyJson::default()
        };
        t.sign(&key(100), NOW, NOW + 60_000);
        t
    }

    fn directory_key() -> [u8; 32] {
        key(100).verifying_key().to_bytes()
    }

    fn check(t: &TopologyJson) -> Result<VerifiedTopology> {
        verify_topology(&serde_json::to_string(t).unwrap(), Some(&directory_key()), NOW, crate::VERSION)
    }

    #[test]
    fn a_signed_topology_verifies_and_names_its_key() {
        let v = check(&document()).unwrap();
        assert_eq!(v.directory_key, directory_key());
        assert_eq!((v.issued_at, v.expires_at), (NOW, NOW + 60_000));
        assert_eq!(v.topology.gateways().len(), 1);
        // trust on first use: the key the document names
        let text = serde_json::to_string(&document()).unwrap();
        assert_eq!(verify_topology(&text, None, NOW, crate::VERSION).unwrap().directory_key, directory_key());
        // the JSON still reads as the old shape, plus the signature fields
        for field in ["mixNodes", "gatewayNodes", "identityKey", "seq", "signature", "issuedAt", "expiresAt", "directoryKey"] {
            assert!(text.contains(field), "{field} missing");
        }
    }

    #[test]
    fn unsigned_foreign_expired_and_future_documents_are_refused() {
        let mut t = document();
        t.signature.clear();
        assert!(check(&t).unwrap_err().to_string().contains("not signed"));

        let mut t = document();
        t.sign(&key(101), NOW, NOW + 60_000);
        let e = check(&t).unwrap_err().to_string();
        assert!(e.contains("not by the pinned directory key"), "{e}");

        let mut t = document();
        t.sign(&key(100), NOW - 120_000, NOW - 60_000);
        assert!(check(&t).unwrap_err().to_string().contains("expired 60 s ago"));

        let mut t = document();
        t.sign(&key(100), NOW + MAX_CLOCK_SKEW_MS + 60_000, NOW + MAX_CLOCK_SKEW_MS + 120_000);
        assert!(check(&t).unwrap_err().to_string().contains("in the future"));

        assert!(check(&TopologyJson::default()).is_err());
    }

    #[test]
    fn a_change_anywhere_breaks_the_directory_signature() {
        let tamper: [fn(&mut TopologyJson); 9] = [
            |t| t.epoch_length_secs += 1,
            |t| t.mix_nodes[0].host = "127.0.0.2:1".into(),
            |t| t.mix_nodes[1].last_seen += 1,
            |t| t.gateway_nodes[0].mixnet_listener = "127.0.0.2:1789".into(),
            |t| t.gateway_nodes[0].client_listener = "ws://127.0.0.2:9000".into(),
            |t| t.expires_at += 1,
            |t| t.issued_at -= 1,
            |t| t.mix_nodes.swap(0, 1),
            |t| {
                t.mix_nodes.pop();
            },
        ];
        for (i, f) in tamper.iter().enumerate() {
            let mut t = document();
            f(&mut t);
            let e = check(&t).unwrap_err().to_string();
            assert!(e.contains("the topology: the signature does not verify"), "case {i}: {e}");
        }
    }

    #[test]
    fn a_descriptor_signed_by_another_key_is_refused_even_in_a_signed_document() {
        // the directory itself (or whoever holds its key) can't forge a node
        let mut t = document();
        let g = &mut t.gateway_nodes[0];
        let real_identity = g.identity_key.clone();
        g.sphinx_key = b58_x25519(66);
        g.sphinx_keys = epoch_keys(66);
        g.sign(&key(66), NOW);
        g.identity_key = real_identity;
        t.sign(&key(100), NOW, NOW + 60_000);
        let e = check(&t).unwrap_err().to_string();
        assert!(e.contains("gateway 127.0.0.1:1789: the signature does not verify"), "{e}");

        let mut t = document();
        t.mix_nodes[0].version = "9.9.9".into();
        t.sign(&key(100), NOW, NOW + 60_000);
        assert!(check(&t).unwrap_err().to_string().contains("mixnode 127.0.0.1:1: the signature does not verify"));
    }

    #[test]
    fn descriptors_verify_against_their_own_identity_only() {
        let m = mix(1, 5);
        assert_eq!(m.verify_signature().unwrap(), key(5).verifying_key().to_bytes());
        let mut forged = m.clone();
        forged.signature = mix(1, 6).signature;
        assert!(forged.verify_signature().is_err());
        let mut garbage = m.clone();
        garbage.signature = "0OIl".into();
        assert!(garbage.verify_signature().unwrap_err().to_string().contains("not 64 bytes"));
        let mut no_id = m;
        no_id.identity_key = "abc".into();
        assert!(no_id.verify_signature().unwrap_err().to_string().contains("identity key"));
        // lastSeen is the directory's, outside the node's signature
        let mut g = gateway();
        g.last_seen = 12345;
        assert!(g.verify_signature().is_ok());
    }

    proptest! {
        #[test]
        fn any_field_change_breaks_a_descriptor_signature(
            seed in any::<[u8; 32]>(), seq in any::<u64>(), host in "[0-9a-z.:]{0,30}",
            location in "\\PC{0,20}", field in 0usize..8, bump in 1u64..1000,
        ) {
            let identity = SigningKey::from_bytes(&seed);
            let mut m = MixNodeJson {
                identity_key: String::new(), host, pub_key: b58_x25519(1), sphinx_keys: epoch_keys(1), layer: 2,
                version: "1.0.0".into(), location, last_seen: 0, seq: 0, signature: String::new(),
            };
            m.sign(&identity, seq);
            prop_assert_eq!(m.verify_signature().unwrap(), identity.verifying_key().to_bytes());
            match field {
                0 => m.host.push('x'),
                1 => m.pub_key = b58_x25519(2),
                2 => m.layer = 3,
                3 => m.version.push('1'),
                4 => m.location.push('x'),
                5 => m.sphinx_keys[1].key = b58_x25519(3),
                6 => m.sphinx_keys[1].epoch = m.sphinx_keys[1].epoch.wrapping_add(bump as u32),
                _ => m.seq = m.seq.wrapping_add(bump),
            }
            prop_assert!(m.verify_signature().is_err());
        }

        #[test]
        fn field_boundaries_are_unambiguous(a in "[a-z]{0,8}", b in "[a-z]{0,8}", split in 0usize..8) {
            // moving bytes from one field to the next changes the encoding
            let joined = format!("{a}{b}");
            let cut = split.min(joined.len());
            let (x, y) = joined.split_at(cut);
            let mut one = Canonical::new(b"t");
            one.str(&a).str(&b);
            let mut two = Canonical::new(b"t");
            two.str(x).str(y);
            prop_assert_eq!(one.0 == two.0, a == x);
        }
    }
}
