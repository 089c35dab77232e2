#!/usr/bin/env bash
# Serves the browser demo (www/) against a local mixnet:
#   1. builds the npm package (scripts/build-wasm.sh -> wasm/pkg),
#   2. starts nym-localnet (directory + 3x2 mixnodes + 2 gateways on 127.0.0.1),
#   3. serves www/ at / and wasm/pkg at /pkg/ (node www/serve.mjs),
# then prints the page URL and runs until Ctrl-C (which stops both).
#
#   scripts/serve-demo.sh                       # page on :8000, directory on :8080
#   PORT=9000 DIRECTORY_PORT=9080 scripts/serve-demo.sh
#   DIRECTORY=http://host:port scripts/serve-demo.sh   # use a running directory instead
# Open the printed URL in two tabs with different ?id= to chat between them.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PORT="${PORT:-8000}"
DIRECTORY_PORT="${DIRECTORY_PORT:-8080}"
DATA_DIR="${DATA_DIR:-$(mktemp -d -t nym-demo-localnet-XXXXXX)}"

"$ROOT/scripts/build-wasm.sh"

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${DIRECTORY:-}" ]; then
  echo "==> cargo build --release -p nym-mixnet --bin nym-localnet"
  cargo build --release -p nym-mixnet --bin nym-localnet
  TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
  LOG="$DATA_DIR/localnet.log"
  echo "==> nym-localnet --directory-port $DIRECTORY_PORT --data-dir $DATA_DIR (log: $LOG)"
  "$TARGET_DIR/release/nym-localnet" --directory-port "$DIRECTORY_PORT" --data-dir "$DATA_DIR" >"$LOG" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 300); do
    grep -q "localnet ready" "$LOG" 2>/dev/null && break
    kill -0 "${PIDS[0]}" 2>/dev/null || { cat "$LOG" >&2; echo "error: nym-localnet exited" >&2; exit 1; }
    sleep 0.2
  done
  grep -q "localnet ready" "$LOG" || { cat "$LOG" >&2; echo "error: nym-localnet not ready after 60 s" >&2; exit 1; }
  DIRECTORY="$(sed -n 's/^directory: \(http[^ ]*\).*/\1/p' "$LOG" | head -1)"
  cat "$LOG"
fi

SERVER_LOG="$DATA_DIR/page-server.log"
node "$ROOT/www/serve.mjs" --port "$PORT" --pkg "$ROOT/wasm/pkg" >"$SERVER_LOG" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 50); do grep -q "^serving" "$SERVER_LOG" && break; sleep 0.1; done
PAGE="$(sed -n 's/^serving \(http[^ ]*\).*/\1/p' "$SERVER_LOG" | head -1)"
[ -n "$PAGE" ] || { cat "$SERVER_LOG" >&2; echo "error: the page server did not start" >&2; exit 1; }
echo
echo "Demo page:  ${PAGE}?directory=$DIRECTORY"
echo "Second tab: ${PAGE}?directory=$DIRECTORY&id=bob   (another identity to chat with)"
echo "Add &fast=1 for no mixing delays. Ctrl-C to stop."
wait
