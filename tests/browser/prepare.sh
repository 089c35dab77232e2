#!/usr/bin/env bash
# Sourced by run.sh and bench.sh: installs the pinned tools of package-lock.json
# (playwright-core, publint, typescript; `npm ci`, only when the lockfile
# changed since the last install, so later runs need no network), builds the
# npm package, packs it and installs the tarball here without saving it
# (never downloading a browser: the tests drive /usr/bin/chromium).
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  echo "error: ${CHROMIUM:-/usr/bin/chromium} is missing (apt-get install -y chromium)" >&2
  exit 1
fi

LOCK_STAMP="$HERE/node_modules/.nym-lock.sha256"
LOCK_SUM="$(cat "$HERE/package.json" "$HERE/package-lock.json" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$LOCK_STAMP" 2>/dev/null)" != "$LOCK_SUM" ]; then
  echo "==> npm ci (tests/browser: the tools pinned in package-lock.json)"
  (cd "$HERE" && npm ci --include=dev --prefer-offline --no-audit --no-fund --loglevel=error)
  echo "$LOCK_SUM" > "$LOCK_STAMP"
fi

"$ROOT/scripts/build-wasm.sh"

echo "==> npm pack wasm/pkg; npm install --no-save (tests/browser)"
rm -rf "$HERE/.pkg" "$HERE/node_modules/nym-client-wasm"
mkdir -p "$HERE/.pkg"
TARBALL="$(cd "$ROOT/wasm/pkg" && npm pack --silent --pack-destination "$HERE/.pkg" | tail -1)"
mv "$HERE/.pkg/$TARBALL" "$HERE/.pkg/nym-client-wasm.tgz"
# Not in package.json: the tarball changes with every build, the lockfile would too.
(cd "$HERE" && npm install --no-save --prefer-offline --no-audit --no-fund --loglevel=error ./.pkg/nym-client-wasm.tgz)
