#!/usr/bin/env bash
# Makes sure a Kafka broker for the tests is up: tansu (a Kafka-protocol broker, in-memory
# storage) on 127.0.0.1:${QUICKCHAT_TEST_KAFKA_PORT:-19092}. Installs tansu with cargo if it is
# missing (slow, once), starts it in the background unless something already listens on the
# port, and prints the bootstrap address the tests should use. Skipped entirely when
# QUICKCHAT_TEST_KAFKA_BROKERS is set. The broker's log goes to target/tansu/.
#
#   export QUICKCHAT_TEST_KAFKA_BROKERS="$(scripts/kafka.sh)"
#   scripts/kafka.sh --fresh      # stops the broker this script started on the port first
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -n "${QUICKCHAT_TEST_KAFKA_BROKERS:-}" ]]; then
  echo "$QUICKCHAT_TEST_KAFKA_BROKERS"
  exit 0
fi

port="${QUICKCHAT_TEST_KAFKA_PORT:-19092}"
address="127.0.0.1:$port"
state_dir="target/tansu"
mkdir -p "$state_dir"

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

# One caller at a time from here, so two concurrent runs cannot start two brokers.
exec 9>"$state_dir/lock"
flock 9

pidfile="$state_dir/broker-$port.pid"
if [[ "${1:-}" == "--fresh" && -f "$pidfile" ]] && kill "$(cat "$pidfile")" 2>/dev/null; then
  for _ in $(seq 1 50); do listening || break; sleep 0.1; done
fi

if ! listening; then
  tansu="$(command -v tansu || true)"
  if [[ -z "$tansu" && -x "$HOME/.cargo/bin/tansu" ]]; then
    tansu="$HOME/.cargo/bin/tansu"
  fi
  if [[ -z "$tansu" ]]; then
    echo "installing tansu (once; this takes a while)" >&2
    cargo install --locked tansu --features dynostore >&2
    tansu="$HOME/.cargo/bin/tansu"
  fi

  log="$state_dir/broker-$port.log"
  echo "starting tansu on $address (log: $log)" >&2
  # setsid: the broker outlives this script and its terminal; 9>&-: it must not hold the lock.
  setsid nohup "$tansu" broker \
    --cluster-id quickchat-test \
    --listener-url "tcp://$address" \
    --advertised-listener-url "tcp://$address" \
    --storage-engine memory://tansu/ \
    >"$log" 2>&1 </dev/null 9>&- &
  echo $! >"$pidfile"

  for _ in $(seq 1 100); do listening && break; sleep 0.1; done
fi

if ! listening; then
  echo "error: no Kafka broker on $address; see $state_dir/broker-$port.log," \
    "or set QUICKCHAT_TEST_KAFKA_BROKERS" >&2
  exit 1
fi
echo "$address"
