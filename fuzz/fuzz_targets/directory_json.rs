//! The directory's JSON, both ways: what the directory server validates when
//! a node announces itself (`MixNodeJson` / `GatewayJson` bodies through
//! `MixNode::from_json` / `Gateway::from_json`, as mixnet/src/directory/state.rs
//! does), and what a client does with `GET /api/presence/topology`
//! (`Topology::parse`, then a route to every gateway). Never panics; every
//! error has a message; an accepted topology always yields a 4-hop route.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nym_wire::topology::{Gateway, GatewayJson, MixNode, MixNodeJson, Topology};
use rand::rngs::StdRng;
use rand::SeedableRng;

fuzz_target!(|data: &[u8]| {
    if let Ok(j) = serde_json::from_slice::<MixNodeJson>(data) {
        if let Err(e) = MixNode::from_json(&j) {
            assert!(!e.to_string().is_empty());
        }
    }
    if let Ok(j) = serde_json::from_slice::<GatewayJson>(data) {
        if let Err(e) = Gateway::from_json(&j) {
            assert!(!e.to_string().is_empty());
        }
    }
    let text = String::from_utf8_lossy(data);
    match Topology::parse(&text, nym_client_core::VERSION) {
        Ok(topology) => {
            let mut rng = StdRng::from_seed([0; 32]);
            for g in topology.gateways() {
                // routes for the epoch of the gateway's key: one per layer, or
                // none because some layer has no key for that epoch
                let epoch = g.epoch_keys.iter().next().map(|(e, _)| *e).unwrap_or_default();
                match topology.random_route(&mut rng, &g.identity_key, epoch) {
                    Ok(route) => assert_eq!(route.len(), 4),
                    Err(e) => assert!(e.to_string().contains("epoch"), "{e}"),
                }
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
