#!/usr/bin/env bash
# Runs the whole test suite:
#   1. every crate's tests: unit tests and conformance suites (relay, log), the API suite on
#      the embedded default (SQLite), the CLI end to end, and the multi-node cluster suite
#      (PostgreSQL + Redis + a Kafka-protocol broker);
#   2. the API suite again on PostgreSQL (a fresh database per test);
#   3. the browser app: its unit tests (Vitest) and the end-to-end scenario in headless
#      Chromium against a real server (scripts/web.sh test; needs Node.js 20+ and npm,
#      installs Chromium with apt-get when missing);
#   4. the cluster suite (with its fault suite) once more with PostgreSQL, Redis and Kafka
#      in containers that the tests start through testcontainers (scripts/containers.sh
#      installs podman where missing and builds the images from Debian's packages, once;
#      QUICKCHAT_TEST_CONTAINERS=off skips this step);
#   5. the README's buf curl walkthrough, run as written against a real server
#      (scripts/walkthrough.sh);
#   6. every benchmark scenario once at a tiny size, on both stacks (bench/run.sh --smoke:
#      proves the harness and the peer under bench/peer/ work; it times nothing).
#      3 to 6 are skipped when arguments are given.
# Local PostgreSQL and Redis are started if installed but stopped (scripts/services.sh); a
# Kafka-protocol broker is started unless QUICKCHAT_TEST_KAFKA_BROKERS names one
# (scripts/kafka.sh).
#
#   scripts/test.sh                          # everything
#   scripts/test.sh -E 'test(/groups/)'      # extra arguments go to cargo nextest (and
#                                            # skip the browser app's tests)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest (once)" >&2
  cargo install --locked cargo-nextest
fi

# Assigned first so that a failure of services.sh stops the script (set -e does not see
# a failing command substitution inside eval).
services="$(scripts/services.sh)"
eval "$services"
QUICKCHAT_TEST_KAFKA_BROKERS="$(scripts/kafka.sh)"
export QUICKCHAT_TEST_KAFKA_BROKERS
echo "== services: $QUICKCHAT_TEST_DATABASE_URL, $QUICKCHAT_TEST_REDIS_URL, kafka at $QUICKCHAT_TEST_KAFKA_BROKERS" >&2

# Each test creates its own database; drop those earlier runs left behind (one still in use
# by a concurrent run cannot be dropped and is skipped).
if command -v psql >/dev/null; then
  psql "$QUICKCHAT_TEST_DATABASE_URL" -Atc \
    "select datname from pg_database
     where datname like 'quickchat\_test\_%' or datname like 'quickchat\_cluster\_%'" 2>/dev/null |
    while read -r db; do
      psql "$QUICKCHAT_TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS \"$db\"" >/dev/null 2>&1 || true
    done || true
fi

echo "== all tests (API suite on the embedded default, SQLite)" >&2
# The containers binary is about the harness's containers: it runs in step 4.
if [[ $# -eq 0 ]]; then
  QUICKCHAT_TEST_STORE=sqlite cargo nextest run --workspace -E 'not binary(containers)'
else
  QUICKCHAT_TEST_STORE=sqlite cargo nextest run --workspace "$@"
fi

echo "== API suite on PostgreSQL" >&2
QUICKCHAT_TEST_STORE=postgres cargo nextest run -p quickchat-integration-tests -E 'binary(api)' "$@"

if [[ $# -eq 0 && "${QUICKCHAT_TEST_CONTAINERS:-on}" != off ]]; then
  echo "== cluster suite again, with PostgreSQL, Redis and Kafka in containers (testcontainers)" >&2
  containers="$(scripts/containers.sh)"
  eval "$containers"
  # The run's containers, shared by its test processes, are removed when it ends.
  export QUICKCHAT_TEST_RUN="quickchat-test-$(date +%s)-$$"
  trap 'scripts/containers.sh --remove-run "$QUICKCHAT_TEST_RUN" >/dev/null' EXIT
  env -u QUICKCHAT_TEST_DATABASE_URL -u QUICKCHAT_TEST_REDIS_URL -u QUICKCHAT_TEST_KAFKA_BROKERS \
    cargo nextest run -p quickchat-integration-tests -E 'binary(cluster) | binary(containers)'
  scripts/containers.sh --remove-run "$QUICKCHAT_TEST_RUN" >/dev/null
  trap - EXIT
fi

if [[ $# -eq 0 ]]; then
  echo "== browser app: unit tests and the end-to-end scenario in Chromium" >&2
  scripts/web.sh test
  echo "== the README's buf curl walkthrough, as written, against a real server" >&2
  scripts/walkthrough.sh
  echo "== the benchmark harness, every scenario at a tiny size, both stacks" >&2
  bench/run.sh --smoke
fi
