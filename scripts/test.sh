#!/usr/bin/env bash
# The whole check, as CI runs it: dependencies, formatting, lints, every test.
# Tests start their own SoftHSM tokens, OIDC issuers and daemons on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check

echo "== cargo clippy -D warnings" >&2
cargo clippy --locked --all-targets -- -D warnings

echo "== cargo test" >&2
cargo test --locked --all-targets
