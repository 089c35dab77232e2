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
use crate::authority::{Authorities, MAX_AUTHORITIES};
use crate::error::{Error, Result};
use crate::topology::{DocumentSignature, EpochKeyJson, GatewayJson, MixNodeJson, Topology, TopologyJson};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::collections::HashSet;

/// How far in the future a document's `issuedAt` may be before a client
/// refuses it: clocks differ, but not by more than this.
pub const MAX_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;

const MIXNODE_TAG: &[u8] = b"nym-mixnode-descriptor/2";
const GATEWAY_TAG: &[u8] = b"nym-gateway-descriptor/2";
const TOPOLOGY_TAG: &[u8] = b"nym-topology/3";

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
    /// The bytes every authority signs: the round, the times, the network
    /// parameters, and every node descriptor in order with its signature and
    /// `lastSeen`. Not `signatures` nor `servedBy`.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut c = Canonical::new(TOPOLOGY_TAG);
        c.u64(self.round).u64(self.issued_at).u64(self.expires_at).u64(self.epoch_length_secs);
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

    /// `authority`'s signature over the document as it is now.
    pub fn signature_by(&self, authority: &SigningKey) -> DocumentSignature {
        DocumentSignature {
            key: encode_key(authority.verifying_key().as_bytes()),
            signature: sign(authority, &self.signed_bytes()),
        }
    }

    /// Adds `authority`'s signature (replacing an earlier one by the same key).
    pub fn sign(&mut self, authority: &SigningKey) {
        self.add_signature(self.signature_by(authority));
    }

    /// Adds a signature, replacing one by the same key; keeps them in key order.
    pub fn add_signature(&mut self, signature: DocumentSignature) {
        self.signatures.retain(|s| s.key != signature.key);
        self.signatures.push(signature);
        self.signatures.sort_by(|a, b| a.key.cmp(&b.key));
    }

    /// Whether `signature` is a valid signature over this document by the key it names.
    pub fn signature_is_valid(&self, signature: &DocumentSignature) -> bool {
        self.check_signatures_over(&self.signed_bytes(), std::slice::from_ref(signature)).len() == 1
    }

    /// The distinct keys among `signatures` whose signature over `bytes` verifies.
    fn check_signatures_over(&self, bytes: &[u8], signatures: &[DocumentSignature]) -> Vec<[u8; KEY_LENGTH]> {
        let mut good: Vec<[u8; KEY_LENGTH]> = Vec::new();
        for s in signatures {
            let Ok(key) = parse_identity(&s.key, "authority key") else { continue };
            if !good.contains(key.as_bytes()) && verify(&key, bytes, &s.signature, "the topology").is_ok() {
                good.push(key.to_bytes());
            }
        }
        good
    }

    /// Checks the authorities' signatures: at least `authorities.threshold()`
    /// distinct listed keys must have signed (a signature by an unlisted key
    /// or one that does not verify counts for nothing; a key that appears
    /// twice refuses the document). With `None` (a client that trusts on
    /// first use) the key in `servedBy` must have signed, and is returned
    /// for the caller to pin. Returns the listed keys that signed.
    pub fn verify_signatures(&self, authorities: Option<&Authorities>) -> Result<Signers> {
        if self.signatures.is_empty() {
            return Err(Error::Topology("the topology is not signed".into()));
        }
        if self.signatures.len() > MAX_AUTHORITIES {
            return Err(Error::Topology(format!(
                "the topology carries {} signatures; at most {MAX_AUTHORITIES} are read",
                self.signatures.len()
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for s in &self.signatures {
            if !seen.insert(s.key.as_str()) {
                return Err(Error::Topology(format!("the topology carries two signatures by {}", s.key)));
            }
        }
        let bytes = self.signed_bytes();
        let Some(authorities) = authorities else {
            let served_by = parse_identity(&self.served_by, "the topology's servedBy key")?;
            let by = encode_key(served_by.as_bytes());
            let theirs: Vec<DocumentSignature> = self.signatures.iter().filter(|s| s.key == by).cloned().collect();
            if theirs.is_empty() {
                return Err(Error::Topology(format!("the topology is not signed by {by}, the authority that served it")));
            }
            if self.check_signatures_over(&bytes, &theirs).is_empty() {
                return Err(Error::Topology(format!(
                    "the topology: the signature by {by} (the authority that served it) does not verify"
                )));
            }
            return Ok(Signers { keys: vec![served_by.to_bytes()], learned: Some(served_by.to_bytes()) });
        };
        let listed: Vec<DocumentSignature> = self
            .signatures
            .iter()
            .filter(|s| decode_key(&s.key, "key").is_ok_and(|k| authorities.contains(&k)))
            .cloned()
            .collect();
        let keys = self.check_signatures_over(&bytes, &listed);
        let (n, k) = (authorities.list().len(), authorities.threshold());
        if keys.len() < k {
            let what = if n == 1 {
                format!("the topology is not signed by the pinned directory key {}", authorities.list()[0].key_b58())
            } else {
                format!(
                    "the topology carries {} valid signature{} by the {n} pinned authorities; {k} needed",
                    keys.len(),
                    if keys.len() == 1 { "" } else { "s" }
                )
            };
            let others = self.signatures.len() - keys.len();
            let note = if others > 0 { format!(" ({others} other signature(s) unlisted or invalid)") } else { String::new() };
            return Err(Error::Topology(format!("{what}{note}")));
        }
        Ok(Signers { keys, learned: None })
    }
}

/// Who signed a document that passed [`TopologyJson::verify_signatures`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signers {
    /// The listed authority keys whose signatures verified (for trust on
    /// first use: the one key learned).
    pub keys: Vec<[u8; KEY_LENGTH]>,
    /// With no authorities pinned: the key trusted on first use, to keep.
    pub learned: Option<[u8; KEY_LENGTH]>,
}

/// A topology document whose signatures and times passed
/// [`verify_document`]: enough to learn the network's parameters even when
/// the network is not yet usable (no layer filled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedDocument {
    /// Who signed it.
    pub signers: Signers,
    /// The consensus round.
    pub round: u64,
    /// Unix milliseconds.
    pub issued_at: u64,
    /// Unix milliseconds.
    pub expires_at: u64,
    /// The network's key epoch length.
    pub epoch_length_secs: u64,
    /// The Unix milliseconds it was checked at (the caller's wall clock).
    pub verified_at: u64,
}

/// A topology that passed every check of [`verify_topology`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedTopology {
    /// The network it describes.
    pub topology: Topology,
    /// Signatures, times and parameters.
    pub document: VerifiedDocument,
}

impl VerifiedTopology {
    /// Unix milliseconds.
    pub fn issued_at(&self) -> u64 {
        self.document.issued_at
    }

    /// Unix milliseconds.
    pub fn expires_at(&self) -> u64 {
        self.document.expires_at
    }
}

fn hms(ms: u64) -> String {
    let s = ms / 1000;
    if s >= 3600 {
        format!("{} h {} min", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{} min {} s", s / 60, s % 60)
    } else {
        format!("{s} s")
    }
}

/// The signatures ([`TopologyJson::verify_signatures`]) and the times: not
/// expired at `now_unix_ms`, nor issued implausibly far in the future. A
/// time error says which clock to suspect.
pub fn verify_document(
    json: &TopologyJson,
    authorities: Option<&Authorities>,
    now_unix_ms: u64,
) -> Result<VerifiedDocument> {
    let signers = json.verify_signatures(authorities)?;
    if json.expires_at <= now_unix_ms {
        let ago = now_unix_ms - json.expires_at;
        // A document that expired long ago on a network that refreshes every
        // few minutes usually means this machine's clock runs ahead.
        let hint = if ago > 3_600_000 {
            " (if the authorities are up, this machine's clock is probably wrong: check it)"
        } else {
            " (no authority has issued a newer one we could fetch)"
        };
        return Err(Error::Topology(format!("the newest topology expired {} ago{hint}", hms(ago))));
    }
    if json.issued_at > now_unix_ms.saturating_add(MAX_CLOCK_SKEW_MS) {
        return Err(Error::Topology(format!(
            "the topology was issued {} in the future: this machine's clock is probably behind (check it)",
            hms(json.issued_at - now_unix_ms)
        )));
    }
    Ok(VerifiedDocument {
        signers,
        round: json.round,
        issued_at: json.issued_at,
        expires_at: json.expires_at,
        epoch_length_secs: json.epoch_length_secs,
        verified_at: now_unix_ms,
    })
}

/// Everything anyone who uses a topology checks, in this order: the JSON
/// parses; [`verify_document`] (signatures by `authorities`, or with `None`
/// by the authority that served it: trust on first use, and the caller keeps
/// `signers.learned`; times); every node descriptor carries a valid
/// signature by its own identity; and then what [`Topology::from_json`]
/// checks for `our_version`.
pub fn verify_topology(
    text: &str,
    authorities: Option<&Authorities>,
    now_unix_ms: u64,
    our_version: &str,
) -> Result<VerifiedTopology> {
    let json: TopologyJson =
        serde_json::from_str(text).map_err(|e| Error::Topology(format!("not topology JSON: {e}")))?;
    verify_topology_json(&json, authorities, now_unix_ms, our_version)
}

/// [`verify_topology`] of an already parsed document.
pub fn verify_topology_json(
    json: &TopologyJson,
    authorities: Option<&Authorities>,
    now_unix_ms: u64,
    our_version: &str,
) -> Result<VerifiedTopology> {
    verify_topology_cached(json, authorities, now_unix_ms, our_version, &mut DescriptorCache::default())
}

/// The descriptors of the last document that passed
/// [`verify_topology_cached`]: a refresh that lists the same descriptors
/// (the same bytes and signature) checks only the new ones. At the node cap
/// (1,000 descriptors) that is most of a verification's cost. Bounded: it
/// holds the last document's descriptors only.
#[derive(Debug, Default, Clone)]
pub struct DescriptorCache {
    verified: HashSet<[u8; 32]>,
}

impl DescriptorCache {
    /// Descriptors remembered (those of the last document accepted).
    pub fn len(&self) -> usize {
        self.verified.len()
    }

    /// Whether it remembers none.
    pub fn is_empty(&self) -> bool {
        self.verified.is_empty()
    }
}

/// What a descriptor's check depends on: its signed bytes and its signature.
fn descriptor_digest(signed: &[u8], signature: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((signed.len() as u64).to_be_bytes());
    h.update(signed);
    h.update(signature.as_bytes());
    h.finalize().into()
}

/// [`verify_topology_json`], skipping the signature check of descriptors
/// that passed it in the last accepted document (`cache`, updated when this
/// one is accepted; untouched when it is refused).
pub fn verify_topology_cached(
    json: &TopologyJson,
    authorities: Option<&Authorities>,
    now_unix_ms: u64,
    our_version: &str,
    cache: &mut DescriptorCache,
) -> Result<VerifiedTopology> {
    let document = verify_document(json, authorities, now_unix_ms)?;
    let mut verified = HashSet::with_capacity(json.mix_nodes.len() + json.gateway_nodes.len());
    let mut check = |identity: &str, signed: Vec<u8>, signature: &str, what: String| -> Result<()> {
        let digest = descriptor_digest(&signed, signature);
        if !cache.verified.contains(&digest) {
            verify_descriptor(identity, &signed, signature, &what)?;
        }
        verified.insert(digest);
        Ok(())
    };
    for m in &json.mix_nodes {
        check(&m.identity_key, m.signed_bytes(), &m.signature, format!("mixnode {}", m.host))?;
    }
    for g in &json.gateway_nodes {
        check(&g.identity_key, g.signed_bytes(), &g.signature, format!("gateway {}", g.mixnet_listener))?;
    }
    let topology = Topology::from_json(json, our_version)?;
    cache.verified = verified;
    Ok(VerifiedTopology { topology, document })
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
            round: 7,
            issued_at: NOW,
            expires_at: NOW + 60_000,
            ..TopologyJson::default()
        };
        for k in [100, 101, 102] {
            t.sign(&key(k));
        }
        t.served_by = encode_key(key(100).verifying_key().as_bytes());
        t
    }

    /// The three authorities 100, 101, 102, threshold 2.
    fn authorities() -> Authorities {
        let list = [100u8, 101, 102]
            .iter()
            .map(|k| crate::authority::Authority {
                key: key(*k).verifying_key().to_bytes(),
                url: format!("http://127.0.0.1:{k}"),
            })
            .collect();
        Authorities::new(list, None).unwrap()
    }

    fn check(t: &TopologyJson) -> Result<VerifiedTopology> {
        verify_topology(&serde_json::to_string(t).unwrap(), Some(&authorities()), NOW, crate::VERSION)
    }

    fn signer(k: u8) -> [u8; 32] {
        key(k).verifying_key().to_bytes()
    }

    #[test]
    fn a_document_signed_by_a_threshold_verifies_and_names_its_signers() {
        let v = check(&document()).unwrap();
        let mut want = vec![signer(100), signer(101), signer(102)];
        want.sort_by_key(|k| encode_key(k));
        assert_eq!(v.document.signers.keys, want);
        assert_eq!(v.document.signers.learned, None);
        assert_eq!((v.issued_at(), v.expires_at(), v.document.round), (NOW, NOW + 60_000, 7));
        assert_eq!(v.topology.gateways().len(), 1);
        // two of three suffice
        let mut t = document();
        t.signatures.remove(1);
        assert_eq!(check(&t).unwrap().document.signers.keys.len(), 2);
        // trust on first use: the authority that served it
        let text = serde_json::to_string(&document()).unwrap();
        let v = verify_topology(&text, None, NOW, crate::VERSION).unwrap();
        assert_eq!(v.document.signers.learned, Some(signer(100)));
        // a single pinned authority believes a multi-authority document it signed
        let one = Authorities::single(signer(101), "http://127.0.0.1:101");
        assert!(verify_topology(&text, Some(&one), NOW, crate::VERSION).is_ok());
        // the JSON still reads as the old shape, plus the signature fields
        for field in ["mixNodes", "gatewayNodes", "identityKey", "seq", "signatures", "issuedAt", "expiresAt", "round"] {
            assert!(text.contains(field), "{field} missing");
        }
    }

    #[test]
    fn too_few_unlisted_repeated_and_forged_signatures_are_refused() {
        let mut t = document();
        t.signatures.clear();
        assert!(check(&t).unwrap_err().to_string().contains("not signed"));

        // one valid signature of three, threshold two
        let mut t = document();
        t.signatures.retain(|s| s.key == encode_key(&signer(100)));
        let e = check(&t).unwrap_err().to_string();
        assert!(e.contains("1 valid signature by the 3 pinned authorities; 2 needed"), "{e}");

        // a second signature by a key nobody pinned counts for nothing
        t.sign(&key(103));
        let e = check(&t).unwrap_err().to_string();
        assert!(e.contains("1 valid signature") && e.contains("1 other"), "{e}");

        // the same authority twice is refused, not counted twice
        let mut t = document();
        t.signatures.retain(|s| s.key == encode_key(&signer(100)));
        let again = t.signatures[0].clone();
        t.signatures.push(again);
        assert!(check(&t).unwrap_err().to_string().contains("two signatures by"));

        // a pinned key's signature over other bytes counts for nothing
        let mut t = document();
        let other = {
            let mut o = document();
            o.round += 1;
            o.signature_by(&key(101))
        };
        t.add_signature(other);
        t.signatures.retain(|s| s.key != encode_key(&signer(102)));
        let e = check(&t).unwrap_err().to_string();
        assert!(e.contains("1 valid signature"), "{e}");

        // one pinned authority: its key must have signed
        let one = Authorities::single(signer(104), "http://127.0.0.1:104");
        let text = serde_json::to_string(&document()).unwrap();
        let e = verify_topology(&text, Some(&one), NOW, crate::VERSION).unwrap_err().to_string();
        assert!(e.contains("not signed by the pinned directory key"), "{e}");

        // trust on first use: the serving authority must have signed
        let mut t = document();
        t.served_by = encode_key(&signer(104));
        let e = verify_topology(&serde_json::to_string(&t).unwrap(), None, NOW, crate::VERSION).unwrap_err();
        assert!(e.to_string().contains("the authority that served it"), "{e}");

        assert!(check(&TopologyJson::default()).is_err());
    }

    #[test]
    fn expired_and_future_documents_are_refused_naming_the_clock() {
        let resign = |t: &mut TopologyJson| {
            t.signatures.clear();
            for k in [100, 101] {
                t.sign(&key(k));
            }
        };
        let mut t = document();
        (t.issued_at, t.expires_at) = (NOW - 120_000, NOW - 60_000);
        resign(&mut t);
        let e = check(&t).unwrap_err().to_string();
        assert!(e.contains("expired 1 min 0 s ago") && e.contains("no authority"), "{e}");

        (t.issued_at, t.expires_at) = (NOW - 5 * 3_600_000, NOW - 4 * 3_600_000);
        resign(&mut t);
        let e = check(&t).unwrap_err().to_string();
        assert!(e.contains("expired 4 h 0 min ago") && e.contains("clock"), "{e}");

        (t.issued_at, t.expires_at) = (NOW + MAX_CLOCK_SKEW_MS + 60_000, NOW + MAX_CLOCK_SKEW_MS + 120_000);
        resign(&mut t);
        let e = check(&t).unwrap_err().to_string();
        assert!(e.contains("in the future") && e.contains("clock"), "{e}");
    }

    #[test]
    fn a_change_anywhere_breaks_every_authority_signature() {
        let tamper: [fn(&mut TopologyJson); 10] = [
            |t| t.epoch_length_secs += 1,
            |t| t.mix_nodes[0].host = "127.0.0.2:1".into(),
            |t| t.mix_nodes[1].last_seen += 1,
            |t| t.gateway_nodes[0].mixnet_listener = "127.0.0.2:1789".into(),
            |t| t.gateway_nodes[0].client_listener = "ws://127.0.0.2:9000".into(),
            |t| t.expires_at += 1,
            |t| t.issued_at -= 1,
            |t| t.round += 1,
            |t| t.mix_nodes.swap(0, 1),
            |t| {
                t.mix_nodes.pop();
            },
        ];
        for (i, f) in tamper.iter().enumerate() {
            let mut t = document();
            f(&mut t);
            let e = check(&t).unwrap_err().to_string();
            assert!(e.contains("0 valid signatures"), "case {i}: {e}");
        }
        // the unsigned hint changes nothing for a client with pinned keys
        let mut t = document();
        t.served_by = "whatever".into();
        assert!(check(&t).is_ok());
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
        t.signatures.clear();
        t.sign(&key(100));
        t.sign(&key(101));
        let e = check(&t).unwrap_err().to_string();
        assert!(e.contains("gateway 127.0.0.1:1789: the signature does not verify"), "{e}");

        let mut t = document();
        t.mix_nodes[0].version = "9.9.9".into();
        t.signatures.clear();
        t.sign(&key(100));
        t.sign(&key(101));
        assert!(check(&t).unwrap_err().to_string().contains("mixnode 127.0.0.1:1: the signature does not verify"));
    }

    #[test]
    fn the_cache_skips_only_descriptors_already_verified_with_the_same_bytes_and_signature() {
        let mut cache = DescriptorCache::default();
        let doc = document();
        verify_topology_cached(&doc, Some(&authorities()), NOW, crate::VERSION, &mut cache).unwrap();
        assert_eq!(cache.len(), 4);
        // a descriptor changed under its old signature is checked, and refused
        let mut t = document();
        t.mix_nodes[0].location = "elsewhere".into();
        t.signatures.clear();
        t.sign(&key(100));
        t.sign(&key(101));
        let e = verify_topology_cached(&t, Some(&authorities()), NOW, crate::VERSION, &mut cache).unwrap_err();
        assert!(e.to_string().contains("mixnode 127.0.0.1:1: the signature does not verify"), "{e}");
        assert_eq!(cache.len(), 4, "a refused document leaves the cache as it was");
        // a signature moved onto another descriptor's bytes is checked, and refused
        let mut t = document();
        t.mix_nodes[1].signature = t.mix_nodes[0].signature.clone();
        t.signatures.clear();
        t.sign(&key(100));
        t.sign(&key(101));
        assert!(verify_topology_cached(&t, Some(&authorities()), NOW, crate::VERSION, &mut cache).is_err());
        // a document with one node fewer: the cache holds what it lists
        let mut t = document();
        t.gateway_nodes.push(gateway());
        t.gateway_nodes[1].mixnet_listener = "127.0.0.1:1790".into();
        t.gateway_nodes[1].client_listener = "ws://127.0.0.1:9001".into();
        t.gateway_nodes[1].sign(&key(10), NOW - 1000);
        t.signatures.clear();
        t.sign(&key(100));
        t.sign(&key(101));
        verify_topology_cached(&t, Some(&authorities()), NOW, crate::VERSION, &mut cache).unwrap();
        assert_eq!(cache.len(), 5);
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
