//! Review finding (not a crash): the Reassembler's byte budget counts only
//! fragment data, so fragments with no data open sets that the budget never
//! drops; each costs a `total`-slot table. Run: `cargo run --example empty_fragment_sets`.

use nym_client_core::fuzzing::fragment::{Fragment, Link, Reassembler};
use std::time::Duration;

fn main() {
    let budget = 1024;
    let mut r = Reassembler::new(Duration::from_secs(30), budget);
    let n = 100_000u32;
    for id in 1..=n {
        // what a sender can put in a payload: a 11-byte header, no data
        let f = Fragment { set_id: id, total: 255, position: 1, link: Link::None, data: vec![] };
        let f = Fragment::decode(&f.encode()).expect("valid on the wire");
        r.insert(f, Duration::ZERO);
    }
    let slots = std::mem::size_of::<Option<Vec<u8>>>() * 255;
    println!(
        "budget {budget} bytes, {} sets pending (~{} MB of slot tables alone)",
        r.pending_sets(),
        r.pending_sets() * slots / 1_000_000
    );
}
