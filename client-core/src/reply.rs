//! Anonymous replies with single-use reply blocks (SURBs).
//!
//! `send_anonymous` ships, inside the message, N SURBs: Sphinx headers routed
//! back to the sender's own gateway, made with sphinx-packet's single-seed
//! version (260), so the replier can fill them but can't predict how the
//! payload looks at any later hop (it can't trace its reply with colluding
//! mixnodes). The sender keeps each SURB's recovery material, indexed by the
//! SURB's identifier, and alone can read what comes back. The receiver never
//! learns the sender's address: only a sender tag, a stable pseudonym per
//! (sender, recipient) pair, under which its SURBs are kept.
//!
//! Every reassembled message starts with one envelope byte saying what it is.

use crate::address::Recipient;
use crate::error::{Error, Result};
use nym_wire::topology::Topology;
use nym_wire::epoch::KeyEpoch;
use hkdf::Hkdf;
use rand::CryptoRng;
use sha2::Sha256;
use sphinx_packet::header::delays::Delay;
use sphinx_packet::route::{Destination, DestinationAddressBytes};
use sphinx_packet::version::SINGLE_SEED_SURB_VERSION;
use sphinx_packet::{SURBMaterial, SurbReplyRecovery, SURB};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use x25519_dalek::StaticSecret;

pub(crate) const SENDER_TAG_LEN: usize = 16;
/// What the recipient of an anonymous message knows its sender by: the
/// same for every message of one sender to one recipient, unlinkable to
/// the sender's address. Replies name it.
pub type SenderTag = [u8; SENDER_TAG_LEN];
/// Header + first hop + the one payload key seed a single-seed SURB hands out.
pub(crate) const SPHINX_SURB_LEN: usize = sphinx_packet::header::HEADER_SIZE + 32 + 16;
/// A SURB as clients pass and keep it: the key epoch its route was built
/// for (4 bytes, big-endian; the reply's frame must name it), then the
/// Sphinx SURB.
pub(crate) const SURB_LEN: usize = 4 + SPHINX_SURB_LEN;
/// Most SURBs one message may carry, and one request may ask for.
pub const MAX_SURBS_PER_MESSAGE: usize = 200;
/// Recovery material kept for replies that haven't come (oldest dropped).
const MAX_RECOVERIES: usize = 100_000;
/// Used SURBs whose replies still open when delivered again (memory only).
pub(crate) const MAX_SPENT: usize = 4096;

const STORE_MAGIC: &[u8; 9] = b"NYMREPLY2";

const PLAIN: u8 = 0;
const REPLIABLE: u8 = 1;
const SURB_REQUEST: u8 = 2;
const MORE_SURBS: u8 = 3;

/// What a reassembled message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Envelope {
    /// A message with nothing attached (its sender is in it, or it is a reply).
    Plain(Vec<u8>),
    /// An anonymous message carrying SURBs for replies under `sender_tag`.
    Repliable {
        /// What the recipient knows the sender by.
        sender_tag: SenderTag,
        /// Single-use reply blocks back to the sender.
        surbs: Vec<Vec<u8>>,
        /// The message.
        message: Vec<u8>,
    },
    /// The replier (through a SURB) asks the sender for `count` more SURBs.
    SurbRequest {
        /// The conversation, as the replier knows it.
        sender_tag: SenderTag,
        /// How many SURBs are wanted.
        count: u16,
    },
    /// The sender tops up the replier's SURBs; never shown to the application.
    MoreSurbs {
        /// The conversation they are for.
        sender_tag: SenderTag,
        /// The new reply blocks.
        surbs: Vec<Vec<u8>>,
    },
}

fn encode_surbs(out: &mut Vec<u8>, surbs: &[Vec<u8>]) {
    out.extend_from_slice(&(surbs.len() as u16).to_be_bytes());
    for s in surbs {
        out.extend_from_slice(s);
    }
}

fn decode_surbs(bytes: &[u8]) -> Result<(Vec<Vec<u8>>, &[u8])> {
    let bad = |why: &str| nym_wire::Error::MalformedPacket(format!("envelope: {why}"));
    let (count, rest) = bytes.split_at_checked(2).ok_or_else(|| bad("no SURB count"))?;
    let count = usize::from(u16::from_be_bytes([count[0], count[1]]));
    if count > MAX_SURBS_PER_MESSAGE {
        return Err(bad("too many SURBs").into());
    }
    let (surbs, rest) = rest.split_at_checked(count * SURB_LEN).ok_or_else(|| bad("truncated SURBs"))?;
    Ok((surbs.chunks(SURB_LEN).map(<[u8]>::to_vec).collect(), rest))
}

fn tag_of(bytes: &[u8]) -> Result<(SenderTag, &[u8])> {
    let (tag, rest) = bytes
        .split_at_checked(SENDER_TAG_LEN)
        .ok_or_else(|| nym_wire::Error::MalformedPacket("envelope: no sender tag".into()))?;
    let mut t = [0u8; SENDER_TAG_LEN];
    t.copy_from_slice(tag);
    Ok((t, rest))
}

impl Envelope {
    /// The bytes a message is fragmented from (a kind byte, then its fields).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Envelope::Plain(m) => [&[PLAIN][..], m].concat(),
            Envelope::Repliable { sender_tag, surbs, message } => {
                let mut out = vec![REPLIABLE];
                out.extend_from_slice(sender_tag);
                encode_surbs(&mut out, surbs);
                out.extend_from_slice(message);
                out
            }
            Envelope::SurbRequest { sender_tag, count } => [&[SURB_REQUEST][..], sender_tag, &count.to_be_bytes()].concat(),
            Envelope::MoreSurbs { sender_tag, surbs } => {
                let mut out = vec![MORE_SURBS];
                out.extend_from_slice(sender_tag);
                encode_surbs(&mut out, surbs);
                out
            }
        }
    }

    /// Reads a reassembled message; refuses unknown kinds, truncation and
    /// trailing bytes.
    pub fn decode(mut bytes: Vec<u8>) -> Result<Self> {
        match bytes.first().copied() {
            Some(PLAIN) => {
                bytes.remove(0);
                Ok(Envelope::Plain(bytes))
            }
            Some(REPLIABLE) => {
                let (sender_tag, rest) = tag_of(&bytes[1..])?;
                let (surbs, message) = decode_surbs(rest)?;
                Ok(Envelope::Repliable { sender_tag, surbs, message: message.to_vec() })
            }
            Some(SURB_REQUEST) => {
                let (sender_tag, rest) = tag_of(&bytes[1..])?;
                match rest {
                    [a, b] => Ok(Envelope::SurbRequest { sender_tag, count: u16::from_be_bytes([*a, *b]) }),
                    _ => Err(nym_wire::Error::MalformedPacket("envelope: bad SURB request".into()).into()),
                }
            }
            Some(MORE_SURBS) => {
                let (sender_tag, rest) = tag_of(&bytes[1..])?;
                let (surbs, rest) = decode_surbs(rest)?;
                if !rest.is_empty() {
                    return Err(nym_wire::Error::MalformedPacket("envelope: trailing bytes".into()).into());
                }
                Ok(Envelope::MoreSurbs { sender_tag, surbs })
            }
            Some(other) => Err(nym_wire::Error::MalformedPacket(format!("envelope: unknown kind {other}")).into()),
            None => Err(nym_wire::Error::MalformedPacket("envelope: empty message".into()).into()),
        }
    }
}

/// The tag `secret`'s owner uses with `recipient`: stable, so the recipient
/// can keep a conversation, and unlinkable across recipients.
pub(crate) fn sender_tag_for(secret: &StaticSecret, recipient: &Recipient) -> SenderTag {
    let hk = Hkdf::<Sha256>::new(Some(b"nym-sender-tag-v1"), secret.as_bytes());
    let mut tag = [0u8; SENDER_TAG_LEN];
    // 16 bytes is always a valid HKDF-SHA256 output length.
    let _ = hk.expand(&recipient.to_bytes(), &mut tag);
    tag
}

/// A sender tag as text (base58), as the websocket API shows it.
pub fn encode_sender_tag(tag: &SenderTag) -> String {
    bs58::encode(tag).into_string()
}

/// Reads what [`encode_sender_tag`] wrote.
pub fn decode_sender_tag(text: &str) -> Result<SenderTag> {
    let bytes = bs58::decode(text)
        .into_vec()
        .map_err(|e| Error::UnknownSenderTag(format!("'{text}' is not base58: {e}")))?;
    bytes
        .try_into()
        .map_err(|_| Error::UnknownSenderTag(format!("'{text}' is not a {SENDER_TAG_LEN}-byte sender tag")))
}

/// A fresh SURB back to `own`, built with the nodes' keys of `epoch`
/// (`epoch || SURB`, [`SURB_LEN`] bytes), and the material to read what
/// comes through it.
pub(crate) fn create_surb<R: CryptoRng + ?Sized>(
    rng: &mut R,
    topology: &Topology,
    own: &Recipient,
    average_hop_delay: Duration,
    epoch: KeyEpoch,
) -> Result<(Vec<u8>, SurbReplyRecovery)> {
    let route = topology.random_route(rng, &own.gateway_key, epoch)?;
    let delays: Vec<Delay> = route
        .iter()
        .map(|_| Delay::new_from_nanos(crate::packet::sample_exp(rng, average_hop_delay).as_nanos() as u64))
        .collect();
    let mut identifier = [0u8; 16];
    while identifier == [0u8; 16] {
        rng.fill_bytes(&mut identifier);
    }
    let destination = Destination::new(DestinationAddressBytes::from_bytes(own.client_key), identifier);
    let material = SURBMaterial::new(route, delays, destination, SINGLE_SEED_SURB_VERSION);
    let (surb, recovery) = SURB::new_recoverable(StaticSecret::random_from_rng(rng), material)?;
    Ok(([&epoch.to_be_bytes()[..], &surb.to_bytes()].concat(), recovery))
}

/// The key epoch a SURB (as [`create_surb`] makes it) was built for, and
/// the Sphinx SURB.
pub(crate) fn split_surb(surb: &[u8]) -> Result<(KeyEpoch, &[u8])> {
    match surb.split_first_chunk::<4>() {
        Some((epoch, rest)) if rest.len() == SPHINX_SURB_LEN => Ok((KeyEpoch::from_be_bytes(*epoch), rest)),
        _ => Err(nym_wire::Error::MalformedPacket(format!("a SURB is {SURB_LEN} bytes, not {}", surb.len())).into()),
    }
}

/// Reply state both sides keep, and persist across restarts: what we need
/// to read replies to our anonymous messages, and the SURBs others gave us.
#[derive(Default)]
pub struct ReplyStore {
    /// SURB identifier -> recovery material (serialised).
    recoveries: HashMap<[u8; 16], Vec<u8>>,
    recovery_order: VecDeque<[u8; 16]>,
    /// Our tag -> the recipient it names (to answer SURB requests).
    our_tags: HashMap<SenderTag, Recipient>,
    /// Their tag -> unused SURBs they sent us.
    surbs: HashMap<SenderTag, VecDeque<Vec<u8>>>,
    /// Recovery material of recently used SURBs (memory only): the gateway
    /// delivers a reply packet again when our ack was lost with a
    /// connection, and it must still open (the fragment is then a duplicate).
    spent: HashMap<[u8; 16], Vec<u8>>,
    spent_order: VecDeque<[u8; 16]>,
}

impl std::fmt::Debug for ReplyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReplyStore({} recoveries, {} tags with SURBs)", self.recoveries.len(), self.surbs.len())
    }
}

impl ReplyStore {
    pub(crate) fn remember_recovery(&mut self, recovery: &SurbReplyRecovery) {
        let id = *recovery.identifier();
        if self.recoveries.insert(id, recovery.to_bytes()).is_none() {
            self.recovery_order.push_back(id);
        }
        while self.recovery_order.len() > MAX_RECOVERIES {
            if let Some(old) = self.recovery_order.pop_front() {
                self.recoveries.remove(&old);
            }
        }
    }

    /// Takes (single use) the recovery material of SURB `identifier`. A
    /// SURB used in the last [`MAX_SPENT`] replies still opens, so a reply
    /// packet the gateway delivers again is recognised as a duplicate.
    pub(crate) fn take_recovery(&mut self, identifier: &[u8; 16]) -> Option<SurbReplyRecovery> {
        let bytes = match self.recoveries.remove(identifier) {
            Some(bytes) => {
                self.recovery_order.retain(|i| i != identifier);
                self.spent.insert(*identifier, bytes.clone());
                self.spent_order.push_back(*identifier);
                while self.spent_order.len() > MAX_SPENT {
                    if let Some(old) = self.spent_order.pop_front() {
                        self.spent.remove(&old);
                    }
                }
                bytes
            }
            None => self.spent.get(identifier)?.clone(),
        };
        SurbReplyRecovery::from_bytes(&bytes).ok()
    }

    pub(crate) fn remember_tag(&mut self, tag: SenderTag, recipient: Recipient) {
        self.our_tags.insert(tag, recipient);
    }

    pub(crate) fn recipient_of_tag(&self, tag: &SenderTag) -> Option<Recipient> {
        self.our_tags.get(tag).copied()
    }

    pub(crate) fn add_surbs(&mut self, tag: SenderTag, surbs: Vec<Vec<u8>>) {
        self.surbs.entry(tag).or_default().extend(surbs.into_iter().filter(|s| s.len() == SURB_LEN));
    }

    pub(crate) fn knows_tag(&self, tag: &SenderTag) -> bool {
        self.surbs.contains_key(tag)
    }

    pub(crate) fn surbs_left(&self, tag: &SenderTag) -> usize {
        self.surbs.get(tag).map_or(0, VecDeque::len)
    }

    pub(crate) fn take_surb(&mut self, tag: &SenderTag) -> Option<Vec<u8>> {
        self.surbs.get_mut(tag)?.pop_front()
    }

    /// Drops the SURBs of `tag` whose epoch `usable` refuses (their nodes
    /// retired those keys, or are about to); returns how many.
    pub(crate) fn discard_surbs(&mut self, tag: &SenderTag, usable: impl Fn(KeyEpoch) -> bool) -> usize {
        let Some(surbs) = self.surbs.get_mut(tag) else { return 0 };
        let before = surbs.len();
        surbs.retain(|s| split_surb(s).is_ok_and(|(epoch, _)| usable(epoch)));
        before - surbs.len()
    }

    /// The tags we hold SURBs for, and the newest epoch among each one's SURBs.
    pub(crate) fn surb_epochs(&self) -> Vec<(SenderTag, KeyEpoch)> {
        self.surbs
            .iter()
            .filter_map(|(tag, surbs)| Some((*tag, surbs.iter().filter_map(|s| split_surb(s).ok()).map(|(e, _)| e).max()?)))
            .collect()
    }

    /// Serialises the whole store (keys inside: write it 0600).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = STORE_MAGIC.to_vec();
        out.extend_from_slice(&(self.recovery_order.len() as u32).to_be_bytes());
        for id in &self.recovery_order {
            if let Some(r) = self.recoveries.get(id) {
                out.extend_from_slice(&(r.len() as u16).to_be_bytes());
                out.extend_from_slice(r);
            } else {
                out.extend_from_slice(&0u16.to_be_bytes());
            }
        }
        out.extend_from_slice(&(self.our_tags.len() as u32).to_be_bytes());
        for (tag, r) in &self.our_tags {
            out.extend_from_slice(tag);
            out.extend_from_slice(&r.to_bytes());
        }
        out.extend_from_slice(&(self.surbs.len() as u32).to_be_bytes());
        for (tag, surbs) in &self.surbs {
            out.extend_from_slice(tag);
            out.extend_from_slice(&(surbs.len() as u32).to_be_bytes());
            for s in surbs {
                out.extend_from_slice(s);
            }
        }
        out
    }

    /// Reads a store [`ReplyStore::to_bytes`] wrote. One written before key
    /// epochs (`NYMREPLY1`) keeps its recoveries and tags; its SURBs were
    /// built for keys no node holds any more and are dropped.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader(bytes);
        let surb_len = match r.take(9)? {
            m if m == STORE_MAGIC => SURB_LEN,
            b"NYMREPLY1" => SPHINX_SURB_LEN,
            _ => return Err(nym_wire::Error::MalformedFrame("reply store: not a reply store file".into()).into()),
        };
        let mut store = ReplyStore::default();
        for _ in 0..r.u32()? {
            let len = usize::from(u16::from_be_bytes(r.array()?));
            if len > 0 {
                let rec = SurbReplyRecovery::from_bytes(r.take(len)?)
                    .map_err(|e| nym_wire::Error::MalformedFrame(format!("reply store: {e}")))?;
                store.remember_recovery(&rec);
            }
        }
        for _ in 0..r.u32()? {
            let tag: SenderTag = r.array()?;
            let recipient = Recipient::from_bytes(r.take(64)?)?;
            store.our_tags.insert(tag, recipient);
        }
        for _ in 0..r.u32()? {
            let tag: SenderTag = r.array()?;
            let n = r.u32()? as usize;
            let surbs = (0..n).map(|_| r.take(surb_len).map(<[u8]>::to_vec)).collect::<Result<Vec<_>>>()?;
            let surbs = if surb_len == SURB_LEN { surbs.into() } else { VecDeque::new() };
            store.surbs.insert(tag, surbs);
        }
        Ok(store)
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let (head, rest) = self
            .0
            .split_at_checked(n)
            .ok_or_else(|| nym_wire::Error::MalformedFrame("reply store: truncated".into()))?;
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn envelopes_round_trip() {
        let surbs = vec![vec![1u8; SURB_LEN], vec![2u8; SURB_LEN]];
        for e in [
            Envelope::Plain(b"hi".to_vec()),
            Envelope::Plain(vec![]),
            Envelope::Repliable { sender_tag: [3; 16], surbs: surbs.clone(), message: b"anon".to_vec() },
            Envelope::SurbRequest { sender_tag: [4; 16], count: 9 },
            Envelope::MoreSurbs { sender_tag: [5; 16], surbs },
        ] {
            assert_eq!(Envelope::decode(e.encode()).unwrap(), e);
        }
        assert!(Envelope::decode(vec![]).is_err());
        assert!(Envelope::decode(vec![9]).is_err());
        assert!(Envelope::decode(vec![REPLIABLE, 1, 2]).is_err());
    }

    proptest! {
        #[test]
        fn garbage_envelopes_and_stores_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = Envelope::decode(bytes.clone());
            let _ = ReplyStore::from_bytes(&bytes);
        }
    }

    #[test]
    fn surbs_are_kept_with_their_epoch_and_retired_ones_discarded() {
        let surb = |epoch: KeyEpoch| [&epoch.to_be_bytes()[..], &[7u8; SPHINX_SURB_LEN]].concat();
        let mut store = ReplyStore::default();
        store.add_surbs([1; 16], vec![surb(5), surb(6), surb(6), vec![0; SPHINX_SURB_LEN]]);
        assert_eq!(store.surbs_left(&[1; 16]), 3, "a SURB without its epoch is not kept");
        assert_eq!(store.surb_epochs(), vec![([1; 16], 6)]);
        assert_eq!(split_surb(&surb(6)).unwrap(), (6, &[7u8; SPHINX_SURB_LEN][..]));
        assert!(split_surb(&surb(6)[1..]).is_err());
        let again = ReplyStore::from_bytes(&store.to_bytes()).unwrap();
        assert_eq!(again.surbs_left(&[1; 16]), 3);
        assert_eq!(store.discard_surbs(&[1; 16], |e| e >= 6), 1);
        assert_eq!(store.surbs_left(&[1; 16]), 2);

        // a store written before epochs: tags stay, its SURBs go
        let mut v1 = store.to_bytes();
        v1[..9].copy_from_slice(b"NYMREPLY1");
        let tag_count_at = v1.len() - 4 - 16 - 4 - 2 * SURB_LEN;
        v1.truncate(tag_count_at);
        v1.extend_from_slice(&1u32.to_be_bytes());
        v1.extend_from_slice(&[1; 16]);
        v1.extend_from_slice(&1u32.to_be_bytes());
        v1.extend_from_slice(&[7u8; SPHINX_SURB_LEN]);
        let old = ReplyStore::from_bytes(&v1).unwrap();
        assert_eq!(old.surbs_left(&[1; 16]), 0);
        assert!(old.knows_tag(&[1; 16]), "the conversation is known; it has no SURBs");
    }

    #[test]
    fn tags_are_stable_per_recipient_and_parse_back() {
        let s = StaticSecret::from([1; 32]);
        let a = Recipient::new([1; 32], [2; 32]);
        let b = Recipient::new([3; 32], [2; 32]);
        assert_eq!(sender_tag_for(&s, &a), sender_tag_for(&s, &a));
        assert_ne!(sender_tag_for(&s, &a), sender_tag_for(&s, &b));
        let t = sender_tag_for(&s, &a);
        assert_eq!(decode_sender_tag(&encode_sender_tag(&t)).unwrap(), t);
        assert!(decode_sender_tag("abc").is_err());
        assert!(decode_sender_tag("0OIl").is_err());
    }
}
