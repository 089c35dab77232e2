//! Splitting messages into fixed-size fragments and putting them back together.
//!
//! Header (11 bytes): `set id (u32 BE, non-zero) || total (u8) || position
//! (u8, 1-based) || link kind (u8: 0 none, 1 previous set, 2 next set) ||
//! link set id (u32 BE, 0 when none)`. A set holds at most 255 fragments;
//! longer messages are chains of sets: the first fragment of every set but
//! the first names the previous set, the last fragment of every full set but
//! the last names the next one. Fragments may arrive in any order, twice,
//! or never (then the set is dropped after a timeout).
//!
//! Each fragment may come with a [`Receipt`]: the gateway delivery it came
//! in, which the client acknowledges only when nothing depends on it any
//! more. The reassembler holds a fragment's receipt as long as it holds the
//! fragment; receipts whose fragment is not needed (duplicates, dropped
//! sets) are released at once, and those of a completed message go out with
//! it ([`Reassembler::take_completed`]).

use crate::error::Result;
use rand::Rng;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// Bytes of fragment header before the data: set id (4), total (1),
/// position (1), link flag (1) and linked set id (4).
pub const HEADER_LEN: usize = 11;
pub(crate) const MAX_SET_LEN: usize = 255;
/// Longest chain walked; 255 sets of 255 fragments is far past any size limit.
const MAX_CHAIN: usize = 255;
/// Completed set ids remembered so late duplicates aren't delivered twice.
const REMEMBERED_COMPLETED: usize = 65_536;
/// What a pending set costs besides its data: its slot table. Charged to the
/// budget, so empty fragments can't open sets for free.
const SET_OVERHEAD: usize = 64;
const SLOT_OVERHEAD: usize = std::mem::size_of::<Option<Slot>>();
/// Most sets pending at once (a 64 MiB message is ~170 sets); bounds the
/// eviction scan too.
const MAX_PENDING_SETS: usize = 16_384;

/// How a fragment's set joins the message's other sets (a set holds at
/// most 255 fragments; longer messages chain sets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// The message is this one set.
    None,
    /// First fragment of a set: the set before it in the message.
    Previous(u32),
    /// Last fragment of a set: the set after it in the message.
    Next(u32),
}

/// One packet's share of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// The set it belongs to (random, chosen by the sender).
    pub set_id: u32,
    /// How many fragments its set has.
    pub total: u8,
    /// Its place in the set, from 0.
    pub position: u8,
    /// The neighbouring set, on a set's first or last fragment.
    pub link: Link,
    /// Its share of the message.
    pub data: Vec<u8>,
}

impl Fragment {
    /// Header, then data: what a packet's body carries.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, id) = match self.link {
            Link::None => (0u8, 0u32),
            Link::Previous(id) => (1, id),
            Link::Next(id) => (2, id),
        };
        let mut out = Vec::with_capacity(HEADER_LEN + self.data.len());
        out.extend_from_slice(&self.set_id.to_be_bytes());
        out.push(self.total);
        out.push(self.position);
        out.push(kind);
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&self.data);
        out
    }

    /// Reads what [`Fragment::encode`] wrote; refuses inconsistent headers.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let bad = |why: &str| Err(nym_wire::Error::MalformedPacket(format!("fragment: {why}")).into());
        if bytes.len() < HEADER_LEN {
            return bad("shorter than its header");
        }
        let set_id = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let (total, position, kind) = (bytes[4], bytes[5], bytes[6]);
        let link_id = u32::from_be_bytes([bytes[7], bytes[8], bytes[9], bytes[10]]);
        if set_id == 0 {
            return bad("set id 0");
        }
        if total == 0 || position == 0 || position > total {
            return bad("position outside 1..=total");
        }
        let link = match (kind, link_id) {
            (0, 0) => Link::None,
            (1, id) if id != 0 && position == 1 => Link::Previous(id),
            (2, id) if id != 0 && position == total && usize::from(total) == MAX_SET_LEN => Link::Next(id),
            _ => return bad("invalid link"),
        };
        Ok(Fragment { set_id, total, position, link, data: bytes[HEADER_LEN..].to_vec() })
    }
}

/// Splits `message` into fragments carrying at most `max_data` bytes each.
/// An empty message is one empty fragment.
pub fn split<R: Rng + ?Sized>(rng: &mut R, message: &[u8], max_data: usize) -> Vec<Fragment> {
    let max_data = max_data.max(1);
    let chunks: Vec<&[u8]> = if message.is_empty() {
        vec![&[][..]]
    } else {
        message.chunks(max_data).collect()
    };
    let set_count = chunks.len().div_ceil(MAX_SET_LEN);
    let mut set_ids: Vec<u32> = Vec::with_capacity(set_count);
    while set_ids.len() < set_count {
        let id = rng.next_u32();
        if id != 0 && !set_ids.contains(&id) {
            set_ids.push(id);
        }
    }
    let mut fragments = Vec::with_capacity(chunks.len());
    for (set_index, set_chunks) in chunks.chunks(MAX_SET_LEN).enumerate() {
        let total = set_chunks.len() as u8;
        for (i, data) in set_chunks.iter().enumerate() {
            let position = i as u8 + 1;
            let link = if position == 1 && set_index > 0 {
                Link::Previous(set_ids[set_index - 1])
            } else if position == total && set_index + 1 < set_count {
                Link::Next(set_ids[set_index + 1])
            } else {
                Link::None
            };
            fragments.push(Fragment { set_id: set_ids[set_index], total, position, link, data: data.to_vec() });
        }
    }
    fragments
}

/// Which gateway delivery a fragment came in: its connection (a counter of
/// the client's) and the delivery id the gateway gave it there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Receipt {
    pub connection: u64,
    pub delivery: u64,
}

#[derive(Debug, Clone)]
struct Slot {
    data: Vec<u8>,
    receipt: Option<Receipt>,
}

/// What a completed message came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Completed {
    /// The set ids of its chain (remembered to drop late duplicates).
    pub sets: Vec<u32>,
    pub receipts: Vec<Receipt>,
}

#[derive(Debug)]
struct PartialSet {
    total: u8,
    fragments: Vec<Option<Slot>>,
    received: usize,
    previous: Option<u32>,
    next: Option<u32>,
    bytes: usize,
    last_activity: Duration,
}

impl PartialSet {
    fn is_complete(&self) -> bool {
        self.received == usize::from(self.total)
    }
}

/// What happened to one fragment.
#[derive(Debug, PartialEq, Eq)]
pub enum Insert {
    /// Held until its message is whole.
    Buffered,
    /// The last missing piece: here is the whole message.
    Complete(Vec<u8>),
    /// Seen before (or its message was already delivered): ignored.
    Duplicate,
    /// Contradicts what earlier fragments of its set said: ignored.
    Inconsistent,
}

/// Reassembles messages from fragments in any order.
#[derive(Debug)]
pub struct Reassembler {
    sets: HashMap<u32, PartialSet>,
    completed: HashMap<u32, ()>,
    completed_order: VecDeque<u32>,
    timeout: Duration,
    max_buffered_bytes: usize,
    buffered_bytes: usize,
    /// Receipts no fragment needs any more, until taken.
    released: Vec<Receipt>,
    completed_now: Completed,
}

impl Reassembler {
    /// A reassembler that drops a set after `timeout` without a fragment,
    /// and holds at most `max_buffered_bytes` of incomplete messages.
    pub fn new(timeout: Duration, max_buffered_bytes: usize) -> Self {
        Reassembler {
            sets: HashMap::new(),
            completed: HashMap::new(),
            completed_order: VecDeque::new(),
            timeout,
            max_buffered_bytes,
            buffered_bytes: 0,
            released: Vec::new(),
            completed_now: Completed::default(),
        }
    }

    /// Receipts of fragments that are not needed (duplicates, fragments of
    /// dropped or already delivered sets): acknowledge them.
    pub fn take_released(&mut self) -> Vec<Receipt> {
        std::mem::take(&mut self.released)
    }

    /// After [`Insert::Complete`]: the sets and receipts of that message.
    pub fn take_completed(&mut self) -> Completed {
        std::mem::take(&mut self.completed_now)
    }

    /// Marks sets as delivered (after a restart, from the client's own
    /// store), so their fragments, delivered again, are duplicates.
    pub fn remember_delivered(&mut self, sets: &[u32]) {
        for id in sets {
            if !self.completed.contains_key(id) {
                self.remember_completed(*id);
            }
        }
    }

    /// Sets still being reassembled (for the fuzz targets and tests).
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn pending_sets(&self) -> usize {
        self.sets.len()
    }

    /// A fragment with no gateway delivery behind it (for the fuzz
    /// targets and tests; the client's come with receipts).
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn insert(&mut self, fragment: Fragment, now: Duration) -> Insert {
        self.insert_received(fragment, None, now)
    }

    /// Takes a received fragment; `receipt` is the gateway delivery it came
    /// in, released once nothing waits for it.
    pub fn insert_received(&mut self, fragment: Fragment, receipt: Option<Receipt>, now: Duration) -> Insert {
        let outcome = self.insert_slot(fragment, receipt, now);
        if matches!(outcome, Insert::Inconsistent) {
            self.released.extend(receipt);
        }
        outcome
    }

    fn insert_slot(&mut self, fragment: Fragment, receipt: Option<Receipt>, now: Duration) -> Insert {
        if fragment.position == 0 || fragment.position > fragment.total {
            return Insert::Inconsistent;
        }
        if self.completed.contains_key(&fragment.set_id) {
            self.released.extend(receipt);
            return Insert::Duplicate;
        }
        let buffered_bytes = &mut self.buffered_bytes;
        let set = self.sets.entry(fragment.set_id).or_insert_with(|| {
            let overhead = SET_OVERHEAD + SLOT_OVERHEAD * usize::from(fragment.total);
            *buffered_bytes += overhead;
            PartialSet {
                total: fragment.total,
                fragments: vec![None; usize::from(fragment.total)],
                received: 0,
                previous: None,
                next: None,
                bytes: overhead,
                last_activity: now,
            }
        });
        if set.total != fragment.total {
            return Insert::Inconsistent;
        }
        let Some(slot) = set.fragments.get_mut(usize::from(fragment.position - 1)) else {
            return Insert::Inconsistent;
        };
        if let Some(held) = slot {
            // The same fragment again. Delivered again on a newer gateway
            // connection, it replaces the held receipt (the old one can't be
            // acknowledged there); otherwise it is not needed.
            match (held.receipt, receipt) {
                (Some(old), Some(new)) if new.connection > old.connection => held.receipt = Some(new),
                _ => self.released.extend(receipt),
            }
            return Insert::Duplicate;
        }
        match fragment.link {
            Link::Previous(id) => set.previous = Some(id),
            Link::Next(id) => set.next = Some(id),
            Link::None => {}
        }
        set.bytes += fragment.data.len();
        self.buffered_bytes += fragment.data.len();
        *slot = Some(Slot { data: fragment.data, receipt });
        set.received += 1;
        set.last_activity = now;
        let complete = set.is_complete();
        self.touch_chain(fragment.set_id, now);
        if complete {
            if let Some(message) = self.try_assemble(fragment.set_id) {
                return Insert::Complete(message);
            }
        }
        self.enforce_budget(fragment.set_id);
        Insert::Buffered
    }

    /// Keeps the earlier sets of a chain alive while later ones still arrive.
    fn touch_chain(&mut self, mut id: u32, now: Duration) {
        for _ in 0..MAX_CHAIN {
            let Some(previous) = self.sets.get_mut(&id).and_then(|s| {
                s.last_activity = now;
                s.previous
            }) else {
                return;
            };
            id = previous;
        }
    }

    fn try_assemble(&mut self, id: u32) -> Option<Vec<u8>> {
        let mut head = id;
        for _ in 0..MAX_CHAIN {
            let set = self.sets.get(&head)?;
            if !set.is_complete() {
                return None;
            }
            match set.previous {
                None => break,
                Some(p) => head = p,
            }
        }
        let mut chain = vec![head];
        loop {
            let set = self.sets.get(chain.last()?)?;
            if !set.is_complete() {
                return None;
            }
            match set.next {
                None => break,
                Some(next) if chain.len() < MAX_CHAIN && !chain.contains(&next) => chain.push(next),
                Some(_) => return None,
            }
        }
        let mut message = Vec::with_capacity(chain.iter().filter_map(|id| self.sets.get(id)).map(|s| s.bytes).sum());
        let mut completed = Completed::default();
        for id in &chain {
            let set = self.sets.remove(id)?;
            self.buffered_bytes -= set.bytes;
            for slot in set.fragments.into_iter().flatten() {
                message.extend_from_slice(&slot.data);
                completed.receipts.extend(slot.receipt);
            }
            self.remember_completed(*id);
            completed.sets.push(*id);
        }
        self.completed_now = completed;
        Some(message)
    }

    fn remember_completed(&mut self, id: u32) {
        self.completed.insert(id, ());
        self.completed_order.push_back(id);
        if self.completed_order.len() > REMEMBERED_COMPLETED {
            if let Some(old) = self.completed_order.pop_front() {
                self.completed.remove(&old);
            }
        }
    }

    /// Drops the least recently active sets (never `keep`) while over budget.
    fn enforce_budget(&mut self, keep: u32) {
        while self.buffered_bytes > self.max_buffered_bytes || self.sets.len() > MAX_PENDING_SETS {
            let victim = self
                .sets
                .iter()
                .filter(|(id, _)| **id != keep)
                .min_by_key(|(_, s)| s.last_activity)
                .map(|(id, _)| *id);
            match victim {
                Some(id) => self.drop_set(id),
                None => return,
            }
        }
    }

    fn drop_set(&mut self, id: u32) {
        if let Some(set) = self.sets.remove(&id) {
            self.buffered_bytes -= set.bytes;
            self.released.extend(set.fragments.into_iter().flatten().filter_map(|slot| slot.receipt));
        }
    }

    /// Drops sets that saw nothing for the timeout; returns how many.
    pub fn expire(&mut self, now: Duration) -> usize {
        let stale: Vec<u32> = self
            .sets
            .iter()
            .filter(|(_, s)| s.last_activity.saturating_add(self.timeout) <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in &stale {
            self.drop_set(*id);
        }
        stale.len()
    }

    /// When the next incomplete set expires, if any is pending.
    pub fn next_expiry(&self) -> Option<Duration> {
        self.sets.values().map(|s| s.last_activity.saturating_add(self.timeout)).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::seq::SliceRandom;
    use rand::SeedableRng;

    const BIG: usize = usize::MAX;

    fn deliver_all(fragments: Vec<Fragment>, r: &mut Reassembler) -> Vec<Vec<u8>> {
        fragments
            .into_iter()
            .filter_map(|f| match r.insert(f, Duration::ZERO) {
                Insert::Complete(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn any_order_with_duplicates_reassembles_once(
            len in 0usize..40_000, max_data in 1usize..300, seed in any::<[u8; 32]>()
        ) {
            let mut rng = rand::rngs::StdRng::from_seed(seed);
            let message: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let mut fragments = split(&mut rng, &message, max_data);
            for f in &fragments {
                prop_assert_eq!(Fragment::decode(&f.encode()).unwrap(), f.clone());
            }
            let dupes: Vec<Fragment> = fragments.iter().step_by(3).cloned().collect();
            fragments.extend(dupes);
            fragments.shuffle(&mut rng);
            let mut r = Reassembler::new(Duration::from_secs(60), BIG);
            let got = deliver_all(fragments, &mut r);
            prop_assert_eq!(got, vec![message]);
            prop_assert_eq!(r.pending_sets(), 0);
        }

        #[test]
        fn a_lost_fragment_means_no_delivery_then_expiry(len in 1usize..20_000, lost in any::<prop::sample::Index>(), seed in any::<[u8; 32]>()) {
            let mut rng = rand::rngs::StdRng::from_seed(seed);
            let message = vec![7u8; len];
            let mut fragments = split(&mut rng, &message, 64);
            fragments.remove(lost.index(fragments.len()));
            fragments.shuffle(&mut rng);
            let mut r = Reassembler::new(Duration::from_secs(5), BIG);
            prop_assert!(deliver_all(fragments, &mut r).is_empty());
            prop_assert!(r.pending_sets() > 0 || len <= 64);
            prop_assert_eq!(r.next_expiry().is_some(), r.pending_sets() > 0);
            r.expire(Duration::from_secs(5));
            prop_assert_eq!(r.pending_sets(), 0);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Fragment::decode(&bytes);
        }
    }

    #[test]
    fn long_messages_link_sets_and_empty_messages_work() {
        let mut rng = rand::rngs::StdRng::from_seed([9; 32]);
        let message: Vec<u8> = (0..600u32).flat_map(|i| i.to_be_bytes()).collect();
        let fragments = split(&mut rng, &message, 4);
        assert_eq!(fragments.len(), 600);
        let sets: std::collections::HashSet<u32> = fragments.iter().map(|f| f.set_id).collect();
        assert_eq!(sets.len(), 3);
        assert!(matches!(fragments[254].link, Link::Next(_)));
        assert!(matches!(fragments[255].link, Link::Previous(_)));
        let mut r = Reassembler::new(Duration::from_secs(1), BIG);
        let mut reversed = fragments.clone();
        reversed.reverse();
        assert_eq!(deliver_all(reversed, &mut r), vec![message]);
        // a retransmitted fragment of a delivered message is not delivered again
        assert_eq!(r.insert(fragments[10].clone(), Duration::ZERO), Insert::Duplicate);

        let empty = split(&mut rng, &[], 100);
        assert_eq!(empty.len(), 1);
        assert_eq!(deliver_all(empty, &mut r), vec![Vec::<u8>::new()]);
    }

    #[test]
    fn empty_fragments_cannot_open_sets_for_free() {
        let mut r = Reassembler::new(Duration::from_secs(60), 64 * 1024);
        for id in 1..=10_000u32 {
            let f = Fragment { set_id: id, total: 255, position: 1, link: Link::None, data: vec![] };
            r.insert(f, Duration::from_millis(u64::from(id)));
        }
        assert!(r.pending_sets() * (SET_OVERHEAD + 255 * SLOT_OVERHEAD) <= 64 * 1024 + SET_OVERHEAD + 255 * SLOT_OVERHEAD);
        let mut unbounded = Reassembler::new(Duration::from_secs(60), usize::MAX);
        for id in 1..=(MAX_PENDING_SETS as u32 + 100) {
            let f = Fragment { set_id: id, total: 2, position: 1, link: Link::None, data: vec![] };
            unbounded.insert(f, Duration::ZERO);
        }
        assert_eq!(unbounded.pending_sets(), MAX_PENDING_SETS);
        let bad = Fragment { set_id: 1, total: 3, position: 4, link: Link::None, data: vec![] };
        assert_eq!(r.insert(bad, Duration::ZERO), Insert::Inconsistent);
        let bad = Fragment { set_id: 1, total: 3, position: 0, link: Link::None, data: vec![] };
        assert_eq!(r.insert(bad, Duration::ZERO), Insert::Inconsistent);
        // near the end of time nothing overflows, and everything stale goes
        let pending = r.pending_sets();
        assert!(pending > 0);
        assert_eq!(r.expire(Duration::MAX), pending);
        assert_eq!(r.pending_sets(), 0);
    }

    #[test]
    fn receipts_are_held_with_their_fragments_and_released_when_not_needed() {
        let mut rng = rand::rngs::StdRng::from_seed([8; 32]);
        let r0 = |d| Some(Receipt { connection: 0, delivery: d });
        let r1 = |d| Some(Receipt { connection: 1, delivery: d });
        let message = vec![5u8; 30];
        let f = split(&mut rng, &message, 10);
        assert_eq!(f.len(), 3);
        let mut r = Reassembler::new(Duration::from_secs(60), BIG);
        assert_eq!(r.insert_received(f[0].clone(), r0(1), Duration::ZERO), Insert::Buffered);
        assert_eq!(r.insert_received(f[1].clone(), r0(2), Duration::ZERO), Insert::Buffered);
        assert!(r.take_released().is_empty(), "buffered fragments keep their receipts");
        // a retransmission on the same connection is not needed: released
        assert_eq!(r.insert_received(f[0].clone(), r0(3), Duration::ZERO), Insert::Duplicate);
        assert_eq!(r.take_released(), vec![Receipt { connection: 0, delivery: 3 }]);
        // redelivered on a new connection: the new receipt replaces the old
        assert_eq!(r.insert_received(f[1].clone(), r1(7), Duration::ZERO), Insert::Duplicate);
        assert!(r.take_released().is_empty());
        assert_eq!(r.insert_received(f[2].clone(), r1(8), Duration::ZERO), Insert::Complete(message));
        let done = r.take_completed();
        assert_eq!(done.sets, vec![f[0].set_id]);
        let mut got: Vec<_> = done.receipts.iter().map(|x| (x.connection, x.delivery)).collect();
        got.sort();
        assert_eq!(got, vec![(0, 1), (1, 7), (1, 8)]);
        // late copies of a delivered set are released at once
        assert_eq!(r.insert_received(f[2].clone(), r1(9), Duration::ZERO), Insert::Duplicate);
        assert_eq!(r.take_released(), vec![Receipt { connection: 1, delivery: 9 }]);

        // a set that expires releases what it held; a remembered set is a duplicate
        let g = split(&mut rng, &[1u8; 20], 10);
        r.insert_received(g[0].clone(), r1(10), Duration::ZERO);
        assert_eq!(r.expire(Duration::from_secs(60)), 1);
        assert_eq!(r.take_released(), vec![Receipt { connection: 1, delivery: 10 }]);
        let h = split(&mut rng, &[2u8; 5], 10);
        r.remember_delivered(&[h[0].set_id]);
        assert_eq!(r.insert_received(h[0].clone(), r1(11), Duration::ZERO), Insert::Duplicate);
        assert_eq!(r.take_released().len(), 1);
    }

    #[test]
    fn memory_budget_drops_oldest_sets() {
        let mut rng = rand::rngs::StdRng::from_seed([4; 32]);
        let mut r = Reassembler::new(Duration::from_secs(60), 1000);
        for t in 0..10u64 {
            let f = split(&mut rng, &[1u8; 600], 300);
            r.insert(f[0].clone(), Duration::from_secs(t));
        }
        assert!(r.pending_sets() <= 4);
    }
}
