#!/usr/bin/env bash
# The whole check, as CI runs it: dependencies, formatting, lints, every test.
# Tests start their own SoftHSM tokens, OIDC issuers and daemons on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each step says when it starts (seconds into the run), so a slow CI run shows where.
step() { echo "== $* (${SECONDS}s)" >&2; }

scripts/install-deps.sh
# OpenBao and LocalStack, pinned, for the Vault Transit and AWS KMS tests.
scripts/install-backends.sh

# The independent verifiers (tests/independent/check_log.py on Python's `cryptography`, and
# OpenSSF's `model_signing verify key`) run from a pinned venv inside target/.
SIGNET_TEST_PYTHON="$(scripts/pyenv.sh)"
export SIGNET_TEST_PYTHON

# The toolchain must be at least the package's rust-version (no rust-toolchain.toml: rustup
# would try to download one).
required=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
have=$(rustc --version | awk '{print $2}')
if [ "$(printf '%s\n%s\n' "$required" "$have" | sort -V | head -1)" != "$required" ]; then
  echo "rustc $have is older than the rust-version $required that Cargo.toml requires" >&2
  exit 2
fi

step "cargo fmt --check, shellcheck"
cargo fmt --all -- --check
shellcheck scripts/*.sh .ci/run

step "cargo clippy -D warnings"
cargo clippy --locked --workspace --all-targets -- -D warnings
# The benchmark's build without the log (scripts/bench.sh) must not rot either, nor a build
# with any one cloud backend alone.
cargo clippy --locked --no-default-features --features bench-unlogged -- -D warnings
for backend in vault aws gcp; do
  cargo clippy --locked --no-default-features --features "$backend" -- -D warnings
done

step "cargo doc -D warnings"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps --quiet

# Licenses, banned crates and where crates come from (deny.toml). The advisory database needs
# the internet, so `cargo deny check advisories` belongs to a connected CI job.
step "tools: cargo-deny (built once into target/tools)"
tools="$(scripts/install-tools.sh)"
step "cargo deny check licenses bans sources"
"$tools/cargo-deny" --log-level error check licenses bans sources

step "cargo test"
# In-process tests keep their SoftHSM tokens here (.cargo/config.toml); start from none.
rm -rf target/softhsm-in-process
# Most tests wait on servers starting (OpenBao, LocalStack, daemons), not on a core: four at a
# time halves the run on two cores.
cargo test --locked --workspace --all-targets -- --test-threads=4
step "done"
