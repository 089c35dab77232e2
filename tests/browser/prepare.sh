#!/usr/bin/env bash
# Sourced by run.sh and bench.sh: builds the npm package, packs it and
# installs the tarball plus playwright-core here (never downloading a browser).
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  echo "error: ${CHROMIUM:-/usr/bin/chromium} is missing (apt-get install -y chromium)" >&2
  exit 1
fi

"$ROOT/scripts/build-wasm.sh"

echo "==> npm pack wasm/pkg; npm install (tests/browser)"
rm -rf "$HERE/.pkg" "$HERE/node_modules/nym-client-wasm"
mkdir -p "$HERE/.pkg"
TARBALL="$(cd "$ROOT/wasm/pkg" && npm pack --silent --pack-destination "$HERE/.pkg" | tail -1)"
mv "$HERE/.pkg/$TARBALL" "$HERE/.pkg/nym-client-wasm.tgz"
(cd "$HERE" && npm install --no-package-lock --no-audit --no-fund --loglevel=error)
