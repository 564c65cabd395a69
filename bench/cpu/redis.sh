#!/bin/bash
# usage: redis.sh   (needs redis-server: apt-get install redis-server)
# Redis's CPU under the load bench/cpu/run.sh puts on the agent, with the same client
# (bench/soak/soak.c with SOAK_PROTOCOL=resp): a fresh redis-server on a private Unix socket, no
# persistence; the same warm-up, windows and idle as run.sh. Run the two one after the other for
# figures from the same minutes.
set -u
HERE=$(cd "$(dirname "$0")" && pwd); D=$(mktemp -d /tmp/redis.XXXX)
cc -O2 -pthread -o "$D/soak" "$HERE/../soak/soak.c" || exit 1
redis-server --port 0 --unixsocket "$D/redis.sock" --save '' --appendonly no --daemonize no > "$D/redis.log" 2>&1 &
R=$!
trap 'kill $R 2>/dev/null; wait $R 2>/dev/null; rm -rf "$D"' EXIT
for _ in $(seq 1 100); do [ -S "$D/redis.sock" ] && break; sleep 0.1; done
export SOAK_PROTOCOL=resp
BROKER=redis SOCK=$D/redis.sock PID=$R . "$HERE/windows.sh"
