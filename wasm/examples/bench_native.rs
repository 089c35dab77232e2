//! The browser benchmark's code, run natively in the same script
//! (`tests/browser/bench.sh`): ms per Sphinx packet built.
//!
//! `cargo run --release -p nym-client-wasm --example bench_native -- [packets]`

use nym_client_wasm::bench::BenchSetup;
use std::time::Instant;

fn main() {
    let n: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(500);
    let mut setup = BenchSetup::new();
    // Warm-up, as the browser run does.
    if let Err(e) = setup.build(n / 10 + 1) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    let start = Instant::now();
    match setup.build(n) {
        Ok(_) => {
            let ms = start.elapsed().as_secs_f64() * 1000.0 / f64::from(n);
            println!("{{\"packets\":{n},\"msPerPacket\":{ms}}}");
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
