//! What directory authorities parse from each other and what everyone
//! checks of their document: the vote parser (`parse_vote`), the round
//! signature, and `verify_topology` with three pinned authorities
//! (threshold 2). Never panics; every refusal has a message; an accepted
//! vote is signed by the key it names and survives a JSON round trip; an
//! accepted document carries at least 2 distinct valid signatures, all by
//! pinned keys.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nym_fuzz::{fuzz_authorities, SIGNED_TOPOLOGY_NOW_MS};
use nym_wire::signed::verify_topology;
use nym_wire::topology::TopologyJson;
use nym_wire::vote::{parse_vote, RoundSignature, VoteJson};

fuzz_target!(|data: &[u8]| {
    match parse_vote(data) {
        Ok((vote, key)) => {
            assert_eq!(vote.verify().expect("verifies again"), key);
            let again = serde_json::to_vec(&vote).expect("serialises");
            let (back, key2) = parse_vote(&again).expect("an accepted vote round-trips");
            assert_eq!((back.digest(), key2), (vote.digest(), key));
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    if let Ok(v) = serde_json::from_slice::<VoteJson>(data) {
        let _ = v.digest();
    }
    let _ = serde_json::from_slice::<RoundSignature>(data);

    let authorities = fuzz_authorities();
    let text = String::from_utf8_lossy(data);
    match verify_topology(&text, Some(&authorities), SIGNED_TOPOLOGY_NOW_MS, nym_wire::VERSION) {
        Ok(v) => {
            let keys = &v.document.signers.keys;
            assert!(keys.len() >= authorities.threshold());
            assert!(keys.iter().all(|k| authorities.contains(k)));
            let mut distinct = keys.clone();
            distinct.sort();
            distinct.dedup();
            assert_eq!(distinct.len(), keys.len());
            assert!(v.expires_at() > SIGNED_TOPOLOGY_NOW_MS);
            let doc: TopologyJson = serde_json::from_str(&text).expect("accepted text parses");
            let again = serde_json::to_string(&doc).expect("serialises");
            let w = verify_topology(&again, Some(&authorities), SIGNED_TOPOLOGY_NOW_MS, nym_wire::VERSION);
            assert_eq!(w.as_ref(), Ok(&v));
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
