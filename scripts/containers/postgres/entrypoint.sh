#!/bin/bash
# Minimal stand-in for the official postgres image's entrypoint: honours
# POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB / POSTGRES_HOST_AUTH_METHOD and
# /docker-entrypoint-initdb.d/*.sql|*.sh. Like the official image, the temporary
# init server logs to stdout and the final server to stderr, so
# testcontainers-modules' Postgres wait conditions (message on stderr AND stdout)
# are met. Arguments that start with "-" are the server's options (`-c fsync=off`), as
# the official image takes them.
set -euo pipefail
if [ "${1:0:1}" = - ]; then
  set -- postgres "$@"
fi
if [ "$(id -u)" = 0 ] && [ "${1:-}" = postgres ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown -R postgres:postgres "$PGDATA" /var/run/postgresql; chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
POSTGRES_USER=${POSTGRES_USER:-postgres}
POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
AUTH=${POSTGRES_HOST_AUTH_METHOD:-}
if [ -z "$AUTH" ]; then
  if [ -n "${POSTGRES_PASSWORD:-}" ]; then AUTH=scram-sha-256; else AUTH=trust; fi
fi
if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  pw=$(mktemp); printf '%s\n' "${POSTGRES_PASSWORD:-postgres}" > "$pw"
  initdb -D "$PGDATA" --username="$POSTGRES_USER" --pwfile="$pw" \
         --auth-local=trust --auth-host="$AUTH" ${POSTGRES_INITDB_ARGS:-}
  rm -f "$pw"
  echo "host all all all $AUTH" >> "$PGDATA/pg_hba.conf"
  # temporary server, unix socket only, log to stdout
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -c fsync=off" -w start
  psql=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --dbname postgres)
  if [ "$POSTGRES_DB" != postgres ]; then
    "${psql[@]}" -c "CREATE DATABASE \"$POSTGRES_DB\""
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh)  echo "running $f"; . "$f" ;;
      *.sql) echo "running $f"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
      *.sql.gz) echo "running $f"; gunzip -c "$f" | "${psql[@]}" --dbname "$POSTGRES_DB" ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop
  echo "PostgreSQL init process complete; ready for start up."
fi
if [ "${1:-}" = postgres ]; then
  shift
  exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
fi
exec "$@"
