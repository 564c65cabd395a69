#!/bin/bash
# usage: run.sh <build-root>
# Agent CPU with a minimal non-SDK client (bench/soak/soak.c: one publisher sending one frame per
# send, paced by sleeping to each message's due time; one subscriber reading in bulk) on a fresh
# Release agent (no collectors, private socket): 20 s of 10,000 msgs/s to warm it up, then 10 s
# windows: two at 10,000 msgs/s and one at 100,000, then 10 s idle. Each window prints soak.c's
# line (sent, received, lost, dropped, latency from the due time, agent RSS, agent % of a core from
# /proc/<pid>/stat). bench/cpu/redis.sh puts the same load on redis-server.
# Build first: dotnet build -c Release src/Silo && dotnet build -c Release src/Cli
# AGENT_ENV (env): environment for the agent only.
set -u
ROOT=$1; HERE=$(cd "$(dirname "$0")" && pwd); D=$(mktemp -d /tmp/cpu.XXXX)
cc -O2 -pthread -o "$D/soak" "$HERE/../soak/soak.c" || exit 1
export DAEMONEYE_BROKER__SOCKET_PATH=$D/bus.sock DAEMONEYE_DURABILITY__DIRECTORY=$D/durable DAEMONEYE_IPC__SOCKET_PATH=$D/ipc.sock DAEMONEYE_LOGGING__LEVEL=warning DAEMONEYE_COLLECTORS__0__ENABLED=false DAEMONEYE_COLLECTORS__1__ENABLED=false DAEMONEYE_COLLECTORS__2__ENABLED=false
cd "$ROOT"
env ${AGENT_ENV:-} dotnet src/Silo/bin/Release/net10.0/daemoneye-agent.dll > "$D/agent.log" 2>&1 &
AGENT=$!
trap 'kill $AGENT 2>/dev/null; wait $AGENT 2>/dev/null; rm -rf "$D"' EXIT
for _ in $(seq 1 100); do dotnet src/Cli/bin/Release/net10.0/daemoneye-cli.dll status >/dev/null 2>&1 && break; sleep 0.3; done
BROKER=agent SOCK=$D/bus.sock PID=$AGENT . "$HERE/windows.sh"
