//! What directory authorities exchange to reach a consensus: each round every
//! authority signs a [`VoteJson`] (the node descriptors it has admitted and
//! sees alive, and the network parameters it runs with), and after computing
//! the round's document sends its signature over it as a [`RoundSignature`].
//!
//! A vote's signature covers canonical bytes (domain tag `nym-vote/1`, then
//! every field length-prefixed, as the topology document's:
//! docs/topology-document.md), not its JSON text.

use crate::address::{decode_key, encode_key, KEY_LENGTH};
use crate::error::{Error, Result};
use crate::topology::{GatewayJson, MixNodeJson};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const VOTE_TAG: &[u8] = b"nym-vote/1";

/// Most descriptors one vote may carry (all roles together): ten times the
/// directory's default node cap, so no honest vote comes near it.
pub const MAX_VOTE_DESCRIPTORS: usize = 10_000;

/// The largest vote body an authority reads, in bytes (a descriptor is under
/// 1 KiB; a vote at [`MAX_VOTE_DESCRIPTORS`] fits).
pub const MAX_VOTE_BYTES: usize = 16 * 1024 * 1024;

/// Authority-to-authority HTTP paths (served by every authority of a
/// multi-authority network).
pub mod paths {
    /// `POST`: a [`super::VoteJson`] for the current round.
    pub const VOTES: &str = "/api/authority/votes";
    /// `GET {VOTES}/{round}`: every vote this authority holds for the round
    /// (a JSON array of [`super::VoteJson`]), so peers can spot an authority
    /// that voted differently to different peers.
    pub const VOTES_OF_ROUND: &str = "/api/authority/votes/{round}";
    /// `POST`: a [`super::RoundSignature`] over the round's document.
    pub const SIGNATURES: &str = "/api/authority/signatures";
}

/// One authority's vote for one round.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoteJson {
    /// The consensus round voted on.
    pub round: u64,
    /// base58 ed25519 key of the authority voting (it signs the vote).
    pub authority: String,
    /// The key epoch length the authority runs with: every authority's must
    /// be the same (a vote with another is refused).
    pub epoch_length_secs: u64,
    /// The mixnodes it has admitted and sees alive, as their nodes signed them.
    #[serde(default)]
    pub mix_nodes: Vec<MixNodeJson>,
    /// The gateways it has admitted and sees alive.
    #[serde(default)]
    pub gateway_nodes: Vec<GatewayJson>,
    /// base58 of the authority's ed25519 signature over [`VoteJson::signed_bytes`].
    #[serde(default)]
    pub signature: String,
}

fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    // Bounded bodies: a >4 GiB field can't occur; saturating keeps it total.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

fn number(out: &mut Vec<u8>, n: u64) {
    field(out, &n.to_be_bytes());
}

impl VoteJson {
    /// The bytes the authority signs: the tag, round, authority key text,
    /// epoch length, then the count of mixnodes and each one's descriptor
    /// bytes (as its node signed them) and signature, then the same for
    /// gateways. `lastSeen` is not covered (the consensus sets it).
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + 600 * (self.mix_nodes.len() + self.gateway_nodes.len()));
        field(&mut out, VOTE_TAG);
        number(&mut out, self.round);
        field(&mut out, self.authority.as_bytes());
        number(&mut out, self.epoch_length_secs);
        number(&mut out, self.mix_nodes.len() as u64);
        for m in &self.mix_nodes {
            field(&mut out, &m.signed_bytes());
            field(&mut out, m.signature.as_bytes());
        }
        number(&mut out, self.gateway_nodes.len() as u64);
        for g in &self.gateway_nodes {
            field(&mut out, &g.signed_bytes());
            field(&mut out, g.signature.as_bytes());
        }
        out
    }

    /// Sets `authority` to `key`'s public key and signs the vote.
    pub fn sign(&mut self, key: &SigningKey) {
        self.authority = encode_key(key.verifying_key().as_bytes());
        self.signature = encode_key(&key.sign(&self.signed_bytes()).to_bytes());
    }

    /// SHA-256 of the signed bytes and the signature: names this exact vote
    /// (two different votes by one authority have different digests), hex.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.signed_bytes());
        h.update(self.signature.as_bytes());
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Checks the shape and the signature: at most
    /// [`MAX_VOTE_DESCRIPTORS`] descriptors, no identity twice, and a valid
    /// signature by the key in `authority`, which is returned. (The
    /// descriptors' own signatures are checked by whoever uses them.)
    pub fn verify(&self) -> Result<[u8; KEY_LENGTH]> {
        let n = self.mix_nodes.len() + self.gateway_nodes.len();
        if n > MAX_VOTE_DESCRIPTORS {
            return Err(Error::Topology(format!(
                "the vote lists {n} nodes; at most {MAX_VOTE_DESCRIPTORS} are read"
            )));
        }
        let mut ids = std::collections::HashSet::with_capacity(n);
        let all = self
            .mix_nodes
            .iter()
            .map(|m| &m.identity_key)
            .chain(self.gateway_nodes.iter().map(|g| &g.identity_key));
        for id in all {
            if !ids.insert(id.as_str()) {
                return Err(Error::Topology(format!("the vote lists identity {id} twice")));
            }
        }
        let key = decode_key(&self.authority, "the vote's authority key")
            .map_err(|e| Error::Topology(e.to_string().replace("invalid address: ", "")))?;
        let public = VerifyingKey::from_bytes(&key)
            .map_err(|_| Error::Topology("the vote's authority key is not an ed25519 public key".into()))?;
        let raw = bs58::decode(&self.signature)
            .into_vec()
            .ok()
            .and_then(|v| <[u8; 64]>::try_from(v).ok());
        let raw = raw.ok_or_else(|| Error::Topology("the vote's signature is not 64 bytes of base58".into()))?;
        public
            .verify_strict(&self.signed_bytes(), &Signature::from_bytes(&raw))
            .map_err(|_| Error::Topology("the vote's signature does not verify".into()))?;
        Ok(key)
    }
}

/// Parses and verifies a vote ([`VoteJson::verify`]); the signer's key with it.
pub fn parse_vote(text: &[u8]) -> Result<(VoteJson, [u8; KEY_LENGTH])> {
    let vote: VoteJson = serde_json::from_slice(text).map_err(|e| Error::Topology(format!("not vote JSON: {e}")))?;
    let key = vote.verify()?;
    Ok((vote, key))
}

/// An authority's signature over the document it computed for `round`
/// (`TopologyJson::signed_bytes`): what authorities send each other after
/// computing the consensus. Self-authenticating: it counts only if it
/// verifies over the receiver's own document of that round.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundSignature {
    /// The round of the document signed.
    pub round: u64,
    /// base58 ed25519 key of the authority.
    pub key: String,
    /// base58 of the 64-byte signature.
    pub signature: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn mix(seed: u8) -> MixNodeJson {
        let mut m = MixNodeJson {
            host: format!("127.0.0.1:{}", 1000 + seed as u16),
            layer: 1,
            ..Default::default()
        };
        m.sign(&key(seed), 5);
        m
    }

    #[test]
    fn a_signed_vote_verifies_and_any_change_breaks_it() {
        let mut v = VoteJson {
            round: 7,
            epoch_length_secs: 60,
            mix_nodes: vec![mix(1), mix(2)],
            ..Default::default()
        };
        v.sign(&key(9));
        assert_eq!(v.verify().unwrap(), key(9).verifying_key().to_bytes());
        let text = serde_json::to_vec(&v).unwrap();
        assert_eq!(parse_vote(&text).unwrap().0, v);
        assert!(String::from_utf8(text).unwrap().contains("\"epochLengthSecs\":60"));

        let mut changed = [v.clone(), v.clone(), v.clone(), v.clone(), v.clone()];
        changed[0].round = 8;
        changed[1].epoch_length_secs = 61;
        changed[2].mix_nodes.pop();
        changed[3].mix_nodes[0].host = "127.0.0.1:9".into();
        changed[4].authority = encode_key(key(8).verifying_key().as_bytes());
        for c in changed {
            assert!(c.verify().is_err(), "{c:?}");
            assert_ne!(c.digest(), v.digest());
        }
        // lastSeen is not signed: the consensus sets it
        let mut seen = v.clone();
        seen.mix_nodes[0].last_seen = 99;
        assert!(seen.verify().is_ok());
    }

    #[test]
    fn bad_votes_are_refused_with_a_reason() {
        let mut twice = VoteJson {
            round: 1,
            mix_nodes: vec![mix(1), mix(1)],
            ..Default::default()
        };
        twice.sign(&key(9));
        assert!(twice.verify().unwrap_err().to_string().contains("twice"));
        let unsigned = VoteJson {
            authority: encode_key(key(9).verifying_key().as_bytes()),
            ..Default::default()
        };
        assert!(unsigned.verify().unwrap_err().to_string().contains("64 bytes"));
        assert!(parse_vote(b"{").unwrap_err().to_string().contains("not vote JSON"));
        assert!(parse_vote(b"{\"round\":1,\"authority\":\"xyz\",\"epochLengthSecs\":1}").is_err());
    }
}
