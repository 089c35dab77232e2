#!/usr/bin/env bash
# The project's whole test suite, on a fresh machine: installs what it needs,
# builds everything, runs every test. Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== tools"
if command -v rustup >/dev/null; then rustup target add wasm32-unknown-unknown; fi
python3 -m pip install --quiet --disable-pip-version-check websockets base58 \
  || python3 -m pip install --quiet --break-system-packages websockets base58
if [ ! -x /usr/bin/chromium ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi

echo "== Rust: unit, property, simulation and integration tests (release: the browser tests reuse these binaries)"
cargo test --release

echo "== benchmarks, once, in quick test mode (a benchmark that breaks fails here; no figures)"
# Built with the features `cargo test` resolved (whole workspace, dev-dependencies
# included), so only the bench targets compile here: `cargo run -p` or
# `cargo bench -p` would resolve them for one package and rebuild much of the
# workspace. Same programs as the commands in docs/benchmarks.md.
cargo build --release --all-targets
cargo bench --bench packets --bench topology --bench mixnode_throughput --bench replay_filter -- --test
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
"$target_dir/release/e2e-bench" --quick
"$target_dir/release/saturation-bench" --quick

echo "== fuzz targets still compile (running them is separate: fuzz/README.md)"
# fuzz/ is its own workspace (cargo-fuzz); a check keeps it from rotting.
RUSTC_BOOTSTRAP=1 cargo check --quiet --manifest-path fuzz/Cargo.toml --bins --examples

echo "== client-core compiles unchanged to WebAssembly"
cargo build -p nym-client-core --target wasm32-unknown-unknown

echo "== browser: wasm package in headless Chromium"
tests/browser/run.sh
