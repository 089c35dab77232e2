#!/usr/bin/env bash
# Builds the browser client into an npm package at wasm/pkg/:
#   nym_client_wasm.js (ES module glue, `--target web`), nym_client_wasm_bg.wasm,
#   nym_client_wasm.d.ts, package.json (version from Cargo), README.md.
# Needs cargo and rustup; installs the wasm32 target and the wasm-bindgen CLI
# (exactly the wasm-bindgen version in Cargo.lock, built from source) when missing.
#
#   scripts/build-wasm.sh            # release build (default)
#   PROFILE=dev scripts/build-wasm.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PROFILE="${PROFILE:-release}"
OUT="$ROOT/wasm/pkg"

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  echo "==> rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

WB_VERSION="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)"
if [ -z "$WB_VERSION" ]; then
  echo "error: no wasm-bindgen in Cargo.lock (run: cargo generate-lockfile)" >&2
  exit 1
fi
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WB_VERSION" ]; then
  echo "==> cargo install wasm-bindgen-cli --version $WB_VERSION"
  # --locked first; the registry may lack one of its locked dependencies, then resolve afresh.
  cargo install wasm-bindgen-cli --version "$WB_VERSION" --locked \
    || cargo install wasm-bindgen-cli --version "$WB_VERSION"
fi

echo "==> cargo build -p nym-client-wasm --target wasm32-unknown-unknown --profile $PROFILE"
cargo build -p nym-client-wasm --target wasm32-unknown-unknown --profile "$PROFILE"

TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
DIR="$PROFILE"; [ "$PROFILE" = dev ] && DIR=debug
WASM="$TARGET_DIR/wasm32-unknown-unknown/$DIR/nym_client_wasm.wasm"
VERSION="$(cargo pkgid -p nym-client-wasm | sed 's/.*[@#]//')"

echo "==> wasm-bindgen --target web --out-dir wasm/pkg"
rm -rf "$OUT"
wasm-bindgen --target web --out-dir "$OUT" "$WASM"

cat > "$OUT/package.json" <<JSON
{
  "name": "nym-client-wasm",
  "version": "$VERSION",
  "description": "Nym mixnet client for the browser: the nym-client-core engine in WebAssembly",
  "license": "Apache-2.0",
  "type": "module",
  "main": "nym_client_wasm.js",
  "module": "nym_client_wasm.js",
  "types": "nym_client_wasm.d.ts",
  "exports": {
    ".": {
      "types": "./nym_client_wasm.d.ts",
      "default": "./nym_client_wasm.js"
    },
    "./nym_client_wasm_bg.wasm": "./nym_client_wasm_bg.wasm",
    "./package.json": "./package.json"
  },
  "files": [
    "nym_client_wasm.js",
    "nym_client_wasm.d.ts",
    "nym_client_wasm_bg.wasm",
    "nym_client_wasm_bg.wasm.d.ts",
    "README.md"
  ],
  "sideEffects": false,
  "keywords": ["nym", "mixnet", "sphinx", "privacy", "wasm"]
}
JSON
cp "$ROOT/wasm/README.md" "$OUT/README.md"
echo "==> built nym-client-wasm $VERSION in $OUT ($(du -h "$OUT/nym_client_wasm_bg.wasm" | cut -f1) wasm)"
