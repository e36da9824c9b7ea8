#!/usr/bin/env bash
# Runs sytest files against a freshly built Porthole, through the workplace's sytest
# runner (../shared/sytest/run.sh). sytest itself lives outside this repository: point
# SYTEST_DIR at an unpacked checkout of matrix-org/sytest.
#
#   SYTEST_DIR=/work/sytest scripts/sytest.sh tests/30rooms/13guestaccess.pl ...
# Extra options (e.g. -k REGEX) are passed to run.sh; federation tests are excluded (rooms over
# federation are not built yet) unless SYTEST_FEDERATION=1, and the tests in
# scripts/sytest-known-failures.txt are reported as expected failures. The server runs its
# federation listener on the adapter's TLS port with the adapter's certificate, trusting
# sytest's CA, so that sytest can play the remote server.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=go1.27.3
: "${SYTEST_DIR:?set SYTEST_DIR to an unpacked sytest checkout}"
RUNNER="${SYTEST_RUNNER:-$(cd .. && pwd)/shared/sytest/run.sh}"
export PORTHOLE_BIN="$(mktemp -d)/porthole"
go build -o "$PORTHOLE_BIN" ./cmd/porthole
# sytest's application services (tests/60app-services) come as SYTEST_HS_APPSERVICE_CONFIGS,
# colon-separated registration files: each becomes an --appservice flag.
export SYTEST_HS_CMD='set --; IFS=:; for f in ${SYTEST_HS_APPSERVICE_CONFIGS:-}; do set -- "$@" --appservice "$f"; done; unset IFS; exec "$PORTHOLE_BIN" "$@" --listen "$SYTEST_HS_BIND_HOST:$SYTEST_HS_HTTP_PORT" --server-name "$SYTEST_HS_SERVER_NAME" --data "$SYTEST_HS_DATA_DIR" --log-level "${PORTHOLE_SYTEST_LOG_LEVEL:-info}" --rate-limit off --push-allow-private on --push-trust "$SYTEST_CA" --federation-listen "$SYTEST_HS_BIND_HOST:$SYTEST_HS_HTTPS_PORT" --federation-tls-cert "$SYTEST_HS_TLS_CERT" --federation-tls-key "$SYTEST_HS_TLS_KEY" --federation-trust "$SYTEST_CA" --federation-allow-private on 2>>"$SYTEST_HS_DATA_DIR/porthole.log"'
# sytest's push gateway listens on localhost with a certificate from sytest's own CA.
export SYTEST_CA="$(cd "$SYTEST_DIR" && pwd)/keys/ca.crt"
export PORTHOLE_BCRYPT_COST=4
exclude=(-x 'federation|remote')
[ "${SYTEST_FEDERATION:-}" = 1 ] && exclude=()
exec "$RUNNER" -t generic "${exclude[@]}" -B scripts/sytest-known-failures.txt "$@"
