#!/bin/bash
# usage: run.sh <build-root>
# Agent CPU with a minimal non-SDK client (rawps.py: one publisher sending one frame per send,
# paced; one subscriber reading in bulk), on a fresh Release agent (no collectors, private socket):
# 20 s of 10,000 msgs/s to warm it up, then 10 s windows at 10,000, 10,000 and 100,000 msgs/s,
# then 10 s idle, each the agent's utime+stime ticks from /proc/<pid>/stat (100 ticks = one core).
# Build first: dotnet build -c Release src/Silo && dotnet build -c Release src/Cli
# AGENT_ENV (env): environment for the agent only.
set -u
ROOT=$1; HERE=$(cd "$(dirname "$0")" && pwd); D=$(mktemp -d /tmp/cpu.XXXX)
export DAEMONEYE_BROKER__SOCKET_PATH=$D/bus.sock DAEMONEYE_DURABILITY__DIRECTORY=$D/durable DAEMONEYE_IPC__SOCKET_PATH=$D/ipc.sock DAEMONEYE_LOGGING__LEVEL=warning DAEMONEYE_COLLECTORS__0__ENABLED=false DAEMONEYE_COLLECTORS__1__ENABLED=false DAEMONEYE_COLLECTORS__2__ENABLED=false
cd "$ROOT"
env ${AGENT_ENV:-} dotnet src/Silo/bin/Release/net10.0/daemoneye-agent.dll > "$D/agent.log" 2>&1 &
AGENT=$!
trap 'kill $AGENT 2>/dev/null; rm -rf "$D"' EXIT
for _ in $(seq 1 100); do dotnet src/Cli/bin/Release/net10.0/daemoneye-cli.dll status >/dev/null 2>&1 && break; sleep 0.3; done
ticks() { awk '{print $14+$15}' "/proc/$AGENT/stat"; }
python3 "$HERE/rawps.py" "$D/bus.sock" 10000 200000 >/dev/null
for rate in 10000 10000 100000; do
  a0=$(ticks); python3 "$HERE/rawps.py" "$D/bus.sock" "$rate" $((rate * 10)) >/dev/null; a1=$(ticks)
  echo "rate $rate msgs/s: agent $(echo "scale=1; ($a1 - $a0) / 10" | bc) % of a core"
done
a0=$(ticks); sleep 10; a1=$(ticks); echo "idle 10 s after: agent $(echo "scale=1; ($a1 - $a0) / 10" | bc) % of a core"
