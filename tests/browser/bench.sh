#!/usr/bin/env bash
# Sphinx packet creation: wasm in headless Chromium vs native, same code, same run.
# Builds the package and the native example (release), runs 5 alternating rounds
# of 500 packets each and prints a markdown section with the medians.
#   tests/browser/bench.sh                 # prints the section
#   BENCH_APPEND=1 tests/browser/bench.sh  # also appends it to docs/benchmarks.md
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/prepare.sh"
PACKETS="${PACKETS:-500}"
ROUNDS="${ROUNDS:-5}"

echo "==> cargo build --release -p nym-client-wasm --example bench_native"
(cd "$ROOT" && cargo build --release -p nym-client-wasm --example bench_native)
TARGET_DIR="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"

echo "==> node bench.mjs ($ROUNDS rounds x $PACKETS packets, alternating)"
JSON="$(cd "$HERE" && node bench.mjs "$TARGET_DIR/release/examples/bench_native" "$PACKETS" "$ROUNDS")"
echo "$JSON"
SECTION="$(node -e '
const r = JSON.parse(process.argv[1]);
const f = (x) => x.toFixed(3);
const os = require("os");
const cpu = os.cpus();
console.log(`
## Sphinx packet creation: wasm in Chromium vs native (issue 5)

Command: \`tests/browser/bench.sh\` (${new Date().toISOString().slice(0, 10)}; ${cpu.length} x ${cpu[0]?.model ?? "cpu"}; load average ${os.loadavg()[0].toFixed(2)} at the end: the machine is shared).
One packet = \`payload::seal\` (end-to-end sealed 1000-byte body) + \`client::build_sphinx_packet\` over a
3-mixnode + gateway route, Regular size (2 KiB payload), keys from fixed seeds: the same Rust code
(\`wasm/src/bench.rs\`) as \`benchPacketBuild(n)\` in the release wasm package in headless ${r.chromium}
and as \`wasm/examples/bench_native.rs\` (release, native), alternating, ${r.rounds} rounds of ${r.packets} packets.

| | median ms/packet | rounds (ms/packet) |
|---|---|---|
| wasm in Chromium | ${f(r.wasmMedian)} | ${r.wasmMsPerPacket.map(f).join(", ")} |
| native | ${f(r.nativeMedian)} | ${r.nativeMsPerPacket.map(f).join(", ")} |

wasm / native: **${r.ratio.toFixed(2)}x** (target: at most 2.5x).`);
' "$JSON")"
echo "$SECTION"
if [ "${BENCH_APPEND:-0}" = 1 ]; then
  printf '%s\n' "$SECTION" >> "$ROOT/docs/benchmarks.md"
  echo "==> appended to docs/benchmarks.md"
fi
