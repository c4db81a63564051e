#!/usr/bin/env bash
# A throwaway redis-server for the tests marked `redis`: 127.0.0.1 only, a free port, nothing on
# disk (--save '' --appendonly no), its working directory a fresh temporary one.
#
#   eval "$(tests/services/redis.sh start)"   # exports DARKROOM_TEST_REDIS_URL
#   tests/services/redis.sh stop              # stops that server, removes its directory
#
# The state (directory, pid) is kept in $DARKROOM_REDIS_STATE (default: one file per user in
# $TMPDIR), so `stop` ends exactly the server `start` started, by its pid.
set -euo pipefail
STATE="${DARKROOM_REDIS_STATE:-${TMPDIR:-/tmp}/darkroom-test-redis-$(id -u).env}"
SERVER="${REDIS_SERVER:-redis-server}"

start() {
  if [[ -f "$STATE" ]]; then
    # shellcheck disable=SC1090
    source "$STATE"
    if kill -0 "$PID" 2>/dev/null; then
      echo "redis.sh: a test Redis is already running (see $STATE); run: $0 stop" >&2
      exit 1
    fi
    rm -rf "$DIR" "$STATE"  # left over from a run that did not stop it; that server is gone
  fi
  command -v "$SERVER" >/dev/null || { echo "redis.sh: $SERVER not found (apt-get install redis-server)" >&2; exit 1; }
  local dir port
  dir="$(mktemp -d "${TMPDIR:-/tmp}/darkroom-redis.XXXXXX")"
  for _ in 1 2 3 4 5; do
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
    if "$SERVER" --bind 127.0.0.1 --port "$port" --save '' --appendonly no --daemonize yes \
        --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null; then
      for _ in $(seq 1 50); do
        if [[ -s "$dir/redis.pid" ]] && python3 - "$port" <<'PY' 2>/dev/null; then
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1) as s:
    s.sendall(b"PING\r\n")
    sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
PY
          printf 'DIR=%q\nPID=%q\nPORT=%q\n' "$dir" "$(cat "$dir/redis.pid")" "$port" > "$STATE"
          echo "export DARKROOM_TEST_REDIS_URL=redis://127.0.0.1:$port/0"
          return 0
        fi
        sleep 0.1
      done
      [[ -s "$dir/redis.pid" ]] && kill "$(cat "$dir/redis.pid")" 2>/dev/null || true
    fi
  done
  echo "redis.sh: could not start $SERVER; its log:" >&2
  cat "$dir/redis.log" >&2 || true
  rm -rf "$dir"
  exit 1
}

stop() {
  [[ -f "$STATE" ]] || { echo "redis.sh: no test Redis running" >&2; return 0; }
  # shellcheck disable=SC1090
  source "$STATE"
  if kill "$PID" 2>/dev/null; then
    for _ in $(seq 1 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$DIR" "$STATE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
