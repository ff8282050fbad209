#!/usr/bin/env bash
# Benchmarks, run on one machine in one go so that every figure is a ratio against a reference
# measured in the same run. Writes its tables into docs/benchmarks.md.
#
#   scripts/bench.sh         everything below, in one run (under 10 minutes on 2 cores)
#   scripts/bench.sh sign    signing: raw SoftHSM C_Sign, OpenBao Transit, signet (full path)
#   scripts/bench.sh hash    manifest hashing: signet vs sha256sum, OpenSSL and model_signing
set -euo pipefail
cd "$(dirname "$0")/.."

what="${1:-all}"
runs="${BENCH_RUNS:-3}"
doc=docs/benchmarks.md
python3=python3

machine() {
  local cpu cores mem sha
  cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
  cores=$(nproc)
  mem=$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)
  sha=$(grep -qw sha_ni /proc/cpuinfo && echo "SHA-NI present" || echo "no SHA-NI")
  echo "$cpu, $cores cores, $mem, $sha; $(uname -sr)"
}

# median wall seconds and peak RSS (KiB) of `runs` runs of a command
measure() {
  local samples=() rss=0 line t r
  for _ in $(seq "$runs"); do
    line=$($python3 scripts/lib/measure.py "$@")
    t=${line% *}; r=${line#* }
    samples+=("$t")
    (( r > rss )) && rss=$r
  done
  local median
  median=$(printf '%s\n' "${samples[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  echo "$median $rss"
}

# Replaces the block between <!-- NAME:begin --> and <!-- NAME:end --> in docs/benchmarks.md.
write_section() {
  local name=$1 body=$2
  mkdir -p docs
  # shellcheck disable=SC2016 # the backquotes are Markdown
  [ -f "$doc" ] || printf '# Benchmarks\n\nWritten by `scripts/bench.sh`; every figure is from one run on one machine.\n' > "$doc"
  $python3 - "$doc" "$name" "$body" <<'PY'
import re, sys
path, name, body = sys.argv[1:]
text = open(path).read()
block = f"<!-- {name}:begin -->\n{body.rstrip()}\n<!-- {name}:end -->"
pattern = re.compile(rf"<!-- {name}:begin -->.*?<!-- {name}:end -->", re.S)
text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
open(path, "w").write(text)
PY
}

bench_hash() {
  local python signet dir files bytes
  python=$(scripts/pyenv.sh)
  echo "== building signet (release, PKCS#11 only: hashing needs no cloud backend)" >&2
  cargo build --release --locked --quiet --no-default-features
  signet=target/release/signet
  dir=target/bench-hash
  mkdir -p "$dir/model"
  for i in 1 2 3 4; do
    f="$dir/model/model-0000$i-of-00004.safetensors"
    if ! [ -f "$f" ] || [ "$(stat -c %s "$f")" != 536870912 ]; then
      head -c 512M /dev/urandom > "$f"
    fi
  done
  [ -f "$dir/key.pem" ] || openssl ecparam -name prime256v1 -genkey -noout -out "$dir/key.pem" 2>/dev/null
  files=("$dir"/model/*.safetensors)
  bytes=$((4 * 536870912))
  cat "${files[@]}" > /dev/null   # into the page cache
  echo "== hashing 4 x 512 MiB, $runs runs each (median)" >&2

  local reference
  reference=$(openssl speed -mr -evp sha256 -multi "$(nproc)" -bytes 16384 -seconds 3 2>/dev/null \
    | awk -F: '/^\+F:/ {v=$4} END {print v}')
  read -r t_signet rss_signet < <(measure "$signet" manifest "$dir/model" -o "$dir/manifest.json")
  read -r t_sum _ < <(measure sha256sum "${files[@]}")
  read -r t_sum2 _ < <(measure sh -c "printf '%s\n' $dir/model/*.safetensors | xargs -P $(nproc) -n 1 sha256sum")
  read -r t_ossl _ < <(measure sh -c "printf '%s\n' $dir/model/*.safetensors | xargs -P $(nproc) -n 1 openssl dgst -sha256")
  read -r t_ms rss_ms < <(measure "$python" -m model_signing sign key "$dir/model" \
    --private_key "$dir/key.pem" --signature "$dir/model_signing.sig")
  rm -f "$dir/model_signing.sig"

  local table
  table=$($python3 - "$bytes" "$reference" "$t_signet" "$rss_signet" "$t_sum" "$t_sum2" "$t_ossl" "$t_ms" "$rss_ms" "$(nproc)" "$(machine)" <<'PY'
import sys
b, ref, ts, rss, tsum, tsum2, tossl, tms, rssms, cores, machine = sys.argv[1:]
b = int(b); ref = float(ref)
rate = lambda t: b / float(t) / 1e9
rows = [
    ("`openssl speed -evp sha256 -multi %s` (reference)" % cores, "", ref / 1e9, ""),
    ("signet manifest", ts, rate(ts), f"{int(rss)//1024} MB"),
    ("sha256sum, 1 process", tsum, rate(tsum), ""),
    (f"sha256sum, {cores} in parallel", tsum2, rate(tsum2), ""),
    (f"openssl dgst -sha256, {cores} in parallel", tossl, rate(tossl), ""),
    ("model_signing 1.1.1 sign key", tms, rate(tms), f"{int(rssms)//1024} MB"),
]
print("### Manifest hashing\n")
print(f"Machine: {machine}. Model: 4 files of 512 MiB in the page cache; median of the runs.\n")
print("| tool | wall (s) | GB/s | of OpenSSL's {0}-core rate | peak RSS |".format(cores))
print("|---|---:|---:|---:|---:|")
for name, t, gbs, mem in rows:
    print(f"| {name} | {t or '-'} | {gbs:.2f} | {100 * gbs * 1e9 / ref:.0f} % | {mem or '-'} |")
share = 100 * rate(ts) * 1e9 / ref
speedup = float(tms) / float(ts)
print()
print(f"signet reaches **{share:.0f} %** of OpenSSL's {cores}-core SHA-256 rate (budget: at least 85 %) "
      f"and takes **{1/speedup:.2f}x** model_signing's wall time (budget: under 0.5x), "
      f"with a peak RSS of {int(rss)//1024} MB.")
PY
)
  echo "$table"
  write_section hash "$table"
  echo "== written to $doc" >&2
}

free_port() {
  $python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_for() { # URL [seconds]
  for _ in $(seq $((${2:-30} * 10))); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "not up: $1" >&2
  return 1
}

bench_sign() {
  local duration=${BENCH_DURATION:-5s} signet work module=/usr/lib/softhsm/libsofthsm2.so
  scripts/install-deps.sh
  scripts/install-backends.sh openbao
  echo "== building signet (release, PKCS#11 only: what this benchmark runs)" >&2
  # First a build that can skip the log (SIGNET_BENCH_UNLOGGED), to measure what the log costs
  # against signing alone; it is kept aside and never used for anything else.
  cargo build --release --locked --quiet --no-default-features --features bench-unlogged
  cp target/release/signet target/release/signet-bench-unlogged
  cargo build --release --locked --quiet --no-default-features
  signet=$PWD/target/release/signet
  work=$(mktemp -d "$PWD/target/bench-sign.XXXXXX")
  trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
  results=$work/results.jsonl

  echo "== raw SoftHSM C_Sign" >&2
  mkdir -p "$work/tokens"
  printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$work/tokens" > "$work/softhsm2.conf"
  export SOFTHSM2_CONF=$work/softhsm2.conf BENCH_PIN=1234
  softhsm2-util --init-token --free --label bench --pin 1234 --so-pin 5678 > /dev/null
  pkcs11-tool --module $module --token-label bench --login --pin 1234 --keypairgen \
    --key-type EC:prime256v1 --label bench-es256 --id 01 > /dev/null
  pkcs11-tool --module $module --token-label bench --login --pin 1234 --keypairgen \
    --key-type rsa:2048 --label bench-ps256 --id 02 > /dev/null
  for alg in ES256 PS256; do
    label=bench-$(echo "$alg" | tr '[:upper:]' '[:lower:]')
    for threads in 1 2; do
      echo "{\"target\":\"raw-$alg\",\"report\":$("$signet" bench pkcs11 --module $module \
        --token-label bench --pin-env BENCH_PIN --key-label "$label" --algorithm $alg \
        -c $threads -d "$duration" --json)}" >> "$results"
    done
  done
  unset SOFTHSM2_CONF

  echo "== OpenBao Transit" >&2
  local bao_port
  bao_port=$(free_port)
  target/openbao-venv/bin/bao server -dev -dev-root-token-id=root -dev-no-store-token \
    -dev-listen-address="127.0.0.1:$bao_port" > "$work/bao.log" 2>&1 &
  local bao_pid=$!
  wait_for "http://127.0.0.1:$bao_port/v1/sys/health"
  curl -sf -X POST -H 'X-Vault-Token: root' -d '{"type":"transit"}' "http://127.0.0.1:$bao_port/v1/sys/mounts/transit"
  curl -sf -o /dev/null -X POST -H 'X-Vault-Token: root' -d '{"type":"ecdsa-p256"}' "http://127.0.0.1:$bao_port/v1/transit/keys/bench"
  for c in 1 8 64; do
    echo "{\"target\":\"openbao\",\"report\":$(VAULT_TOKEN=root "$signet" bench vault \
      --address "http://127.0.0.1:$bao_port" --key bench -c $c -d "$duration" --json)}" >> "$results"
  done
  kill $bao_pid; wait $bao_pid 2>/dev/null || true

  echo "== signet (signet dev: SoftHSM, durable log)" >&2
  local port issuer_port
  port=$(free_port); issuer_port=$(free_port)
  "$signet" dev --dir "$work/dev" --listen "127.0.0.1:$port" --issuer-listen "127.0.0.1:$issuer_port" \
    > "$work/dev.log" 2>&1 &
  local dev_pid=$!
  wait_for "http://127.0.0.1:$port/readyz" 60
  curl -sf -X POST "http://127.0.0.1:$issuer_port/token" > "$work/token"
  local server=http://127.0.0.1:$port
  for c in 1 8 64; do
    echo "{\"target\":\"signet\",\"report\":$("$signet" bench signet --server "$server" \
      --token-file "$work/token" --sessions 256 -c $c -d "$duration" --json)}" >> "$results"
  done
  # The HTTP round trip alone, same client and server: what bounds latency at c = 1.
  echo "{\"target\":\"http-floor\",\"report\":$("$signet" bench http --url "$server/healthz" \
    -c 1 -d "$duration" --json)}" >> "$results"
  echo "{\"target\":\"signet-batch100\",\"report\":$("$signet" bench signet --server "$server" \
    --token-file "$work/token" --sessions 256 --batch 100 -c 4 -d "$duration" --json)}" >> "$results"
  local rss_kb
  rss_kb=$(awk '/VmHWM/ {print $2}' /proc/$dev_pid/status)
  kill $dev_pid; wait $dev_pid 2>/dev/null || true
  echo "{\"target\":\"signet-rss\",\"kb\":$rss_kb}" >> "$results"

  # The log's cost (issue 4's budget): the same path at c = 8 without the log entry, the quota
  # still charged in the durable group commit ("quota"), and with no store write at all
  # ("memory": the quota counted in memory only); and with the log whole but its commits not
  # fsynced ("unsynced"), to split the log's cost into its own work and the fsync. c = 1 too,
  # to show what bounds latency.
  for mode in quota memory unsynced; do
    echo "== signet without the log ($mode)" >&2
    port=$(free_port); issuer_port=$(free_port)
    SIGNET_BENCH_UNLOGGED=$mode target/release/signet-bench-unlogged dev --dir "$work/dev-$mode" \
      --listen "127.0.0.1:$port" --issuer-listen "127.0.0.1:$issuer_port" > "$work/dev-$mode.log" 2>&1 &
    dev_pid=$!
    wait_for "http://127.0.0.1:$port/readyz" 60
    curl -sf -X POST "http://127.0.0.1:$issuer_port/token" > "$work/token"
    for c in 1 8; do
      echo "{\"target\":\"signet-unlogged-$mode\",\"report\":$("$signet" bench signet \
        --server "http://127.0.0.1:$port" --token-file "$work/token" --sessions 256 -c $c -d "$duration" --json)}" >> "$results"
    done
    kill $dev_pid; wait $dev_pid 2>/dev/null || true
  done

  local table
  table=$($python3 scripts/lib/sign_table.py "$results" "$(machine)")
  echo "$table"
  write_section sign "$table"
  echo "== written to $doc" >&2
}

case "$what" in
  all) bench_sign; bench_hash ;;
  sign) bench_sign ;;
  hash) bench_hash ;;
  *) echo "usage: scripts/bench.sh [all|sign|hash]" >&2; exit 2 ;;
esac
