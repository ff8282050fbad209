#!/usr/bin/env bash
# Builds the Rust tools the checks use, pinned, into target/tools (once; later runs reuse them):
#   target/tools/bin/cargo-deny   cargo-deny, the supply-chain check (licenses, bans, sources)
# Prints the tools' bin folder.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DENY_VERSION=0.20.2
root=target/tools
if [ "$("$root/bin/cargo-deny" --version 2>/dev/null)" != "cargo-deny $CARGO_DENY_VERSION" ]; then
  echo "== building cargo-deny $CARGO_DENY_VERSION into $root (once)" >&2
  cargo install --quiet --locked --root "$root" "cargo-deny@$CARGO_DENY_VERSION" >&2
fi
echo "$PWD/$root/bin"
