#!/usr/bin/env bash
# Copies the Matrix specification's schema files (Apache-2.0) from the reference checkout
# beside the repository (../shared/matrix-spec, or $MATRIX_SPEC) into
# internal/specschema/matrix-spec, where the test suite's response validator embeds them.
# Only the OpenAPI and JSON Schema files are copied; prose and examples are left out.
# Run it when the reference spec changes, then fix what the tests then find.
set -euo pipefail
cd "$(dirname "$0")/.."
src=${MATRIX_SPEC:-../shared/matrix-spec}
dst=internal/specschema/matrix-spec
[ -d "$src/data/api/client-server" ] || { echo "no Matrix spec at $src" >&2; exit 1; }
rm -rf "$dst"
mkdir -p "$dst/data/api" "$dst/data/event-schemas"
cp "$src/LICENSE" "$dst/LICENSE"
cp -r "$src/data/api/client-server" "$dst/data/api/"
# The Application Service API whole (tests check the transactions sent to services), and
# the identity service's definitions that client-server files point into (only request
# bodies refer to them, and the reference copy does not carry the rest).
cp -r "$src/data/api/application-service" "$dst/data/api/"
for d in identity; do
  if [ -d "$src/data/api/$d/definitions" ]; then
    mkdir -p "$dst/data/api/$d" && cp -r "$src/data/api/$d/definitions" "$dst/data/api/$d/"
  fi
done
cp -r "$src/data/event-schemas/schema" "$dst/data/event-schemas/"
cp "$src/data/event-schemas/moderation_policy_rule.yaml" "$dst/data/event-schemas/"
commit=$(sed -n 's/.*commit \([0-9a-f]\{40\}\).*/\1/p' "$src/README.md" | head -1)
cat >"$dst/README.md" <<NOTE
# Matrix specification schemas (test data)

The OpenAPI and JSON Schema files of the Matrix specification (matrix-org/matrix-spec,
commit ${commit:-unknown}), unmodified, under the Apache License 2.0 (LICENSE here).
Copyright The Matrix.org Foundation C.I.C. and the authors named in each file.

Porthole's test suite validates every response its HTTP tests receive against these
schemas (see ../spec.go). Refresh with scripts/update-spec-schemas.sh.
NOTE
echo "copied $(find "$dst" -type f | wc -l) files from $src (${commit:-unknown commit})"
