#!/usr/bin/env bash
# Makes sure the local services the tests use are up and prints their URLs as shell
# assignments (eval "$(scripts/services.sh)"):
#   QUICKCHAT_TEST_DATABASE_URL  PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres)
#   QUICKCHAT_TEST_REDIS_URL     Redis on 127.0.0.1:6379
# A variable that is already set is kept as it is and its service is not touched. A
# service installed from Debian's packages but stopped is started.
set -euo pipefail

if [[ -z "${QUICKCHAT_TEST_DATABASE_URL:-}" ]]; then
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
  QUICKCHAT_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
fi

if [[ -z "${QUICKCHAT_TEST_REDIS_URL:-}" ]]; then
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    if command -v redis-server >/dev/null; then
      echo "starting Redis" >&2
      mkdir -p /tmp/quickchat-redis
      redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
        --dir /tmp/quickchat-redis --logfile /tmp/quickchat-redis/redis.log >&2
      for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done
    fi
  fi
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    echo "error: no Redis on 127.0.0.1:6379; start one or set QUICKCHAT_TEST_REDIS_URL" >&2
    exit 1
  fi
  QUICKCHAT_TEST_REDIS_URL="redis://127.0.0.1:6379"
fi

printf 'export QUICKCHAT_TEST_DATABASE_URL=%q\n' "$QUICKCHAT_TEST_DATABASE_URL"
printf 'export QUICKCHAT_TEST_REDIS_URL=%q\n' "$QUICKCHAT_TEST_REDIS_URL"
