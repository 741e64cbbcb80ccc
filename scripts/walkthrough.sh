#!/usr/bin/env bash
# Runs the README's "Try it with buf curl" block as written against a real server (the
# embedded default on a free port, in a temporary data directory), and checks what a reader
# would see: the group, Bob's message in the history, the live stream's `joined`, health.
# Installs buf (npm) into .tools/buf and jq (apt-get) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

BUF_VERSION=1.75.0
if [[ ! -x .tools/buf/node_modules/.bin/buf ]]; then
  npm install --silent --no-audit --no-fund --prefix .tools/buf "@bufbuild/buf@${BUF_VERSION}" >&2
fi
export PATH="$PWD/.tools/buf/node_modules/.bin:$PATH"
if ! command -v jq >/dev/null; then
  echo "== walkthrough: installing jq (apt-get, once)" >&2
  sudo=()
  [[ $(id -u) -ne 0 ]] && sudo=(sudo)
  "${sudo[@]}" apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq jq >&2
fi

cargo build --quiet --locked --bin quickchat-server
work="$(mktemp -d)"
server_pid=""
cleanup() {
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

target/debug/quickchat-server --listen 127.0.0.1:0 --data-dir "$work/data" \
  >"$work/stdout" 2>"$work/stderr" &
server_pid=$!
for _ in $(seq 1 300); do
  grep -q "listening on http://" "$work/stdout" 2>/dev/null && break
  sleep 0.1
done
address="$(grep -o 'listening on http://[0-9.:]*' "$work/stdout" | head -1 | sed 's|listening on ||')"
[[ -n "$address" ]] || { echo "walkthrough: the server did not start" >&2; cat "$work/stderr" >&2; exit 1; }

# The block, exactly as the README has it.
awk '/^### Try it with buf curl/ {found=1} found && /^```sh$/ {inside=1; next} inside && /^```$/ {exit} inside {print}' \
  README.md >"$work/walkthrough.sh"
[[ -s "$work/walkthrough.sh" ]] || { echo "walkthrough: no block found in README.md" >&2; exit 1; }

echo "== README walkthrough against $address" >&2
SERVER="$address" bash -euo pipefail "$work/walkthrough.sh" >"$work/out" 2>&1 || {
  echo "walkthrough: the README's block failed:" >&2; cat "$work/out" >&2; exit 1; }

expect() {
  grep -q -- "$1" "$work/out" || {
    echo "walkthrough: expected $1 in the output:" >&2; cat "$work/out" >&2; exit 1; }
}
expect '"title": "Rustaceans"'
expect '"body": "hello from Bob"'
expect '"joined"'
expect '"status": "SERVING"'
echo "== README walkthrough: every step answered as described" >&2
