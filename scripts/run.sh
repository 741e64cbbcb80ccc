#!/usr/bin/env bash
# Builds the browser app once (scripts/web.sh build: npm ci, generated clients, vite build)
# and starts the server serving it on the embedded default; the startup line prints the URL
# to open. Extra arguments go to quickchat-server (e.g. --listen 0.0.0.0:50051).
#
#   scripts/run.sh
#
# Needs a Rust toolchain, Node.js 20+ and npm.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/web.sh build
exec cargo run --release --locked --bin quickchat-server -- --web-dir web/dist "$@"
