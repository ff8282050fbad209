#!/usr/bin/env bash
# Installs SoftHSM if missing, builds signet and runs `signet dev`: a local daemon with a SoftHSM
# token in .signet-dev/, a development OIDC issuer and a policy that lets its tokens sign.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cargo build --locked --bin signet
exec target/debug/signet dev "$@"
