//! The consensus rule, a pure function: from the votes an authority kept for
//! a round, the topology document every honest authority holding the same
//! votes computes byte for byte (docs/topology-document.md, "Consensus").
//!
//! - An identity is listed iff at least a majority of ALL the authorities
//!   (`majority(N)`, N the authorities file's length, not the votes received)
//!   voted for it.
//! - Its descriptor is the newest valid one among the votes listing it:
//!   highest `seq`, ties broken by the smallest signature text. Valid means
//!   what an announcement must be: the node's signature verifies, its keys
//!   and addresses parse, its version is served, and it carries the Sphinx
//!   keys of the epoch it was signed in and the next under the network's
//!   epoch length.
//! - Two listed identities can't hold one address: the one with the smaller
//!   identity key keeps it.
//! - Times come from the round: `issuedAt` is the round's start, `expiresAt`
//!   `issuedAt + validity`, every `lastSeen` the round's start (ns).

use super::state::Descriptor;
use nym_wire::authority::majority;
use nym_wire::topology::{versions_compatible, Gateway, MixNode, TopologyJson};
use nym_wire::vote::VoteJson;
use std::collections::{BTreeMap, HashSet};

/// What every authority must agree on, and the round being computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundParams {
    pub round: u64,
    /// Round length in milliseconds (`--round-secs`).
    pub round_ms: u64,
    /// `expiresAt - issuedAt` in milliseconds (`--topology-validity-secs`).
    pub validity_ms: u64,
    /// The network's key epoch length (`--epoch-secs`).
    pub epoch_length_secs: u64,
    /// How many authorities the file lists.
    pub authorities: usize,
}

impl RoundParams {
    /// Unix ms at which the round starts.
    pub fn start_ms(&self) -> u64 {
        self.round.saturating_mul(self.round_ms)
    }
}

// The consensus's rules for the directory's one descriptor type.
impl Descriptor {
    /// The mix-network addresses it holds (normalised text).
    fn addresses(&self) -> Vec<String> {
        match self {
            Descriptor::Mix(m) => vec![format!("mix {}", m.host.to_ascii_lowercase())],
            Descriptor::Gateway(g) => vec![
                format!("mix {}", g.mixnet_listener.to_ascii_lowercase()),
                format!(
                    "client {}",
                    g.client_listener.trim_end_matches('/').to_ascii_lowercase()
                ),
            ],
        }
    }

    /// The announcement's checks, for the network's epoch length; the
    /// identity it is for when they pass.
    fn valid_identity(&self, epoch_length_secs: u64, version: &str) -> Option<[u8; 32]> {
        let (id, node_version, epochs) = match self {
            Descriptor::Mix(m) => {
                MixNode::from_json(m).ok()?;
                (
                    m.verify_signature().ok()?,
                    &m.version,
                    m.sphinx_keys.iter().map(|k| k.epoch).collect::<Vec<_>>(),
                )
            }
            Descriptor::Gateway(g) => {
                Gateway::from_json(g).ok()?;
                (
                    g.verify_signature().ok()?,
                    &g.version,
                    g.sphinx_keys.iter().map(|k| k.epoch).collect::<Vec<_>>(),
                )
            }
        };
        if !versions_compatible(node_version, version) {
            return None;
        }
        let epoch = nym_wire::epoch::epoch_at(self.seq(), epoch_length_secs.saturating_mul(1000));
        (epochs == [epoch, epoch.saturating_add(1)]).then_some(id)
    }
}

/// The round's document (unsigned; `servedBy` empty) from the votes kept:
/// each vote already verified as its authority's, one per authority, of this
/// round and these parameters. `version` is the one this authority serves.
pub fn compute(votes: &[&VoteJson], params: &RoundParams, version: &str) -> TopologyJson {
    let needed = majority(params.authorities);
    // identity -> (voters, candidate descriptors); BTreeMap: a fixed order.
    let mut candidates: BTreeMap<[u8; 32], (HashSet<&str>, Vec<Descriptor>)> = BTreeMap::new();
    for vote in votes {
        let listed = vote.mix_nodes.iter().cloned().map(Descriptor::Mix);
        let listed = listed.chain(vote.gateway_nodes.iter().cloned().map(Descriptor::Gateway));
        for d in listed {
            // An invalid descriptor is no vote for anyone.
            let Some(id) = d.valid_identity(params.epoch_length_secs, version) else {
                continue;
            };
            let entry = candidates.entry(id).or_default();
            entry.0.insert(vote.authority.as_str());
            entry.1.push(d);
        }
    }
    let start_ms = params.start_ms();
    let last_seen = start_ms.saturating_mul(1_000_000);
    let mut taken: HashSet<String> = HashSet::new();
    let (mut mix_nodes, mut gateway_nodes) = (Vec::new(), Vec::new());
    for (_, (voters, mut descriptors)) in candidates {
        if voters.len() < needed {
            continue;
        }
        descriptors.sort_by(|a, b| b.seq().cmp(&a.seq()).then_with(|| a.signature().cmp(b.signature())));
        let Some(best) = descriptors.into_iter().next() else {
            continue;
        };
        let addresses = best.addresses();
        if addresses.iter().any(|a| taken.contains(a)) {
            continue;
        }
        taken.extend(addresses);
        match best {
            Descriptor::Mix(mut m) => {
                m.last_seen = last_seen;
                mix_nodes.push(m);
            }
            Descriptor::Gateway(mut g) => {
                g.last_seen = last_seen;
                gateway_nodes.push(g);
            }
        }
    }
    // The single directory's order.
    mix_nodes.sort_by(|a, b| (a.layer, &a.host).cmp(&(b.layer, &b.host)));
    gateway_nodes.sort_by(|a, b| a.mixnet_listener.cmp(&b.mixnet_listener));
    TopologyJson {
        mix_nodes,
        gateway_nodes,
        round: params.round,
        issued_at: start_ms,
        expires_at: start_ms.saturating_add(params.validity_ms),
        epoch_length_secs: params.epoch_length_secs,
        ..TopologyJson::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use nym_wire::address::encode_key;
    use nym_wire::topology::MixNodeJson;
    use nym_wire::topology::EpochKeyJson;
    use proptest::prelude::*;

    const EPOCH_SECS: u64 = 60;
    const ROUND_MS: u64 = 1000;
    const ROUND: u64 = 1_800_000_000;

    fn params(n: usize) -> RoundParams {
        RoundParams {
            round: ROUND,
            round_ms: ROUND_MS,
            validity_ms: 300_000,
            epoch_length_secs: EPOCH_SECS,
            authorities: n,
        }
    }

    fn x25519(seed: u8) -> String {
        let secret = x25519_dalek::StaticSecret::from([seed; 32]);
        encode_key(x25519_dalek::PublicKey::from(&secret).as_bytes())
    }

    fn epoch_keys(seq: u64, seed: u8) -> Vec<EpochKeyJson> {
        let e = nym_wire::epoch::epoch_at(seq, EPOCH_SECS * 1000);
        vec![
            EpochKeyJson {
                epoch: e,
                key: x25519(seed),
            },
            EpochKeyJson {
                epoch: e + 1,
                key: x25519(seed ^ 0x55),
            },
        ]
    }

    fn mix(seed: u8, layer: u8, seq: u64) -> MixNodeJson {
        let mut m = MixNodeJson {
            host: format!("127.0.0.1:{}", 2000 + seed as u16),
            pub_key: x25519(seed),
            sphinx_keys: epoch_keys(seq, seed),
            layer,
            version: nym_wire::VERSION.into(),
            location: "here".into(),
            ..Default::default()
        };
        m.sign(&SigningKey::from_bytes(&[seed; 32]), seq);
        m
    }

    fn vote(authority: u8, nodes: Vec<MixNodeJson>) -> VoteJson {
        let mut v = VoteJson {
            round: ROUND,
            epoch_length_secs: EPOCH_SECS,
            mix_nodes: nodes,
            ..Default::default()
        };
        v.sign(&SigningKey::from_bytes(&[100 + authority; 32]));
        v
    }

    const SEQ: u64 = ROUND * ROUND_MS - 5000;

    fn ids(t: &TopologyJson) -> Vec<String> {
        let mut v: Vec<String> = t.mix_nodes.iter().map(|m| m.identity_key.clone()).collect();
        v.sort();
        v
    }

    #[test]
    fn a_majority_of_all_authorities_lists_a_node() {
        let (a, b, c) = (mix(1, 1, SEQ), mix(2, 2, SEQ), mix(3, 3, SEQ));
        let votes = [
            vote(1, vec![a.clone(), b.clone()]),
            vote(2, vec![a.clone(), c.clone()]),
            vote(3, vec![a.clone()]),
        ];
        let refs: Vec<&VoteJson> = votes.iter().collect();
        let t = compute(&refs, &params(3), nym_wire::VERSION);
        assert_eq!(ids(&t), vec![a.identity_key.clone()], "b and c have one vote of three");
        assert_eq!(
            (t.round, t.issued_at, t.expires_at),
            (ROUND, ROUND * ROUND_MS, ROUND * ROUND_MS + 300_000)
        );
        assert_eq!(t.epoch_length_secs, EPOCH_SECS);
        assert_eq!(t.mix_nodes[0].last_seen, ROUND * ROUND_MS * 1_000_000);
        // two votes of five authorities are not a majority of all of them
        let t = compute(&refs[..2], &params(5), nym_wire::VERSION);
        assert!(t.mix_nodes.is_empty());
        let t = compute(&refs[..2], &params(3), nym_wire::VERSION);
        assert_eq!(ids(&t), vec![a.identity_key.clone()]);
    }

    #[test]
    fn the_newest_valid_descriptor_wins_and_invalid_ones_count_for_nothing() {
        let old = mix(1, 1, SEQ);
        let new = mix(1, 2, SEQ + 10);
        let mut forged = mix(1, 3, SEQ + 20);
        forged.location = "changed after signing".into();
        let votes = [
            vote(1, vec![old.clone()]),
            vote(2, vec![new.clone()]),
            vote(3, vec![forged.clone()]),
        ];
        let refs: Vec<&VoteJson> = votes.iter().collect();
        let t = compute(&refs, &params(3), nym_wire::VERSION);
        assert_eq!(t.mix_nodes.len(), 1);
        assert_eq!(t.mix_nodes[0].seq, SEQ + 10);
        // a forged descriptor is no vote: old + forged is one vote of three
        let t = compute(&[refs[0], refs[2]], &params(3), nym_wire::VERSION);
        assert!(t.mix_nodes.is_empty());
        // keys of the wrong epoch are invalid
        let mut wrong_epoch = mix(4, 1, SEQ);
        wrong_epoch.sphinx_keys = epoch_keys(SEQ + 10 * EPOCH_SECS * 1000, 4);
        wrong_epoch.sign(&SigningKey::from_bytes(&[4; 32]), SEQ);
        let votes = [vote(1, vec![wrong_epoch.clone()]), vote(2, vec![wrong_epoch])];
        let refs: Vec<&VoteJson> = votes.iter().collect();
        assert!(compute(&refs, &params(3), nym_wire::VERSION).mix_nodes.is_empty());
    }

    #[test]
    fn two_identities_never_share_an_address() {
        let a = mix(1, 1, SEQ);
        let mut b = mix(2, 2, SEQ);
        b.host = a.host.clone();
        b.sign(&SigningKey::from_bytes(&[2; 32]), SEQ);
        let votes = [vote(1, vec![a.clone(), b.clone()]), vote(2, vec![a, b])];
        let refs: Vec<&VoteJson> = votes.iter().collect();
        assert_eq!(compute(&refs, &params(3), nym_wire::VERSION).mix_nodes.len(), 1);
    }

    proptest! {
        /// The same votes in any order give the same document, and every
        /// listed identity had a majority.
        #[test]
        fn the_document_does_not_depend_on_the_order_of_the_votes(
            picks in proptest::collection::vec(proptest::collection::vec(0u8..6, 0..6), 1..5),
            seqs in proptest::collection::vec(0u64..3, 6),
            rotate in 0usize..5,
        ) {
            let votes: Vec<VoteJson> = picks
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let mut uniq: Vec<u8> = p.clone();
                    uniq.sort();
                    uniq.dedup();
                    let nodes = uniq.iter().map(|&s| mix(s + 1, s % 3 + 1, SEQ + seqs[s as usize] + i as u64 % 2)).collect();
                    vote(i as u8, nodes)
                })
                .collect();
            let n = 5;
            let refs: Vec<&VoteJson> = votes.iter().collect();
            let mut rotated = refs.clone();
            let r = rotate % rotated.len();
            rotated.rotate_left(r);
            rotated.reverse();
            let a = compute(&refs, &params(n), nym_wire::VERSION);
            let b = compute(&rotated, &params(n), nym_wire::VERSION);
            prop_assert_eq!(a.signed_bytes(), b.signed_bytes());
            for m in &a.mix_nodes {
                let voters = votes.iter().filter(|v| v.mix_nodes.iter().any(|x| x.identity_key == m.identity_key)).count();
                prop_assert!(voters >= majority(n));
                let newest = votes.iter().flat_map(|v| v.mix_nodes.iter()).filter(|x| x.identity_key == m.identity_key).map(|x| x.seq).max();
                prop_assert_eq!(Some(m.seq), newest);
            }
        }
    }
}
