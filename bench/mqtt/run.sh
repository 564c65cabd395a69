#!/usr/bin/env bash
# MQTT QoS 0, one publisher -> one subscriber, with Debian's mosquitto_pub and mosquitto_sub: the
# agent's MQTT listener (src/Gateway/Mqtt) side by side with the Mosquitto broker on this machine,
# both on a Unix socket. mosquitto_pub -l publishes one message per line of a file as fast as it can;
# the time is from the publisher's start to the subscriber's N-th message. Both brokers are given
# queues that do not overflow (QoS 0 drops when a subscriber's queue is full: Mosquitto's
# max_queued_messages, the agent's mqtt.max_pending_messages), so a run measures delivering all N;
# a subscriber that does not get all N within the timeout is reported with what it got.
#
# Usage: bench/mqtt/run.sh [messages] [payload-bytes] [runs]     (defaults 200000 64 3; plus one
# warm-up run per broker, not printed)
# Needs: a built agent (dotnet build src/Silo -c Release), mosquitto and mosquitto-clients.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-200000}
SIZE=${2:-64}
RUNS=${3:-3}
CONFIGURATION=${CONFIGURATION:-Release}
AGENT="$PWD/src/Silo/bin/$CONFIGURATION/net10.0/daemoneye-agent.dll"
[[ -f "$AGENT" ]] || { echo "no $AGENT: dotnet build src/Silo -c $CONFIGURATION" >&2; exit 1; }
for tool in mosquitto mosquitto_pub mosquitto_sub; do
  command -v "$tool" >/dev/null || { echo "$tool is not installed (apt-get install mosquitto mosquitto-clients)" >&2; exit 1; }
done

work="$(mktemp -d)"
chmod 0700 "$work"
agent_pid=""
mosquitto_pid=""
cleanup() {
  [[ -n "$agent_pid" ]] && kill "$agent_pid" 2>/dev/null || true
  [[ -n "$mosquitto_pid" ]] && kill "$mosquitto_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The payload: N lines of SIZE bytes.
awk -v n="$N" -v size="$SIZE" 'BEGIN { line = sprintf("%*s", size, ""); gsub(/ /, "x", line); for (i = 0; i < n; i++) print line }' > "$work/payload"

# The agent: its own directory and socket, no durable log, no collectors.
mkdir "$work/agent"
(cd "$work/agent" && DAEMONEYE_BROKER__SOCKET_PATH="$work/agent/run/bus.sock" DAEMONEYE_DURABILITY__ENABLED=false \
  DAEMONEYE_MQTT__MAX_PENDING_MESSAGES=10000000 \
  exec dotnet "$AGENT" > "$work/agent.log" 2>&1) &
agent_pid=$!
for _ in $(seq 1 120); do grep -q "MQTT listening" "$work/agent.log" 2>/dev/null && break; sleep 0.5; done
grep -q "MQTT listening" "$work/agent.log" || { echo "the agent did not start:" >&2; cat "$work/agent.log" >&2; exit 1; }
agent_socket="$work/agent/run/mqtt.sock"

# Mosquitto as this user (it would otherwise switch to user mosquitto), on a Unix socket.
printf 'user %s\nlistener 0 %s\nallow_anonymous true\nmax_queued_messages 0\nlog_dest stdout\nlog_type subscribe\n' "$(id -un)" "$work/mosquitto.sock" > "$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" > "$work/mosquitto.log" 2>&1 &
mosquitto_pid=$!
for _ in $(seq 1 50); do [[ -S "$work/mosquitto.sock" ]] && break; sleep 0.1; done

# The broker's CPU time so far (user + system, in clock ticks): from /proc, so the figure per message
# does not depend on what else the machine runs, as the wall-clock rate does.
hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

run() { # name socket log pid; run 0 warms up (the agent's JIT) and is not printed
  local name=$1 socket=$2 log=$3 pid=$4 topic=events/bench/qos0
  for run in $(seq 0 "$RUNS"); do
    local id="bench-sub-$name-$run"
    mosquitto_sub --unix "$socket" -i "$id" -t "$topic" -q 0 -C "$N" -W 120 > "$work/received" 2>/dev/null &
    local sub=$!
    # The subscription is in place once the broker logs it (the agent: "(<id>) subscribed to"; Mosquitto: "<id> 0 <topic>").
    for _ in $(seq 1 200); do grep -q -- "$id" "$log" && break; sleep 0.05; done
    local t0 t1 c0 c1
    c0=$(cpu_ticks "$pid")
    t0=$(date +%s.%N)
    mosquitto_pub --unix "$socket" -t "$topic" -q 0 -l < "$work/payload"
    wait "$sub" || true
    t1=$(date +%s.%N)
    c1=$(cpu_ticks "$pid")
    local got
    got=$(grep -c . "$work/received" || true)
    [[ $run == 0 ]] && continue
    awk -v n="$name" -v r="$run" -v got="$got" -v N="$N" -v t0="$t0" -v t1="$t1" -v load="$(cut -d' ' -f1-3 /proc/loadavg)" \
      -v cpu="$(( c1 - c0 ))" -v hz="$hz" \
      'BEGIN { s = t1 - t0; c = cpu / hz; printf "%-10s run %d: %d/%d messages in %.3f s = %.0f msg/s; broker CPU %.2f s = %.1f us/msg (load %s)\n", n, r, got, N, s, got / s, c, c * 1e6 / N, load }'
  done
}

echo "MQTT QoS 0, 1 publisher -> 1 subscriber, $N messages of $SIZE bytes, $(nproc) CPUs"
run agent "$agent_socket" "$work/agent.log" "$agent_pid"
run mosquitto "$work/mosquitto.sock" "$work/mosquitto.log" "$mosquitto_pid"
