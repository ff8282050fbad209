#!/usr/bin/env bash
# Installs what a fresh machine lacks for signet's tests and `signet dev`, pinned:
# SoftHSM (the PKCS#11 token), OpenSC's pkcs11-tool (provisioning in tests), OpenSSL (the
# independent verifier) and ShellCheck (the scripts' lint). Idempotent: packages already at the
# pinned version are left alone.
set -euo pipefail

# The upstream versions these were tested with (Debian bookworm); any Debian revision of them
# is taken, so a point release's security update does not break the install.
PINS=(
  "softhsm2=2.6.*"
  "opensc=0.23.*"
  "openssl=3.0.*"
  "curl=7.88.*"
  "shellcheck=0.9.*"
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for pin in "${PINS[@]}"; do
  name=${pin%%=*}
  want=${pin#*=}
  have=$(dpkg-query -W -f='${Version}' "$name" 2>/dev/null || true)
  # shellcheck disable=SC2053 # the pin may be a glob
  if [ -z "$have" ] || [[ "$have" != $want ]]; then
    missing+=("$pin")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
for pin in "${missing[@]}"; do
  name=${pin%%=*}
  if ! $SUDO apt-get install -y -qq --no-install-recommends "$pin" >/dev/null; then
    # A Debian point release can replace a pinned security update; say so loudly and take the
    # distribution's current version rather than leave the machine without the package.
    echo "install-deps: WARNING: $pin is no longer available; installing the current $name" >&2
    $SUDO apt-get install -y -qq --no-install-recommends "$name" >/dev/null
  fi
done

for tool in softhsm2-util pkcs11-tool openssl curl shellcheck; do
  command -v "$tool" >/dev/null || { echo "install-deps: $tool is still missing" >&2; exit 1; }
done
