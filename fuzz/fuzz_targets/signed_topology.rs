//! The signed topology document, as a client, a gateway or a mixnode checks
//! it (`verify_topology`, pinned to the fuzz directory key and by trust on
//! first use), and the node descriptors a directory checks on announcement
//! (`verify_signature`). Never panics; every refusal has a message; what is
//! accepted is signed by the pinned key, not expired, made of descriptors
//! that verify, and routes to every gateway; it verifies again after a
//! round trip through JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nym_wire::authority::Authorities;
use nym_wire::topology::{GatewayJson, MixNodeJson, TopologyJson};
use nym_client_core::verify_topology;
use nym_fuzz::{directory_identity, SIGNED_TOPOLOGY_NOW_MS};
use rand::rngs::StdRng;
use rand::SeedableRng;

fuzz_target!(|data: &[u8]| {
    if let Ok(j) = serde_json::from_slice::<MixNodeJson>(data) {
        if let Err(e) = j.verify_signature() {
            assert!(!e.to_string().is_empty());
        }
    }
    if let Ok(j) = serde_json::from_slice::<GatewayJson>(data) {
        if let Err(e) = j.verify_signature() {
            assert!(!e.to_string().is_empty());
        }
    }
    let text = String::from_utf8_lossy(data);
    let pinned = directory_identity().verifying_key().to_bytes();
    let authorities = Authorities::single(pinned, "http://127.0.0.1:1");
    let now = SIGNED_TOPOLOGY_NOW_MS;
    match verify_topology(&text, Some(&authorities), now, nym_client_core::VERSION) {
        Ok(v) => {
            assert_eq!(v.document.signers.keys, vec![pinned]);
            assert!(v.expires_at() > now);
            let doc: TopologyJson = serde_json::from_str(&text).expect("accepted text parses");
            for m in &doc.mix_nodes {
                m.verify_signature().expect("an accepted document's descriptors verify");
            }
            for g in &doc.gateway_nodes {
                g.verify_signature().expect("an accepted document's descriptors verify");
            }
            let again = serde_json::to_string(&doc).expect("serialises");
            assert_eq!(verify_topology(&again, Some(&authorities), now, nym_client_core::VERSION).as_ref(), Ok(&v));
            let mut rng = StdRng::from_seed([0; 32]);
            for g in v.topology.gateways() {
                let epoch = g.epoch_keys.iter().next().map(|(e, _)| *e).unwrap_or_default();
                match v.topology.random_route(&mut rng, &g.identity_key, epoch) {
                    Ok(route) => assert_eq!(route.len(), 4),
                    Err(e) => assert!(e.to_string().contains("epoch"), "{e}"),
                }
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    // Trust on first use accepts exactly what verifies under the key of
    // the authority that served it.
    if let Ok(v) = verify_topology(&text, None, now, nym_client_core::VERSION) {
        let learned = v.document.signers.learned.expect("first use learns a key");
        let pinned = Authorities::single(learned, "http://127.0.0.1:1");
        let again = verify_topology(&text, Some(&pinned), now, nym_client_core::VERSION).expect("verifies pinned");
        assert_eq!((again.topology, again.document.signers.keys), (v.topology, vec![learned]));
    }
});
