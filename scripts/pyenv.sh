#!/usr/bin/env bash
# Makes target/pyenv, the Python venv of the independent verifiers and of the benchmark's
# comparison (`model_signing`), from tests/independent/requirements.txt, where every package is
# pinned. Rebuilt only when that file changes. Prints the venv's python.
set -euo pipefail
cd "$(dirname "$0")/.."
requirements=tests/independent/requirements.txt
stamp=target/pyenv/requirements.sha256
if ! sha256sum --status -c "$stamp" 2>/dev/null; then
  echo "== creating target/pyenv from $requirements" >&2
  rm -rf target/pyenv
  mkdir -p target
  python3 -m venv target/pyenv
  target/pyenv/bin/pip install -q --disable-pip-version-check --no-deps -r "$requirements" >&2
  sha256sum "$requirements" > "$stamp"
fi
echo "$PWD/target/pyenv/bin/python"
