//! Replay filter throughput: inserts and lookups per second, save and load
//! times, for a small (default) and a large filter.
//!
//! `cargo bench -p nym-mixnet --bench replay_filter`
//! (env: BENCH_TAGS, default 2_000_000)
//!
//! Test mode (`cargo bench ... -- --test`, or `cargo test --bench ...`):
//! 20_000 tags, the same checks, exactly (every inserted tag is found, before
//! and after a save and load; the loaded filter holds as many as the saved one).

use nym_mixnet::replay::{ReplayFilter, ReplayFilterParams};
use std::time::Instant;

/// SplitMix64 tags: cheap, so the figures are the filter's.
fn tags(seed: u64, n: usize) -> Vec<[u8; 32]> {
    let mut s = seed;
    let mut next = move || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (0..n)
        .map(|_| {
            let mut t = [0u8; 32];
            for c in t.chunks_exact_mut(8) {
                c.copy_from_slice(&next().to_le_bytes());
            }
            t
        })
        .collect()
}

fn run(label: &str, params: ReplayFilterParams, n: usize) {
    let mut f = ReplayFilter::new(params).expect("valid params");
    let inserted = tags(1, n);
    let t = Instant::now();
    let mut accepted = 0u64;
    for tag in &inserted {
        accepted += f.insert(*tag) as u64;
    }
    let insert_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let found = inserted.iter().filter(|tag| f.contains(tag)).count();
    let contains_s = t.elapsed().as_secs_f64();
    assert_eq!(found, n, "a false negative");
    assert_eq!(f.len(), accepted);

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("replay.bin");
    let binding = [1u8; 32];
    let t = Instant::now();
    f.save(&path, &binding, true).expect("save");
    let save_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let loaded = ReplayFilter::load(&path, &binding).expect("load");
    let load_s = t.elapsed().as_secs_f64();
    assert_eq!(loaded.filter.len(), f.len());
    // every tag, in both modes: a filter that loses one after a save is a replay let through
    assert_eq!(inserted.iter().filter(|tag| loaded.filter.contains(tag)).count(), n, "a tag lost by save and load");

    println!(
        "{label}: capacity {} at {:e}, {} bytes, k={}: {n} inserts {:.0} ns each ({:.2} M/s), lookups {:.0} ns, \
         save {:.1} ms, load {:.1} ms, fill at end: fp rate {:.2e}",
        params.capacity,
        params.false_positive_rate,
        f.bytes(),
        f.hashes(),
        insert_s * 1e9 / n as f64,
        n as f64 / insert_s / 1e6,
        contains_s * 1e9 / n as f64,
        save_s * 1e3,
        load_s * 1e3,
        f.current_false_positive_rate()
    );
}

fn main() {
    // Like criterion: `cargo bench` passes `--bench`; `-- --test`, or no
    // `--bench` at all (`cargo test`), means run once, small, to check it works.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let test_mode = args.iter().any(|a| a == "--test") || !args.iter().any(|a| a == "--bench");
    let n: usize = if test_mode {
        20_000
    } else {
        std::env::var("BENCH_TAGS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000_000)
    };
    run("default", ReplayFilterParams::default(), n.min(100_000));
    run("large", ReplayFilterParams { capacity: 10_000_000, false_positive_rate: 1e-6 }, n);
}
