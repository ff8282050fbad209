#!/usr/bin/env bash
# The whole check, as CI runs it: dependencies, formatting, lints, every test.
# Tests start their own SoftHSM tokens, OIDC issuers and daemons on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

# The independent verifiers (tests/independent/check_log.py on Python's `cryptography`, and
# OpenSSF's `model_signing verify key`) run from a venv inside target/, so nothing outside the
# clone changes. Every package is pinned in tests/independent/requirements.txt; the venv is
# rebuilt when that file changes.
requirements=tests/independent/requirements.txt
stamp=target/pyenv/requirements.sha256
if ! sha256sum --status -c "$stamp" 2>/dev/null; then
  echo "== creating target/pyenv from $requirements" >&2
  rm -rf target/pyenv
  python3 -m venv target/pyenv
  target/pyenv/bin/pip install -q --disable-pip-version-check --no-deps -r "$requirements"
  sha256sum "$requirements" > "$stamp"
fi
export SIGNET_TEST_PYTHON="$PWD/target/pyenv/bin/python"

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check

echo "== cargo clippy -D warnings" >&2
cargo clippy --locked --all-targets -- -D warnings

echo "== cargo test" >&2
cargo test --locked --all-targets
