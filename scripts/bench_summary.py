"""Prints the medians of scripts/bench.sh result files (one JSON document per run)."""
import glob, json, os, statistics, sys

out = sys.argv[1]

def runs(name):
    return [json.load(open(f)) for f in sorted(glob.glob(os.path.join(out, name + ".*.json")))]

def med(xs):
    return statistics.median(xs) if xs else float("nan")

print(f"results in {out}\n")
print("| scenario | server | p50 ms | p99 ms | deliveries/s | missed | dup | RSS/watcher KiB | server CPU s | ratio p99 | ratio deliveries/s |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for name in ["peek1k", "peek5k", "peek10k", "sync1k"]:
    rs = runs(name)
    if not rs:
        continue
    for i, label in [(0, "null"), (1, "porthole")]:
        res = [r["results"][i] for r in rs]
        rat = [r["ratio_to_null"] for r in rs] if i == 1 else []
        print(f"| {name} W={res[0]['watchers']} M={res[0]['messages']} @{res[0]['rate_per_s']:g}/s | {label} | "
              f"{med([x['latency']['p50_ms'] for x in res]):.1f} | {med([x['latency']['p99_ms'] for x in res]):.1f} | "
              f"{med([x['deliveries_per_s'] for x in res]):.0f} | {max(x['missed'] for x in res)} | {max(x['duplicated'] for x in res)} | "
              f"{med([x['server_rss_per_watcher_kib'] for x in res]):.1f} | {med([x['server_cpu_s'] for x in res]):.1f} | "
              + (f"{med([x['p99'] for x in rat]):.2f} | {med([x['deliveries_s'] for x in rat]):.2f} |" if rat else " | |"))
print()
print("| scenario | per second | p50 ms | p99 ms | notes |")
print("|---|---|---|---|---|")
for name in ["send", "join", "register"]:
    rs = runs(name)
    if not rs:
        continue
    note = ""
    if name == "join":
        note = (f"first 100 joins p50 {med([r['extra']['first_joins_latency']['p50_ms'] for r in rs]):.1f} ms, "
                f"last 100 p50 {med([r['extra']['last_joins_latency']['p50_ms'] for r in rs]):.1f} ms")
    print(f"| {name} (n={rs[0]['count']}, c={rs[0]['concurrency']}) | {med([r['per_s'] for r in rs]):.0f} | "
          f"{med([r['latency']['p50_ms'] for r in rs]):.1f} | {med([r['latency']['p99_ms'] for r in rs]):.1f} | {note} |")
