#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests marked `postgres` (CI and local runs).
#
#   eval "$(tests/services/postgres.sh start)"   # prints: export DARKROOM_TEST_POSTGRES_URL=...
#   python -m pytest -m postgres
#   tests/services/postgres.sh stop              # stops the server and removes its directory
#
# The cluster lives in $DARKROOM_PG_DIR (default /tmp/darkroom-postgres), listens on 127.0.0.1 at
# $DARKROOM_PG_PORT (default 54329) and on a socket in that directory only, and has one role
# `darkroom` (random password, CREATEDB: each test creates and drops its own database) owning one
# database `darkroom`. A test's `DROP DATABASE ... WITH (FORCE)` once met an autovacuum worker in
# its database, which only pg_signal_backend may end: the role has it, and autovacuum is off (the
# databases live for one test). Run as root, the server runs as the `postgres` user (it refuses root).
# Binaries: $PG_BIN, else the newest /usr/lib/postgresql/*/bin, else `pg_config --bindir`.
set -euo pipefail

DIR="${DARKROOM_PG_DIR:-/tmp/darkroom-postgres}"
PORT="${DARKROOM_PG_PORT:-54329}"
PG_BIN="${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}"
PG_BIN="${PG_BIN:-$(pg_config --bindir)}"

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  if [ -e "$DIR" ]; then
    echo "postgres.sh: $DIR exists; run 'postgres.sh stop' first" >&2
    exit 1
  fi
  mkdir -p "$DIR"
  chmod 700 "$DIR"
  [ "$(id -u)" = 0 ] && chown postgres: "$DIR"
  local password
  password="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
  as_owner "$PG_BIN/initdb" -D "$DIR/data" -U postgres --auth-local=peer --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 \
    || { cat "$DIR/initdb.log" >&2; exit 1; }
  as_owner "$PG_BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w \
    -o "-k $DIR -p $PORT -c listen_addresses=127.0.0.1 -c fsync=off -c autovacuum=off" start >/dev/null \
    || { cat "$DIR/server.log" >&2; exit 1; }
  as_owner "$PG_BIN/psql" -q -v ON_ERROR_STOP=1 -h "$DIR" -p "$PORT" -U postgres -d postgres >/dev/null <<SQL
CREATE ROLE darkroom LOGIN CREATEDB PASSWORD '$password';
GRANT pg_signal_backend TO darkroom;
CREATE DATABASE darkroom OWNER darkroom;
SQL
  echo "export DARKROOM_TEST_POSTGRES_URL=postgresql://darkroom:$password@127.0.0.1:$PORT/darkroom"
}

stop() {
  if [ -d "$DIR/data" ]; then
    as_owner "$PG_BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null || true
  fi
  rm -rf "$DIR"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
