#!/usr/bin/env bash
# Runs the whole test suite: unit tests and the end-to-end suites, first on the embedded
# default (SQLite), then again on PostgreSQL (a fresh database per test).
#
#   scripts/test.sh            # everything
#   scripts/test.sh -E 'test(/groups/)'   # extra arguments go to cargo nextest
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest (once)" >&2
  cargo install --locked cargo-nextest
fi

echo "== tests on the embedded default (SQLite)" >&2
env -u QUICKCHAT_TEST_DATABASE_URL cargo nextest run --workspace --no-tests=warn "$@"

database_url="$(scripts/services.sh)"
echo "== end-to-end tests on PostgreSQL ($database_url)" >&2
QUICKCHAT_TEST_DATABASE_URL="$database_url" \
  cargo nextest run -p quickchat-integration-tests --no-tests=warn "$@"
