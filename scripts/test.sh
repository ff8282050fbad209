#!/usr/bin/env bash
# The whole check, as CI runs it: dependencies, formatting, lints, every test.
# Tests start their own SoftHSM tokens, OIDC issuers and daemons on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

# The independent log verifier (tests/independent/check_log.py) runs on Python's `cryptography`,
# pinned, in a venv inside target/ so nothing outside the clone changes.
if ! target/pyenv/bin/python -c 'import cryptography' 2>/dev/null; then
  echo "== creating target/pyenv (cryptography==43.0.3)" >&2
  python3 -m venv target/pyenv
  target/pyenv/bin/pip install -q --disable-pip-version-check "cryptography==43.0.3"
fi
export SIGNET_TEST_PYTHON="$PWD/target/pyenv/bin/python"

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check

echo "== cargo clippy -D warnings" >&2
cargo clippy --locked --all-targets -- -D warnings

echo "== cargo test" >&2
cargo test --locked --all-targets
