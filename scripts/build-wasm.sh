#!/usr/bin/env bash
# Builds the browser client into an npm package at wasm/pkg/:
#   index.js + index.d.ts (the API: NymClient, over the engine in a Web Worker
#   or in the page), engine.js, worker-proxy.js, worker.js, protocol.js,
#   storage.js (IndexedDB) from wasm/js/; nym_client_wasm.js (the engine's ES
#   module glue, `--target web`), nym_client_wasm_bg.wasm (through
#   `wasm-opt -Oz` when wasm-opt is there), nym_client_wasm.d.ts;
#   package.json and README.md from wasm/ (the manifest's version must be
#   the crate's: checked).
# Needs cargo and rustup; installs the wasm32 target and the wasm-bindgen CLI
# (exactly the wasm-bindgen version in Cargo.lock, built from source) when missing.
# wasm-opt: see below (npm's binaryen, installed on first use; checked).
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

VERSION="$(cargo pkgid -p nym-client-wasm | sed 's/.*[@#]//')"
NPM_VERSION="$(node -p 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).version' "$ROOT/wasm/package.json")"
if [ "$NPM_VERSION" != "$VERSION" ]; then
  echo "error: wasm/package.json has version $NPM_VERSION, the crate nym-client-wasm $VERSION: set \"version\": \"$VERSION\" in wasm/package.json" >&2
  exit 1
fi

echo "==> cargo build -p nym-client-wasm --target wasm32-unknown-unknown --profile $PROFILE"
cargo build -p nym-client-wasm --target wasm32-unknown-unknown --profile "$PROFILE"

TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
DIR="$PROFILE"; [ "$PROFILE" = dev ] && DIR=debug
WASM="$TARGET_DIR/wasm32-unknown-unknown/$DIR/nym_client_wasm.wasm"

echo "==> wasm-bindgen --target web --out-dir wasm/pkg"
rm -rf "$OUT"
wasm-bindgen --target web --out-dir "$OUT" "$WASM"
cp "$ROOT"/wasm/js/*.js "$ROOT/wasm/js/index.d.ts" "$OUT/"

BG="$OUT/nym_client_wasm_bg.wasm"
BEFORE=$(wc -c < "$BG")
# wasm-opt: $WASM_OPT, else npm's binaryen (installed under target/binaryen on
# first use), else one on PATH. Each result must still load (an old binaryen,
# e.g. Debian 12's 108, breaks wasm-bindgen's externref table): checked by
# instantiating it in node and calling version(); else the next is tried, and
# without any the wasm ships as built.
NPM_BINARYEN_VERSION=132.0.0
NPM_BINARYEN="$TARGET_DIR/binaryen"
if [ -z "${WASM_OPT:-}" ] && [ ! -x "$NPM_BINARYEN/node_modules/.bin/wasm-opt" ] && command -v npm >/dev/null; then
  echo "==> npm install binaryen@$NPM_BINARYEN_VERSION (wasm-opt) into $NPM_BINARYEN"
  mkdir -p "$NPM_BINARYEN"
  npm install --prefix "$NPM_BINARYEN" --no-audit --no-fund --no-package-lock --loglevel=error "binaryen@$NPM_BINARYEN_VERSION" \
    || echo "warning: npm could not install binaryen" >&2
fi
CANDIDATES=()
[ -n "${WASM_OPT:-}" ] && CANDIDATES+=("$WASM_OPT")
[ -x "$NPM_BINARYEN/node_modules/.bin/wasm-opt" ] && CANDIDATES+=("$NPM_BINARYEN/node_modules/.bin/wasm-opt")
command -v wasm-opt >/dev/null && CANDIDATES+=("$(command -v wasm-opt)")
loads() {
  node --input-type=module -e '
    import { readFileSync } from "node:fs";
    const [dir, wasm] = process.argv.slice(1);
    const glue = await import(`${dir}/nym_client_wasm.js`);
    glue.initSync({ module: readFileSync(wasm) });
    if (!glue.version()) process.exit(1);
  ' "$OUT" "$1" >/dev/null 2>&1
}
OPTIMISER="none"
for opt in "${CANDIDATES[@]}"; do
  echo "==> $opt -Oz ($("$opt" --version 2>/dev/null | head -1))"
  # The features rustc's wasm32 target emits by default.
  if "$opt" -Oz --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
      --enable-nontrapping-float-to-int --enable-reference-types --enable-multivalue \
      "$BG" -o "$BG.opt" && loads "$BG.opt"; then
    mv "$BG.opt" "$BG"
    OPTIMISER="$("$opt" --version 2>/dev/null | head -1)"
    break
  fi
  rm -f "$BG.opt"
  echo "warning: $opt failed, or its output does not load; trying the next" >&2
done
[ "$OPTIMISER" = none ] && echo "warning: no working wasm-opt; shipping the wasm as built" >&2
SIZE=$(wc -c < "$BG")
GZIP=$(gzip -9 -c "$BG" | wc -c)
echo "==> wasm: $BEFORE bytes as built, $SIZE bytes shipped (wasm-opt: $OPTIMISER), $GZIP bytes gzip -9"

# The manifest is wasm/package.json, checked in (and linted by publint in
# tests/browser/run.sh); its version is the crate's.
cp "$ROOT/wasm/package.json" "$OUT/package.json"
cp "$ROOT/wasm/README.md" "$OUT/README.md"
echo "==> built nym-client-wasm $VERSION in $OUT (wasm $SIZE bytes, $GZIP gzipped)"
