#!/usr/bin/env bash
# Makes sure the local services the tests use are up: PostgreSQL on 127.0.0.1:5432 (trust
# auth, user postgres). Starts the Debian cluster if it is installed but stopped. Prints the
# URL the tests should use. Skipped entirely when QUICKCHAT_TEST_DATABASE_URL is set.
set -euo pipefail

if [[ -n "${QUICKCHAT_TEST_DATABASE_URL:-}" ]]; then
  echo "$QUICKCHAT_TEST_DATABASE_URL"
  exit 0
fi

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null && [[ -d /etc/postgresql ]]; then
    echo "starting PostgreSQL" >&2
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start >&2
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "error: no PostgreSQL on 127.0.0.1:5432; start one or set QUICKCHAT_TEST_DATABASE_URL" >&2
  exit 1
fi
echo "postgres://postgres@127.0.0.1:5432/postgres"
