#!/usr/bin/env bash
# Builds Porthole, starts it on a free loopback port with a fresh data directory, and runs
# the real-client suites against it: matrix-js-sdk (e2e/js), matrix-nio (e2e/nio) and
# mautrix-go (e2e/mautrix), and the web pages in Debian's chromium (e2e/browser). A suite whose tool is missing is skipped with a message, or
# fails the run when CI=true. Pass suite names (js nio mautrix browser) to run only those.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=go1.27.3
root=$PWD
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(js nio mautrix browser)

work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }; rm -rf "$work"' EXIT
go build -o "$work/porthole" ./cmd/porthole
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$work/porthole" --listen "127.0.0.1:$port" --data "$work/data" --log-level warn --rate-limit off 2>"$work/server.log" &
pid=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/_matrix/client/versions" >/dev/null 2>&1 && break
  sleep 0.1
done
export PORTHOLE_URL="http://127.0.0.1:$port"

missing() { # what is missing
  if [ "${CI:-}" = true ]; then
    echo "e2e: $1 is needed in CI" >&2
    exit 1
  fi
  echo "== skipping: $1 is not installed"
}

failed=()
run() { # name, command...
  local name=$1 start=$SECONDS
  shift
  echo "== $name end-to-end"
  if "$@"; then
    echo "== $name: passed in $((SECONDS - start)) s"
  else
    echo "== $name: FAILED after $((SECONDS - start)) s" >&2
    failed+=("$name")
  fi
}

js() {
  cd "$root/e2e/js"
  if [ ! -d node_modules ] || [ "${CI:-}" = true ]; then npm ci --no-audit --no-fund --loglevel=error || return 1; fi
  timeout 300 node --test --test-force-exit --test-timeout=120000
}

# nio is Debian's python3-matrix-nio, for the system Python (not a pyenv one on PATH).
nio() {
  cd "$root/e2e/nio"
  timeout 300 /usr/bin/python3 -m unittest -v test_nio
}

browser() {
  cd "$root/e2e/browser"
  if [ ! -d node_modules ] || [ "${CI:-}" = true ]; then npm ci --no-audit --no-fund --loglevel=error || return 1; fi
  timeout 300 node --test --test-force-exit --test-timeout=120000
}

mautrix() {
  cd "$root/e2e/mautrix"
  timeout 300 go test -count=1 -v ./...
}

for s in "${suites[@]}"; do
  case $s in
  js)
    if command -v node >/dev/null && command -v npm >/dev/null; then run matrix-js-sdk js; else missing "Node.js (for matrix-js-sdk)"; fi ;;
  nio)
    if /usr/bin/python3 -c 'import nio' 2>/dev/null; then run matrix-nio nio; else missing "python3-matrix-nio"; fi ;;
  mautrix)
    run mautrix-go mautrix ;;
  browser)
    if command -v node >/dev/null && [ -x /usr/bin/chromium ]; then run "web pages (chromium)" browser; else missing "Node.js and Debian's chromium (for the web pages)"; fi ;;
  *)
    echo "unknown suite $s (js, nio, mautrix, browser)" >&2; exit 2 ;;
  esac
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "--- failed: ${failed[*]}; server log:" >&2
  tail -50 "$work/server.log" >&2
  exit 1
fi
