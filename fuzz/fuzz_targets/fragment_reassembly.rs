//! Fragments from the network into a `Reassembler` with a small budget and
//! timeout, a fake clock advanced by the input. Never panics; never delivers
//! more bytes than were accepted; a set without links is delivered as exactly
//! its fragments' data in position order, and only once.
//!
//! Input: records `op (1 byte) || len (1 byte) || fragment bytes (len)`.
//! `op & 0x3f` advances the clock by that many 100 ms steps; `op & 0x40`
//! calls `expire(now)` first.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nym_client_core::fuzzing::fragment::{Fragment, Insert, Link, Reassembler};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(2);
const BUDGET: usize = 1024;

#[derive(Default)]
struct Shadow {
    /// Latest accepted data per position (what the reassembler holds).
    data: HashMap<u8, Vec<u8>>,
    /// Whether any accepted fragment of this set id carried a link.
    linked: bool,
}

fuzz_target!(|input: &[u8]| {
    let mut r = Reassembler::new(TIMEOUT, BUDGET);
    let mut now = Duration::ZERO;
    let mut accepted_bytes = 0usize;
    let mut delivered_bytes = 0usize;
    let mut shadow: HashMap<u32, Shadow> = HashMap::new();
    let mut delivered_sets: HashSet<u32> = HashSet::new();

    let mut rest = input;
    while let [op, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (bytes, next) = tail.split_at(n);
        rest = next;
        now += Duration::from_millis(100) * u32::from(op & 0x3f);
        if op & 0x40 != 0 {
            r.expire(now);
            if let Some(t) = r.next_expiry() {
                assert!(t > now, "a set outlived its timeout");
            }
        }

        let fragment = match Fragment::decode(bytes) {
            Ok(f) => f,
            Err(e) => {
                assert!(!e.to_string().is_empty());
                continue;
            }
        };
        // Round trip: the header encoding is canonical.
        assert_eq!(fragment.encode(), bytes, "encode(decode(b)) != b");
        assert_eq!(Fragment::decode(&fragment.encode()).as_ref(), Ok(&fragment));
        assert!(fragment.position >= 1 && fragment.position <= fragment.total);

        let (id, total, pos, link, data) =
            (fragment.set_id, fragment.total, fragment.position, fragment.link, fragment.data.clone());
        match r.insert(fragment, now) {
            Insert::Buffered | Insert::Complete(_) if delivered_sets.contains(&id) => {
                panic!("set {id} accepted again after delivery");
            }
            Insert::Buffered => {
                accepted_bytes += data.len();
                let s = shadow.entry(id).or_default();
                s.linked |= link != Link::None;
                s.data.insert(pos, data);
            }
            Insert::Complete(message) => {
                accepted_bytes += data.len();
                let s = shadow.entry(id).or_default();
                s.linked |= link != Link::None;
                s.data.insert(pos, data);
                delivered_bytes += message.len();
                assert!(delivered_bytes <= accepted_bytes, "delivered more bytes than were fed");
                if !s.linked {
                    let expected: Vec<u8> =
                        (1..=total).flat_map(|p| s.data.get(&p).expect("every position accepted").clone()).collect();
                    assert_eq!(message, expected, "unlinked set reassembled wrongly");
                }
                delivered_sets.insert(id);
            }
            Insert::Duplicate | Insert::Inconsistent => {}
        }
        if r.pending_sets() == 0 {
            assert_eq!(r.next_expiry(), None);
        }
    }
});
