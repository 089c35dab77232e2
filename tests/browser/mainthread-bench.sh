#!/usr/bin/env bash
# The page's main thread while a 10 MiB message is sent unthrottled: the
# engine in a Web Worker vs in the page, same run (mainthread-bench.mjs).
# Builds the package and nym-localnet (release), prints the runs as JSON and
# a markdown table.
#   tests/browser/mainthread-bench.sh                    # 10 MiB, 1 round
#   BYTES=1048576 ROUNDS=3 tests/browser/mainthread-bench.sh
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/prepare.sh"
BYTES="${BYTES:-10485760}"
ROUNDS="${ROUNDS:-1}"
TIMEOUT_MS="${TIMEOUT_MS:-240000}"
SLICES="${SLICES:-}"   # e.g. SLICES=20,0: each flushSliceMs in turn (worker, then in-page)
echo "==> cargo build --release -p nym-mixnet --bin nym-localnet"
(cd "$ROOT" && cargo build --release -p nym-mixnet --bin nym-localnet)
echo "==> node mainthread-bench.mjs $BYTES $ROUNDS $TIMEOUT_MS $SLICES"
JSON="$(cd "$HERE" && node mainthread-bench.mjs "$BYTES" "$ROUNDS" "$TIMEOUT_MS" $SLICES)"
echo "$JSON"
node -e '
const r = JSON.parse(process.argv[1]);
const os = require("os");
const f = (x, d = 0) => x.toFixed(d);
console.log(`\n${r.chromium}; ${os.cpus().length} x ${os.cpus()[0]?.model ?? "cpu"}; load average ${os.loadavg()[0].toFixed(2)} at the end; ${r.bytes} bytes to itself, unthrottled.\n`);
console.log("| engine | flushSliceMs | arrived | send to arrival (s) | longest main-thread task (ms) | long tasks (> 50 ms), total ms | longest gap between frames (ms) | page frame rate (fps) | real packets sent | retransmissions |");
console.log("|---|---|---|---|---|---|---|---|---|---|");
for (const x of r.runs) {
  console.log(`| ${x.worker ? "Web Worker" : "in the page"} | ${x.flushSliceMs} | ${x.arrived ? "yes" : `no, within ${r.timeoutMs / 1000} s`} | ${f(x.elapsedMs / 1000, 1)} | ${x.longTasks ? f(x.longestTaskMs) : "none over 50"} | ${x.longTasks}, ${f(x.longTasksTotalMs)} | ${f(x.maxFrameGapMs)} | ${f(x.fps, 1)} | ${x.realPacketsSent} | ${x.retransmissions} |`);
}
' "$JSON"
