#!/usr/bin/env bash
# The browser client's tests: builds the npm package (scripts/build-wasm.sh),
# packs it, installs the tarball and playwright-core here (no browser
# download: the tests drive /usr/bin/chromium), builds nym-localnet and
# nym-client, then runs browser.test.mjs with node's test runner. Every
# server the tests need is started on free loopback ports and stopped again.
#   tests/browser/run.sh            (VERBOSE=1 for process and page logs)
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/prepare.sh"

# Release binaries by default (scripts/test.sh's `cargo test --release` built them
# already); NYM_TEST_PROFILE=debug uses debug builds.
PROFILE_FLAG=--release
[ "${NYM_TEST_PROFILE:-release}" = debug ] && PROFILE_FLAG=
echo "==> cargo build $PROFILE_FLAG -p nym-mixnet --bin nym-localnet"
(cd "$ROOT" && cargo build $PROFILE_FLAG -p nym-mixnet --bin nym-localnet)
echo "==> cargo build $PROFILE_FLAG -p nym-client --bin nym-client"
(cd "$ROOT" && cargo build $PROFILE_FLAG -p nym-client --bin nym-client) \
  || echo "warning: nym-client did not build; the browser<->native test will be skipped" >&2

echo "==> node --test browser.test.mjs"
cd "$HERE"
exec node --test --test-concurrency=1 --test-timeout=180000 browser.test.mjs
