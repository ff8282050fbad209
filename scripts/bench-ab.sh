#!/usr/bin/env bash
# A/B of signing throughput: `signet dev` (SoftHSM, durable log) built from REV (default: the
# previous commit) against the working tree, driven by the same load generator, alternating
# rounds so that the machine's drift falls on both. Prints requests/s at c = 1, 8 and 64, the
# median ratio new/base, and each round's ratio.
#   scripts/bench-ab.sh [REV] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:-HEAD~1}
rounds=${2:-3}
duration=${BENCH_DURATION:-5s}
scripts/install-deps.sh
work=$(mktemp -d "$PWD/target/bench-ab.XXXXXX")
trap 'kill $(jobs -p) 2>/dev/null || true; git worktree remove --force "$work/base-tree" 2>/dev/null || true' EXIT
echo "== building $rev and the working tree (release, PKCS#11 only)" >&2
git worktree add --detach "$work/base-tree" "$rev" > /dev/null
# One target folder for both builds: the dependencies compile once.
target_dir=$PWD/target
(cd "$work/base-tree" && CARGO_TARGET_DIR="$target_dir" cargo build --release --locked --quiet --no-default-features)
cp target/release/signet "$work/signet-base"
cargo build --release --locked --quiet --no-default-features
cp target/release/signet "$work/signet-new"
results=$work/results.jsonl
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 300); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; echo "not up: $1" >&2; return 1; }
for round in $(seq "$rounds"); do
  for which in base new; do
    port=$(free_port); issuer_port=$(free_port)
    "$work/signet-$which" dev --dir "$work/dev-$which-$round" --listen "127.0.0.1:$port" \
      --issuer-listen "127.0.0.1:$issuer_port" > "$work/dev-$which-$round.log" 2>&1 &
    pid=$!
    wait_for "http://127.0.0.1:$port/readyz"
    curl -sf -X POST "http://127.0.0.1:$issuer_port/token" > "$work/token"
    for c in 1 8 64; do
      report=$("$work/signet-new" bench signet --server "http://127.0.0.1:$port" \
        --token-file "$work/token" --sessions 256 -c $c -d "$duration" --json)
      echo "{\"which\":\"$which\",\"round\":$round,\"c\":$c,\"report\":$report}" >> "$results"
    done
    kill $pid; wait $pid 2>/dev/null || true
  done
done
python3 - "$results" "$rev" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print(f"signing requests/s, {sys.argv[2]} (base) against the working tree (new):")
for c in (1, 8, 64):
    base = [r["report"]["requests_per_second"] for r in rows if r["which"] == "base" and r["c"] == c]
    new = [r["report"]["requests_per_second"] for r in rows if r["which"] == "new" and r["c"] == c]
    ratio = statistics.median(new) / statistics.median(base)
    paired = [n / b for n, b in zip(new, base)]
    rounds = ", ".join(f"{r:.2f}" for r in paired)
    print(f"  c={c:<3} base {statistics.median(base):7.0f}  new {statistics.median(new):7.0f}  "
          f"ratio of medians {ratio:.3f}, median of rounds {statistics.median(paired):.3f}  "
          f"(rounds: {rounds})")
PY
