#!/usr/bin/env bash
# The benchmark command: QuickChat against the original Node.js stack (Socket.IO + the Redis
# Streams adapter + kafkajs + pg, under bench/peer/) on this machine, every scenario, a
# progress bar, and a side-by-side table at the end. See BENCHMARKS.md.
#
#   bench/run.sh                                   # every scenario, both stacks (minutes)
#   bench/run.sh fanout cross-node --stack quickchat --fanout-subscribers 2000
#   bench/run.sh --help                            # every scenario, size and rate flag
#   bench/run.sh --smoke                           # tiny sizes: proves the harness works (CI)
#
# Makes sure PostgreSQL and Redis (scripts/services.sh) are up, starts a fresh Kafka-protocol
# broker of its own (scripts/kafka.sh on port 19192, unless QUICKCHAT_TEST_KAFKA_BROKERS
# names one), installs the peer's npm packages (npm ci, pinned versions), and
# builds quickchat-server and the load generator (quickchat-bench) once, in release mode —
# for --smoke in the dev profile the test command has mostly built already, since a smoke
# run measures nothing. Each run uses a fresh database (dropped afterwards) and prefixes its
# Redis keys and Kafka topics with its id; process logs stay in target/bench/<run id>/.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
for arg in "$@"; do
  [[ "$arg" == "--smoke" ]] && profile=dev
done

services="$(scripts/services.sh)"
eval "$services"
# Unless a broker is given, the benchmarks get their own tansu, started afresh for every
# run: tansu keeps every record in memory as one object per produced batch, and its fetches
# list them, so a broker that has held many runs (or test suites) answers ever slower.
QUICKCHAT_TEST_KAFKA_BROKERS="$(QUICKCHAT_TEST_KAFKA_PORT=19192 scripts/kafka.sh --fresh)"
export QUICKCHAT_TEST_KAFKA_BROKERS

# The peer's packages, exactly as locked (again whenever the lock file changes).
peer=bench/peer
if ! cmp -s "$peer/package-lock.json" "$peer/node_modules/.installed-lock.json" 2>/dev/null; then
  echo "== installing the peer's npm packages" >&2
  npm ci --prefix "$peer" --no-audit --no-fund --loglevel=error >&2
  cp "$peer/package-lock.json" "$peer/node_modules/.installed-lock.json"
fi

echo "== building quickchat-server and quickchat-bench ($profile)" >&2
cargo build --locked --profile "$profile" -p quickchat-service -p quickchat-bench >&2
dir=target/$([[ "$profile" == dev ]] && echo debug || echo "$profile")

# Thousands of connections: one descriptor each, in the servers and the load generators.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec "$dir/quickchat-bench" --server-bin "$dir/quickchat-server" "$@"
