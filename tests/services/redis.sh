#!/bin/sh
# Start a throwaway Redis for the tests marked `redis` (no persistence, loopback only), and print
# the line to export. Usage: eval "$(tests/services/redis.sh [port])"
set -eu
port="${1:-6390}"
dir="$(mktemp -d)"
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" --daemonize yes \
    --logfile "$dir/redis.log" >/dev/null
for _ in $(seq 50); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.1
done
redis-cli -p "$port" ping >/dev/null
echo "export DARKROOM_TEST_REDIS_URL=redis://127.0.0.1:$port/0"
