#!/usr/bin/env bash
# The browser client's tests: installs the pinned tools (package-lock.json:
# playwright-core, publint, typescript), builds the npm package
# (scripts/build-wasm.sh), packs it and installs the tarball here (no browser
# download: the tests drive /usr/bin/chromium); lints the package (publint)
# and compiles a TypeScript consumer of it (consumer.ts, tsc --noEmit); builds
# nym-localnet and nym-client, then runs package.test.mjs and browser.test.mjs
# with node's test runner. Every server the tests need is started on free
# loopback ports and stopped again.
#   tests/browser/run.sh            (VERBOSE=1 for process and page logs)
#   tests/browser/run.sh --test-name-pattern=anonymous   (node --test options: a subset)
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/prepare.sh"

echo "==> publint --strict wasm/pkg"
"$HERE/node_modules/.bin/publint" --strict "$ROOT/wasm/pkg"
echo "==> tsc -p tests/browser/tsconfig.json (consumer.ts against the installed package)"
"$HERE/node_modules/.bin/tsc" -p "$HERE/tsconfig.json"

# Release binaries by default (scripts/test.sh's `cargo test --release` built them
# already); NYM_TEST_PROFILE=debug uses debug builds.
PROFILE_FLAG=--release
[ "${NYM_TEST_PROFILE:-release}" = debug ] && PROFILE_FLAG=
echo "==> cargo build $PROFILE_FLAG -p nym-mixnet --bin nym-localnet"
(cd "$ROOT" && cargo build $PROFILE_FLAG -p nym-mixnet --bin nym-localnet)
echo "==> cargo build $PROFILE_FLAG -p nym-client --bin nym-client"
(cd "$ROOT" && cargo build $PROFILE_FLAG -p nym-client --bin nym-client) \
  || echo "warning: nym-client did not build; the browser<->native test will be skipped" >&2

echo "==> node --test package.test.mjs browser.test.mjs"
cd "$HERE"
exec node --test --test-concurrency=1 --test-timeout=180000 "$@" package.test.mjs browser.test.mjs
