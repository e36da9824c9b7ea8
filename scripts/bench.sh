#!/usr/bin/env bash
# Runs the benchmark matrix of BENCHMARKS.md ROUNDS times (default 3) against a freshly
# built Porthole (SQLite, rate limiting off) and the null server, and prints the medians.
#   scripts/bench.sh [ROUNDS] [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=go1.27.3
rounds=${1:-3}
out=${2:-$(mktemp -d /tmp/porthole-bench-results.XXXX)}
mkdir -p "$out"
bin=$(mktemp -d)
go build -o "$bin/porthole" ./cmd/porthole
go build -o "$bin/porthole-bench" ./cmd/porthole-bench
pb="$bin/porthole-bench"
for r in $(seq 1 "$rounds"); do
  echo "== round $r" >&2
  $pb fanout --spawn "$bin/porthole" --compare-null --mode peek -w 1000  -m 200 --rate 10 --json > "$out/peek1k.$r.json"
  $pb fanout --spawn "$bin/porthole" --compare-null --mode peek -w 5000  -m 200 --rate 10 --json > "$out/peek5k.$r.json"
  $pb fanout --spawn "$bin/porthole" --compare-null --mode peek -w 10000 -m 30  --rate 1  --json > "$out/peek10k.$r.json"
  $pb fanout --spawn "$bin/porthole" --compare-null --mode sync -w 1000  -m 200 --rate 10 --json > "$out/sync1k.$r.json"
  $pb send     --spawn "$bin/porthole" -s 8 -n 5000  --json > "$out/send.$r.json"
  $pb join     --spawn "$bin/porthole" -n 10000 -c 16 --json > "$out/join.$r.json"
  $pb register --spawn "$bin/porthole" -n 20000 -c 32 --json > "$out/register.$r.json"
done
python3 scripts/bench_summary.py "$out"
