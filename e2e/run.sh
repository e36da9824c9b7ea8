#!/usr/bin/env bash
# Builds Porthole, starts it on a free loopback port with a fresh data directory, and runs
# the matrix-js-sdk end-to-end tests against it.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=go1.27.3
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/porthole" ./cmd/porthole
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$work/porthole" --listen "127.0.0.1:$port" --data "$work/data" --log-level warn --rate-limit off 2>"$work/server.log" &
pid=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/_matrix/client/versions" >/dev/null 2>&1 && break
  sleep 0.1
done
cd e2e/js
if [ ! -d node_modules ] || [ "${CI:-}" = true ]; then npm ci --no-audit --no-fund --loglevel=error; fi
if ! PORTHOLE_URL="http://127.0.0.1:$port" timeout 300 node --test --test-force-exit --test-timeout=120000; then
  echo "--- server log" >&2; tail -50 "$work/server.log" >&2
  exit 1
fi
