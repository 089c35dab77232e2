//! The rounds of a multi-authority network: what one authority holds of each
//! round (the votes it kept, the equivocators it caught, its document and the
//! signatures collected on it) and every rule for what a peer may send it.
//! Nothing here does IO or reads a clock: every call takes `now_ms`, so the
//! rules are tested without sleeping. The task that drives the rounds and
//! talks to the peers is [`super::peers`].
//!
//! Round `r` covers `[r*R, (r+1)*R)` in Unix ms (`R` = `--round-secs`):
//! votes for `r` are taken until `r*R + R/3` (the vote deadline), the
//! document is computed at `r*R + R/2`. Only the last [`KEEP_ROUNDS`] rounds
//! are kept, at most two votes per authority each (the first, and a
//! conflicting one as evidence) and one signature per authority.

use super::consensus::{self, RoundParams};
use axum::http::StatusCode;
use ed25519_dalek::SigningKey;
use nym_wire::address::{decode_key, encode_key};
use nym_wire::authority::Authorities;
use nym_wire::topology::{DocumentSignature, TopologyJson};
use nym_wire::vote::{RoundSignature, VoteJson};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Rounds kept (older state is dropped): enough for a signature that
/// arrives a round late, bounded whatever peers send.
pub const KEEP_ROUNDS: u64 = 4;

/// Why a vote or a signature from a peer was refused: the `reason` label of
/// `nym_directory_vote_refusals_total` / `nym_directory_signature_refusals_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRefusal {
    /// 400: not JSON of the kind, or its signature does not verify.
    Bad,
    /// 413: the body is over the limit.
    TooLarge,
    /// 403: signed by a key not in the authorities file.
    Unlisted,
    /// 409: a vote for a round other than the current one (a signature for a
    /// round not kept).
    WrongRound,
    /// 409: a vote after the round's vote deadline.
    Late,
    /// 409: a vote whose network parameters differ from ours.
    Parameters,
    /// 409: a second, different vote by the same authority for the round.
    Equivocation,
    /// 409: a signature over a document other than ours for that round.
    Mismatch,
}

impl PeerRefusal {
    pub const ALL: [PeerRefusal; 8] = [
        PeerRefusal::Bad,
        PeerRefusal::TooLarge,
        PeerRefusal::Unlisted,
        PeerRefusal::WrongRound,
        PeerRefusal::Late,
        PeerRefusal::Parameters,
        PeerRefusal::Equivocation,
        PeerRefusal::Mismatch,
    ];

    pub fn label(self) -> &'static str {
        match self {
            PeerRefusal::Bad => "bad",
            PeerRefusal::TooLarge => "too_large",
            PeerRefusal::Unlisted => "unlisted",
            PeerRefusal::WrongRound => "wrong_round",
            PeerRefusal::Late => "late",
            PeerRefusal::Parameters => "parameters",
            PeerRefusal::Equivocation => "equivocation",
            PeerRefusal::Mismatch => "mismatch",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            PeerRefusal::Bad => StatusCode::BAD_REQUEST,
            PeerRefusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            PeerRefusal::Unlisted => StatusCode::FORBIDDEN,
            _ => StatusCode::CONFLICT,
        }
    }
}

/// A refusal and its text for the peer's operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRefused {
    pub why: PeerRefusal,
    pub reason: String,
}

fn refused<T>(why: PeerRefusal, reason: impl Into<String>) -> Result<T, PeerRefused> {
    Err(PeerRefused {
        why,
        reason: reason.into(),
    })
}

/// What became of an accepted vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoteTaken {
    /// The authority's first vote for the round.
    New,
    /// The same vote again (a resend): nothing changes.
    Resent,
}

/// Counters of the rounds (the metrics endpoint reads them).
#[derive(Debug, Default)]
pub struct RoundCounters {
    pub rounds_completed: AtomicU64,
    pub signatures_collected: AtomicU64,
    /// Valid signatures (ours included) on the latest document computed.
    pub signatures_latest: AtomicU64,
    pub documents_served: AtomicU64,
    /// The round of the document served now (0: none yet).
    pub served_round: AtomicU64,
    vote_refusals: [AtomicU64; PeerRefusal::ALL.len()],
    signature_refusals: [AtomicU64; PeerRefusal::ALL.len()],
    /// Votes accepted per authority, in the authorities file's order.
    votes_received: Mutex<Vec<u64>>,
}

impl RoundCounters {
    pub fn vote_refused(&self, why: PeerRefusal) {
        self.vote_refusals[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn signature_refused(&self, why: PeerRefusal) {
        self.signature_refusals[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn vote_refusals(&self, why: PeerRefusal) -> u64 {
        self.vote_refusals[why as usize].load(Ordering::Relaxed)
    }

    pub fn signature_refusals(&self, why: PeerRefusal) -> u64 {
        self.signature_refusals[why as usize].load(Ordering::Relaxed)
    }

    /// Votes accepted per authority, in file order.
    pub fn votes_received(&self) -> Vec<u64> {
        self.votes_received.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[derive(Default)]
struct RoundState {
    /// The first vote of each authority (by key).
    votes: BTreeMap<[u8; 32], VoteJson>,
    /// A second, different vote: the evidence of equivocation.
    conflicting: BTreeMap<[u8; 32], VoteJson>,
    /// Our document of the round, with the valid signatures collected.
    document: Option<TopologyJson>,
    /// Signatures that came before our document: checked when it exists.
    pending: BTreeMap<[u8; 32], RoundSignature>,
}

/// A document ready to serve: its JSON and text (`servedBy` = us).
#[derive(Clone)]
pub struct Served {
    pub json: Arc<TopologyJson>,
    pub text: Arc<String>,
}

struct Inner {
    rounds: BTreeMap<u64, RoundState>,
    /// The newest document with >= threshold valid signatures.
    served: Option<Served>,
    /// The newest document computed or adopted, whatever its signatures.
    latest: Option<Served>,
}

/// One authority's view of the rounds.
pub struct Rounds {
    authorities: Authorities,
    me: [u8; 32],
    key: SigningKey,
    round_ms: u64,
    validity_ms: u64,
    epoch_length_secs: u64,
    version: String,
    inner: Mutex<Inner>,
    pub counters: RoundCounters,
}

impl Rounds {
    /// `key` must be one of `authorities`' (checked by the caller).
    pub fn new(
        authorities: Authorities,
        key: SigningKey,
        round_ms: u64,
        validity_ms: u64,
        epoch_length_secs: u64,
    ) -> Self {
        let counters = RoundCounters::default();
        *counters.votes_received.lock().unwrap_or_else(|p| p.into_inner()) = vec![0; authorities.list().len()];
        Rounds {
            me: key.verifying_key().to_bytes(),
            authorities,
            key,
            round_ms: round_ms.max(1),
            validity_ms,
            epoch_length_secs,
            version: nym_wire::VERSION.to_string(),
            inner: Mutex::new(Inner {
                rounds: BTreeMap::new(),
                served: None,
                latest: None,
            }),
            counters,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn authorities(&self) -> &Authorities {
        &self.authorities
    }

    pub fn me(&self) -> [u8; 32] {
        self.me
    }

    pub fn round_ms(&self) -> u64 {
        self.round_ms
    }

    /// The round `now_ms` falls in.
    pub fn round_at(&self, now_ms: u64) -> u64 {
        now_ms / self.round_ms
    }

    pub fn start_ms(&self, round: u64) -> u64 {
        round.saturating_mul(self.round_ms)
    }

    /// Votes for `round` are taken until then.
    pub fn vote_deadline_ms(&self, round: u64) -> u64 {
        self.start_ms(round).saturating_add(self.round_ms / 3)
    }

    /// The document of `round` is computed then.
    pub fn compute_at_ms(&self, round: u64) -> u64 {
        self.start_ms(round).saturating_add(self.round_ms / 2)
    }

    fn params(&self, round: u64) -> RoundParams {
        RoundParams {
            round,
            round_ms: self.round_ms,
            validity_ms: self.validity_ms,
            epoch_length_secs: self.epoch_length_secs,
            authorities: self.authorities.list().len(),
        }
    }

    /// The state of `round`, made if it is recent enough to keep.
    fn round_mut<'a>(inner: &'a mut Inner, round: u64, now_round: u64) -> Option<&'a mut RoundState> {
        if round + KEEP_ROUNDS <= now_round || round > now_round {
            return None;
        }
        inner.rounds.retain(|r, _| r + KEEP_ROUNDS > now_round);
        Some(inner.rounds.entry(round).or_default())
    }

    fn who(&self, key: &[u8; 32]) -> String {
        let b58 = encode_key(key);
        match self.authorities.get(key) {
            Some(a) => format!("{b58} ({})", a.url),
            None => b58,
        }
    }

    /// Our own vote for `round`: signed and kept.
    pub fn own_vote(
        &self,
        round: u64,
        mix_nodes: Vec<nym_wire::topology::MixNodeJson>,
        gateway_nodes: Vec<nym_wire::topology::GatewayJson>,
        now_ms: u64,
    ) -> VoteJson {
        let mut vote = VoteJson {
            round,
            epoch_length_secs: self.epoch_length_secs,
            mix_nodes,
            gateway_nodes,
            ..VoteJson::default()
        };
        vote.sign(&self.key);
        let mut inner = self.lock();
        if let Some(state) = Self::round_mut(&mut inner, round, self.round_at(now_ms)) {
            state.votes.insert(self.me, vote.clone());
        }
        vote
    }

    /// A peer's vote (already parsed and verified as `key`'s, see
    /// [`nym_wire::vote::parse_vote`]). `exchanged`: it came from a peer's
    /// list of votes for `round` after the deadline (to catch an authority
    /// voting differently to different peers), not from its author: the
    /// deadline does not apply, the round must be `round`.
    pub fn receive_vote(
        &self,
        vote: VoteJson,
        key: [u8; 32],
        now_ms: u64,
        exchanged: Option<u64>,
    ) -> Result<VoteTaken, PeerRefused> {
        let Some(index) = self.authorities.list().iter().position(|a| a.key == key) else {
            return refused(
                PeerRefusal::Unlisted,
                format!("{} is not in this authority's authorities file", encode_key(&key)),
            );
        };
        let now_round = self.round_at(now_ms);
        match exchanged {
            Some(r) if vote.round != r => {
                return refused(
                    PeerRefusal::WrongRound,
                    format!("a vote for round {} in the list of round {r}", vote.round),
                )
            }
            Some(_) => {}
            None if vote.round != now_round => {
                return refused(
                    PeerRefusal::WrongRound,
                    format!(
                        "a vote for round {}, but this authority is in round {now_round} (check the clocks)",
                        vote.round
                    ),
                )
            }
            None if now_ms > self.vote_deadline_ms(vote.round) => {
                return refused(
                    PeerRefusal::Late,
                    format!(
                        "the vote for round {} came {} ms after its deadline (a third of the round)",
                        vote.round,
                        now_ms - self.vote_deadline_ms(vote.round)
                    ),
                )
            }
            None => {}
        }
        if key == self.me && exchanged.is_none() {
            // Only we sign with our key; someone replaying our vote to us.
            let mut inner = self.lock();
            let ours = inner
                .rounds
                .get_mut(&vote.round)
                .and_then(|s| s.votes.get(&key))
                .cloned();
            return match ours {
                Some(v) if v == vote => Ok(VoteTaken::Resent),
                _ => refused(
                    PeerRefusal::Equivocation,
                    "a vote in this authority's own name that it did not cast",
                ),
            };
        }
        if vote.epoch_length_secs != self.epoch_length_secs {
            tracing::warn!(
                "authority {} votes with key epochs of {} s, ours are {} s: its votes are refused until the operators \
                 agree (--epoch-secs)",
                self.who(&key),
                vote.epoch_length_secs,
                self.epoch_length_secs
            );
            return refused(
                PeerRefusal::Parameters,
                format!(
                    "the vote's key epochs are {} s, this authority's are {} s: every authority must run with the same --epoch-secs",
                    vote.epoch_length_secs, self.epoch_length_secs
                ),
            );
        }
        let mut inner = self.lock();
        let Some(state) = Self::round_mut(&mut inner, vote.round, now_round) else {
            return refused(PeerRefusal::WrongRound, format!("round {} is not kept", vote.round));
        };
        if let Some(first) = state.votes.get(&key) {
            if *first == vote {
                return Ok(VoteTaken::Resent);
            }
            let (a, b) = (first.digest(), vote.digest());
            if !state.conflicting.contains_key(&key) {
                state.conflicting.insert(key, vote);
                tracing::warn!(
                    "authority {} EQUIVOCATED in round {}: two different votes (sha256 {a} and {b}); its votes are \
                     dropped for the round",
                    self.who(&key),
                    first.round
                );
            }
            return refused(
                PeerRefusal::Equivocation,
                format!(
                    "a second, different vote by {} for round {} (sha256 {a}, then {b})",
                    encode_key(&key),
                    first.round
                ),
            );
        }
        state.votes.insert(key, vote);
        drop(inner);
        let mut received = self.counters.votes_received.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = received.get_mut(index) {
            *n += 1;
        }
        Ok(VoteTaken::New)
    }

    /// Every vote held for `round` (the conflicting ones too: evidence for peers).
    pub fn votes_of(&self, round: u64) -> Vec<VoteJson> {
        let inner = self.lock();
        let Some(state) = inner.rounds.get(&round) else {
            return Vec::new();
        };
        state
            .votes
            .values()
            .chain(state.conflicting.values())
            .cloned()
            .collect()
    }

    /// The authorities caught equivocating in `round`.
    pub fn equivocators(&self, round: u64) -> Vec<[u8; 32]> {
        let inner = self.lock();
        inner
            .rounds
            .get(&round)
            .map(|s| s.conflicting.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Computes, signs and keeps our document of `round` from the votes kept
    /// (an equivocator's dropped); the signature to send to the peers.
    pub fn compute(&self, round: u64, now_ms: u64) -> Option<RoundSignature> {
        let mut inner = self.lock();
        let state = Self::round_mut(&mut inner, round, self.round_at(now_ms))?;
        let equivocators: BTreeSet<[u8; 32]> = state.conflicting.keys().copied().collect();
        let votes: Vec<&VoteJson> = state
            .votes
            .iter()
            .filter(|(k, _)| !equivocators.contains(*k))
            .map(|(_, v)| v)
            .collect();
        let mut doc = consensus::compute(&votes, &self.params(round), &self.version);
        doc.served_by = encode_key(&self.me);
        let ours = doc.signature_by(&self.key);
        doc.add_signature(ours.clone());
        let pending = std::mem::take(&mut state.pending);
        let mut mismatched = 0;
        for (_, s) in pending {
            let s = DocumentSignature {
                key: s.key,
                signature: s.signature,
            };
            if doc.signature_is_valid(&s) {
                doc.add_signature(s);
            } else {
                mismatched += 1;
            }
        }
        let collected = doc.signatures.len() as u64;
        state.document = Some(doc);
        for _ in 0..mismatched {
            self.counters.signature_refused(PeerRefusal::Mismatch);
        }
        self.counters
            .signatures_collected
            .fetch_add(collected, Ordering::Relaxed);
        self.counters.rounds_completed.fetch_add(1, Ordering::Relaxed);
        self.promote(&mut inner, round);
        tracing::debug!(
            "round {round}: document computed from {} votes",
            votes_len(&inner, round)
        );
        Some(RoundSignature {
            round,
            key: ours.key,
            signature: ours.signature,
        })
    }

    /// A peer's signature over its document of a round: kept if it is valid
    /// over ours (or ours is not computed yet).
    pub fn receive_signature(&self, sig: RoundSignature, now_ms: u64) -> Result<(), PeerRefused> {
        let Ok(key) = decode_key(&sig.key, "key") else {
            return refused(PeerRefusal::Bad, "the signature's key is not base58 of 32 bytes");
        };
        if !self.authorities.contains(&key) {
            return refused(
                PeerRefusal::Unlisted,
                format!("{} is not in this authority's authorities file", sig.key),
            );
        }
        let mut inner = self.lock();
        let round = sig.round;
        let Some(state) = Self::round_mut(&mut inner, round, self.round_at(now_ms)) else {
            return refused(PeerRefusal::WrongRound, format!("round {round} is not kept"));
        };
        let Some(doc) = state.document.as_mut() else {
            if state.pending.len() < self.authorities.list().len() {
                state.pending.insert(key, sig);
            }
            return Ok(());
        };
        let s = DocumentSignature {
            key: sig.key,
            signature: sig.signature,
        };
        if !doc.signature_is_valid(&s) {
            tracing::debug!(
                "round {round}: a signature by {} over another document, ignored",
                self.who(&key)
            );
            return refused(
                PeerRefusal::Mismatch,
                format!("the signature is not over this authority's document of round {round}"),
            );
        }
        if doc.signatures.iter().any(|x| x.key == s.key) {
            return Ok(());
        }
        doc.add_signature(s);
        self.counters.signatures_collected.fetch_add(1, Ordering::Relaxed);
        self.promote(&mut inner, round);
        Ok(())
    }

    /// Makes our document of `round` the latest (and the one served, with
    /// enough signatures) if it is newer.
    fn promote(&self, inner: &mut Inner, round: u64) {
        let Some(doc) = inner.rounds.get(&round).and_then(|s| s.document.clone()) else {
            return;
        };
        let valid = doc
            .verify_signatures(Some(&self.authorities))
            .map(|s| s.keys.len())
            .unwrap_or(0);
        if inner.latest.as_ref().is_none_or(|l| l.json.round <= round) {
            self.counters
                .signatures_latest
                .store(doc.signatures.len() as u64, Ordering::Relaxed);
        }
        let served = serve(doc);
        if inner.latest.as_ref().is_none_or(|l| l.json.round <= round) {
            inner.latest = Some(served.clone());
        }
        if valid >= self.authorities.threshold() && inner.served.as_ref().is_none_or(|s| s.json.round <= round) {
            self.counters.served_round.store(round, Ordering::Relaxed);
            inner.served = Some(served);
        }
    }

    /// A document fetched from a peer (catching up at start, or after
    /// missing rounds): served if it has enough valid signatures by our
    /// authorities, is unexpired and newer than ours. Whether it was taken.
    pub fn adopt(&self, mut doc: TopologyJson, now_ms: u64) -> Result<bool, String> {
        // Not `verify_topology`: a network with a layer still empty is a
        // document to serve all the same.
        nym_wire::signed::verify_document(&doc, Some(&self.authorities), now_ms).map_err(|e| e.to_string())?;
        for m in &doc.mix_nodes {
            m.verify_signature().map_err(|e| e.to_string())?;
        }
        for g in &doc.gateway_nodes {
            g.verify_signature().map_err(|e| e.to_string())?;
        }
        let mut inner = self.lock();
        if inner.served.as_ref().is_some_and(|s| s.json.round >= doc.round) {
            return Ok(false);
        }
        doc.served_by = encode_key(&self.me);
        let served = serve(doc);
        self.counters.served_round.store(served.json.round, Ordering::Relaxed);
        if inner.latest.as_ref().is_none_or(|l| l.json.round <= served.json.round) {
            inner.latest = Some(served.clone());
        }
        inner.served = Some(served);
        Ok(true)
    }

    /// What `GET /api/presence/topology` serves: the newest document with
    /// enough signatures, else the newest we have (so a reader sees why it
    /// is refused); None before the first round.
    pub fn document(&self) -> Option<Served> {
        let inner = self.lock();
        inner.served.clone().or_else(|| inner.latest.clone())
    }

    /// The round of the document served now (None: none with enough signatures).
    pub fn served_round(&self) -> Option<u64> {
        self.lock().served.as_ref().map(|s| s.json.round)
    }
}

fn votes_len(inner: &Inner, round: u64) -> usize {
    inner.rounds.get(&round).map_or(0, |s| s.votes.len())
}

fn serve(doc: TopologyJson) -> Served {
    // serde_json can't fail on these plain structs.
    let text = Arc::new(serde_json::to_string(&doc).unwrap_or_default());
    Served {
        json: Arc::new(doc),
        text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nym_wire::authority::Authority;

    const R: u64 = 1000;
    const ROUND: u64 = 1_800_000_000;
    const START: u64 = ROUND * R;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn authorities(n: u8) -> Authorities {
        let list = (1..=n)
            .map(|i| Authority {
                key: key(i).verifying_key().to_bytes(),
                url: format!("http://127.0.0.1:{}", 9000 + i as u16),
            })
            .collect();
        Authorities::new(list, None).unwrap()
    }

    fn rounds(me: u8) -> Rounds {
        Rounds::new(authorities(3), key(me), R, 300_000, 60)
    }

    fn vote(by: u8, round: u64, epoch: u64, location_seed: u8) -> (VoteJson, [u8; 32]) {
        let mut m = nym_wire::topology::MixNodeJson {
            host: format!("127.0.0.1:{location_seed}"),
            ..Default::default()
        };
        m.sign(&key(50), 1);
        let mut v = VoteJson {
            round,
            epoch_length_secs: epoch,
            mix_nodes: vec![m],
            ..Default::default()
        };
        v.sign(&key(by));
        let k = v.verify().unwrap();
        (v, k)
    }

    #[test]
    fn votes_are_taken_only_in_their_round_before_the_deadline_from_listed_keys() {
        let r = rounds(1);
        let (v, k) = vote(2, ROUND, 60, 1);
        assert_eq!(r.receive_vote(v.clone(), k, START + 10, None), Ok(VoteTaken::New));
        assert_eq!(r.receive_vote(v.clone(), k, START + 20, None), Ok(VoteTaken::Resent));
        let (late, k3) = vote(3, ROUND, 60, 1);
        assert_eq!(
            r.receive_vote(late.clone(), k3, r.vote_deadline_ms(ROUND) + 1, None)
                .unwrap_err()
                .why,
            PeerRefusal::Late
        );
        assert_eq!(
            r.receive_vote(late.clone(), k3, START + R + 1, None).unwrap_err().why,
            PeerRefusal::WrongRound
        );
        // the exchange after the deadline may bring it in
        assert_eq!(
            r.receive_vote(late, k3, r.vote_deadline_ms(ROUND) + 1, Some(ROUND)),
            Ok(VoteTaken::New)
        );
        let (unlisted, k9) = vote(9, ROUND, 60, 1);
        assert_eq!(
            r.receive_vote(unlisted, k9, START, None).unwrap_err().why,
            PeerRefusal::Unlisted
        );
        let (other_params, k2) = vote(2, ROUND, 61, 1);
        assert_eq!(
            r.receive_vote(other_params, k2, START, None).unwrap_err().why,
            PeerRefusal::Parameters
        );
        assert_eq!(r.counters.votes_received(), vec![0, 1, 1]);
    }

    #[test]
    fn a_second_different_vote_is_equivocation_and_drops_the_authority_for_the_round() {
        let r = rounds(1);
        let (a, k) = vote(2, ROUND, 60, 1);
        let (b, _) = vote(2, ROUND, 60, 2);
        r.receive_vote(a, k, START, None).unwrap();
        let e = r.receive_vote(b.clone(), k, START + 1, None).unwrap_err();
        assert_eq!(e.why, PeerRefusal::Equivocation);
        assert!(e.reason.contains(&b.digest()), "{}", e.reason);
        assert_eq!(r.equivocators(ROUND), vec![k]);
        assert_eq!(r.votes_of(ROUND).len(), 2, "both votes are kept as evidence");
        // also when the second vote comes from a peer's list
        let r = rounds(1);
        let (a, k) = vote(2, ROUND, 60, 1);
        r.receive_vote(a, k, START, None).unwrap();
        assert!(r.receive_vote(b, k, START + 600, Some(ROUND)).is_err());
        assert_eq!(r.equivocators(ROUND), vec![k]);
        // nobody votes in our name
        let (mine, k1) = vote(1, ROUND, 60, 1);
        assert_eq!(
            r.receive_vote(mine, k1, START, None).unwrap_err().why,
            PeerRefusal::Equivocation
        );
    }

    #[test]
    fn a_document_is_served_once_enough_authorities_signed_it_and_other_signatures_are_ignored() {
        let (a, b) = (rounds(1), rounds(2));
        assert!(a.document().is_none());
        let va = a.own_vote(ROUND, vec![], vec![], START);
        let vb = b.own_vote(ROUND, vec![], vec![], START);
        let kb = vb.verify().unwrap();
        let ka = va.verify().unwrap();
        a.receive_vote(vb, kb, START + 1, None).unwrap();
        // b's signature comes before a computed its document: kept aside
        b.receive_vote(va, ka, START + 1, None).unwrap();
        let sb = b.compute(ROUND, START + R / 2).unwrap();
        a.receive_signature(sb.clone(), START + R / 2).unwrap();
        assert!(a.served_round().is_none());
        let sa = a.compute(ROUND, START + R / 2).unwrap();
        assert_eq!(a.served_round(), Some(ROUND), "a's and b's signatures: 2 of 3");
        b.receive_signature(sa, START + R / 2 + 1).unwrap();
        let (da, db) = (a.document().unwrap(), b.document().unwrap());
        assert_eq!(da.json.signed_bytes(), db.json.signed_bytes());
        assert_eq!(da.json.signatures.len(), 2);
        assert_eq!(da.json.issued_at, START);
        // a signature over another document: refused, counted
        // (c computes with another validity: another document)
        let c = Rounds::new(authorities(3), key(3), R, 100_000, 60);
        c.own_vote(ROUND, vec![], vec![], START);
        let sc = c.compute(ROUND, START + R / 2).unwrap();
        assert_eq!(
            a.receive_signature(sc, START + R / 2 + 2).unwrap_err().why,
            PeerRefusal::Mismatch
        );
        assert_eq!(a.document().unwrap().json.signatures.len(), 2);
        // a fresh authority adopts the signed document
        let d = rounds(3);
        assert_eq!(d.adopt((*da.json).clone(), START + R), Ok(true));
        assert_eq!(d.document().unwrap().json.served_by, encode_key(&d.me()));
        let mut one = (*da.json).clone();
        one.signatures.truncate(1);
        assert!(rounds(3).adopt(one, START + R).is_err());
        // old rounds are dropped
        assert!(a.receive_signature(sb, START + KEEP_ROUNDS * R + 1).is_err());
    }
}
