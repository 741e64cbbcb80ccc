#!/usr/bin/env bash
# The browser app (web/): installs its npm packages (once per package-lock.json), generates
# the gRPC-web clients from proto/ and builds, checks or tests it.
#
#   scripts/web.sh build     # npm ci (when needed) + buf generate + tsc + vite build → web/dist
#   scripts/web.sh check     # eslint and tsc --noEmit
#   scripts/web.sh test      # vitest (the client state), then e2e
#   scripts/web.sh e2e       # build the app and the server, then the Playwright scenarios in
#                            # Chromium (installed with apt-get when missing): the whole app,
#                            # then sign-in through a local OpenID Connect provider;
#                            # screenshots in web/test-results/e2e/
#
# Needs Node.js 20+ and npm.
set -euo pipefail
cd "$(dirname "$0")/../web"

need_node() {
  if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
    echo "scripts/web.sh: the web app needs Node.js 20+ and npm (e.g. apt-get install nodejs npm)" >&2
    exit 1
  fi
}

# npm ci only when package-lock.json changed since the last install.
install() {
  need_node
  local stamp=node_modules/.quickchat-lock
  local want
  want="$(sha256sum package-lock.json | cut -d' ' -f1)"
  if [[ ! -f $stamp || "$(cat "$stamp")" != "$want" ]]; then
    echo "== web: npm ci" >&2
    npm ci --no-audit --no-fund --loglevel=error
    echo "$want" >"$stamp"
  fi
}

generate() {
  npm run --silent generate
}

chromium_path() {
  if [[ -n ${CHROMIUM:-} ]]; then
    echo "$CHROMIUM"
  elif command -v chromium >/dev/null; then
    command -v chromium
  else
    echo "== web: installing Chromium (apt-get, once)" >&2
    local sudo=()
    [[ $(id -u) -ne 0 ]] && sudo=(sudo)
    "${sudo[@]}" apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq chromium >&2
    command -v chromium
  fi
}

e2e() {
  npm run --silent build
  CHROMIUM="$(chromium_path)"
  export CHROMIUM
  echo "== web: building quickchat-server (dev profile)" >&2
  (cd .. && cargo build --locked --bin quickchat-server)
  QUICKCHAT_SERVER_BIN="${QUICKCHAT_SERVER_BIN:-$(cd .. && pwd)/target/debug/quickchat-server}"
  export QUICKCHAT_SERVER_BIN
  echo "== web: end-to-end scenario in Chromium" >&2
  node e2e/scenario.mjs
  echo "== web: sign-in with an identity provider in Chromium" >&2
  node e2e/oidc.mjs
}

case "${1:-build}" in
  build)
    install
    echo "== web: build" >&2
    npm run --silent build
    ;;
  check)
    install
    generate
    echo "== web: eslint" >&2
    npm run --silent lint
    echo "== web: tsc --noEmit" >&2
    npm run --silent typecheck
    ;;
  test)
    install
    generate
    echo "== web: vitest" >&2
    npm run --silent test
    e2e
    ;;
  e2e)
    install
    e2e
    ;;
  *)
    echo "usage: scripts/web.sh build|check|test|e2e" >&2
    exit 2
    ;;
esac
