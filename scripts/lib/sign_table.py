"""Turns bench.sh's signing results (JSON lines) into the docs/benchmarks.md table, with every
figure a ratio against the raw backend or OpenBao measured in the same run."""
import json
import sys

results = [json.loads(line) for line in open(sys.argv[1])]
machine = sys.argv[2]


def runs(target):
    return {r["report"]["concurrency"]: r["report"] for r in results if r["target"] == target}


raw_es, raw_ps, bao, signet = runs("raw-ES256"), runs("raw-PS256"), runs("openbao"), runs("signet")
batch = runs("signet-batch100")
batch = next(iter(batch.values()))
unlogged_quota = runs("signet-unlogged-quota")
unlogged_memory = runs("signet-unlogged-memory")
unsynced = runs("signet-unlogged-unsynced")
http_floor = runs("http-floor")[1]
rss_mb = next(r["kb"] for r in results if r["target"] == "signet-rss") / 1024


def row(name, r, note=""):
    return (f"| {name} | {r['concurrency']} | {r['requests_per_second']:,.0f} | {r['operations_per_second']:,.0f} "
            f"| {r['p50_us']} | {r['p90_us']} | {r['p99_us']} | {r['max_us']} | {r['errors']} | {note} |")


print("### Signing\n")
print(f"Machine: {machine}. The load generator (`signet bench`) shares the machine. Closed loop, "
      "HTTP/1.1 keep-alive; signet's full path: session lookup, quota, SoftHSM ES256, durable log entry.\n")
print("| target | concurrency | req/s | signatures/s | p50 µs | p90 µs | p99 µs | max µs | errors | note |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for t in (1, 2):
    print(row("raw SoftHSM C_Sign ES256", raw_es[t], "threads, no HTTP"))
for t in (1, 2):
    print(row("raw SoftHSM C_Sign PS256 (RSA-2048)", raw_ps[t], "threads, no HTTP"))
for c in (1, 8, 64):
    print(row("OpenBao Transit ecdsa-p256", bao[c]))
for c in (1, 8, 64):
    print(row("signet ES256", signet[c], f"{signet[c]['requests_per_second'] / bao[c]['requests_per_second']:.2f}x OpenBao"))
for c in (1, 8):
    for name, r in (("signet ES256 without the log; quota in the durable commit", unlogged_quota[c]),
                    ("signet ES256 without the log or any store write", unlogged_memory[c]),
                    ("signet ES256 with the log, commits not fsynced", unsynced[c])):
        print(row(name, r, f"with the log: {signet[c]['requests_per_second'] / r['requests_per_second']:.2f}x this"))
print(row("HTTP round trip alone: GET /healthz on signet", http_floor, "same client; no signing"))
print(row("signet ES256, 100 digests a request", batch,
          f"{batch['operations_per_second'] / raw_es[2]['operations_per_second']:.0%} of raw 2 threads"))
print()
goals = []
for c in (8, 64):
    ratio = signet[c]["requests_per_second"] / bao[c]["requests_per_second"]
    p99 = signet[c]["p99_us"] / max(bao[c]["p99_us"], 1)
    goals.append((f"signet ≥ 2× OpenBao req/s at c={c}", f"{ratio:.2f}×", ratio >= 2))
    goals.append((f"signet p99 ≤ ½ OpenBao's at c={c}", f"{p99:.2f}×", p99 <= 0.5))
extra = signet[1]["p50_us"] - raw_es[1]["p50_us"]
goals.append(("signet p50 at c=1 ≤ raw C_Sign p50 + 170 µs", f"+{extra} µs", extra <= 170))
share = batch["operations_per_second"] / raw_es[2]["operations_per_second"]
goals.append(("batch ≥ 80 % of raw SoftHSM on 2 threads", f"{share:.0%}", share >= 0.8))
goals.append(("daemon peak RSS < 50 MB", f"{rss_mb:.0f} MB", rss_mb < 50))
for label, r in (("log costs ≤ 20 % of req/s at c=8, against the path without log entries", unlogged_quota[8]),
                 ("log costs ≤ 20 % of req/s at c=8, against the path with no store write", unlogged_memory[8])):
    cost = 1 - signet[8]["requests_per_second"] / r["requests_per_second"]
    goals.append((label, f"{cost:.0%}", cost <= 0.2))
print("| goal | measured | met |")
print("|---|---:|---|")
for goal, measured, met in goals:
    print(f"| {goal} | {measured} | {'yes' if met else '**no**'} |")
print()
print(f"At c=1 the HTTP round trip alone (GET /healthz, same client) has p50 {http_floor['p50_us']} µs, "
      f"+{http_floor['p50_us'] - raw_es[1]['p50_us']} µs over raw C_Sign; signet without any store write "
      f"has p50 {unlogged_memory[1]['p50_us']} µs, and with the durable log entry {signet[1]['p50_us']} µs.")
own = 1 - unsynced[8]["requests_per_second"] / unlogged_memory[8]["requests_per_second"]
whole = 1 - signet[8]["requests_per_second"] / unlogged_memory[8]["requests_per_second"]
print(f"At c=8, against the path with no store write, the log with its commits not fsynced costs {own:.0%} "
      f"of req/s and the durable log {whole:.0%}: the fsync that makes each entry durable before the "
      f"answer is the rest.")
