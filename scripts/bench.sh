#!/usr/bin/env bash
# Benchmarks, run on one machine in one go so that every figure is a ratio against a reference
# measured in the same run. Writes its tables into docs/benchmarks.md.
#
#   scripts/bench.sh hash    manifest hashing: signet vs sha256sum, OpenSSL and model_signing
set -euo pipefail
cd "$(dirname "$0")/.."

what="${1:-hash}"
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
  echo "== building signet (release)" >&2
  cargo build --release --locked --quiet
  signet=target/release/signet
  dir=target/bench-hash
  mkdir -p "$dir/model"
  for i in 1 2 3 4; do
    f="$dir/model/model-0000$i-of-00004.safetensors"
    [ -f "$f" ] && [ "$(stat -c %s "$f")" = 536870912 ] || head -c 512M /dev/urandom > "$f"
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

case "$what" in
  hash) bench_hash ;;
  *) echo "usage: scripts/bench.sh hash" >&2; exit 2 ;;
esac
