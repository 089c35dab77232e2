//! What checking a topology document costs a client (and a node: the same
//! `verify_topology`): a network of the localnet's size signed by 3
//! authorities, and one at the directory's node cap (1,000 descriptors, each
//! signed by its node), whole and in parts (parsing the JSON; the
//! authorities' signatures only; a refresh whose descriptors were verified
//! before).
//!
//! `cargo bench -p nym-client-core --bench topology`
//! (`-- --test`: each benchmark once, unmeasured, as scripts/test.sh runs
//! it, with the same checks as the full run: every node and every signature
//! counted exactly)

use criterion::{criterion_group, criterion_main, Criterion};
use nym_client_core::fuzzing::{sample_document, SampleDocument};
use nym_wire::signed::{verify_document, verify_topology_cached, DescriptorCache};
use nym_wire::topology::TopologyJson;
use std::time::Duration;

const NOW_MS: u64 = 1_800_000_000_000;

/// Verifies `d` and checks it names exactly `mixnodes`, `gateways` and 3 signers.
fn verify(d: &SampleDocument, mixnodes: usize, gateways: usize) {
    let v = nym_client_core::verify_topology(&d.text, Some(&d.authorities), d.now_ms, nym_client_core::VERSION)
        .expect("the sample document verifies");
    assert_eq!(v.topology.mixnodes().count(), mixnodes);
    assert_eq!(v.topology.gateways().len(), gateways);
    assert_eq!(v.document.signers.keys.len(), 3);
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("topology document");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    let small = sample_document(6, 2, 3, NOW_MS);
    group.bench_function("verify: 6 mixnodes + 2 gateways, 3 authority signatures", |b| {
        b.iter(|| verify(&small, 6, 2))
    });
    let cap = sample_document(990, 10, 3, NOW_MS);
    group.bench_function("verify: 990 mixnodes + 10 gateways (the node cap), 3 authority signatures", |b| {
        b.iter(|| verify(&cap, 990, 10))
    });
    // A refresh that lists the same descriptors as the document in use:
    // their signatures were checked then (the driver and the nodes keep this cache).
    let json: TopologyJson = serde_json::from_str(&cap.text).expect("parses");
    let mut cache = DescriptorCache::default();
    verify_topology_cached(&json, Some(&cap.authorities), NOW_MS, nym_client_core::VERSION, &mut cache).expect("verifies");
    assert_eq!(cache.len(), 1000);
    group.bench_function("refresh: the node-cap document, its descriptors already verified", |b| {
        b.iter(|| {
            let json: TopologyJson = serde_json::from_str(&cap.text).expect("parses");
            let v = verify_topology_cached(&json, Some(&cap.authorities), NOW_MS, nym_client_core::VERSION, &mut cache)
                .expect("verifies");
            assert_eq!(v.topology.mixnodes().count() + v.topology.gateways().len(), 1000);
            assert_eq!(cache.len(), 1000);
        })
    });
    group.bench_function("parse only: the node-cap document's JSON", |b| {
        b.iter(|| {
            let json: TopologyJson = serde_json::from_str(&cap.text).expect("parses");
            assert_eq!(json.mix_nodes.len() + json.gateway_nodes.len(), 1000);
        })
    });
    let json: TopologyJson = serde_json::from_str(&cap.text).expect("parses");
    group.bench_function("authority signatures only: the node-cap document (3)", |b| {
        b.iter(|| {
            let d = verify_document(&json, Some(&cap.authorities), NOW_MS).expect("signed by all three");
            assert_eq!(d.signers.keys.len(), 3);
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
