#!/bin/bash
# usage: redis.sh   (needs redis-server: apt-get install redis-server)
# Redis's CPU under the load bench/cpu/run.sh puts on the agent (rawredis.py is rawps.py for
# RESP): a fresh redis-server on a private Unix socket, no persistence; 20 s of 10,000 msgs/s to
# warm up, then 10 s windows at 10,000, 10,000 and 100,000 msgs/s, then 10 s idle; utime+stime
# ticks from /proc/<pid>/stat (100 ticks = one core). Run it next to run.sh for figures from the
# same minutes.
set -u
HERE=$(cd "$(dirname "$0")" && pwd); D=$(mktemp -d /tmp/redis.XXXX)
redis-server --port 0 --unixsocket "$D/redis.sock" --save '' --appendonly no --daemonize no > "$D/redis.log" 2>&1 &
R=$!
trap 'kill $R 2>/dev/null; rm -rf "$D"' EXIT
for _ in $(seq 1 100); do [ -S "$D/redis.sock" ] && break; sleep 0.1; done
ticks() { awk '{print $14+$15}' "/proc/$R/stat"; }
python3 "$HERE/rawredis.py" "$D/redis.sock" 10000 200000 >/dev/null
for rate in 10000 10000 100000; do
  a0=$(ticks); python3 "$HERE/rawredis.py" "$D/redis.sock" "$rate" $((rate * 10)); a1=$(ticks)
  echo "rate $rate msgs/s: redis $(echo "scale=1; ($a1 - $a0) / 10" | bc) % of a core"
done
a0=$(ticks); sleep 10; a1=$(ticks); echo "idle 10 s after: redis $(echo "scale=1; ($a1 - $a0) / 10" | bc) % of a core"
