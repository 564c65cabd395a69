#!/bin/bash
# usage: run.sh <build-root> [rate=20000] [seconds=1800] [subscribers=2] [interval=60]
# Soak of a fresh Release agent (shipped defaults, no collectors) with bench/soak/soak.c, a client
# with no SDK. Prints one line per interval (sent, received, lost, dropped, latency from each
# message's scheduled send time, agent RSS and CPU); exits non-zero on any loss.
# Build first: dotnet build -c Release src/Silo && dotnet build -c Release src/Cli
# AGENT_ENV (env): environment for the agent only, e.g. AGENT_ENV=DOTNET_TieredPGO=0.
set -eu
ROOT=$1; RATE=${2:-20000}; SECS=${3:-1800}; SUBS=${4:-2}; IV=${5:-60}
D=$(mktemp -d /tmp/soak.XXXX)
cc -O2 -pthread -o "$D/soak" "$(dirname "$0")/soak.c"
export DAEMONEYE_BROKER__SOCKET_PATH=$D/bus.sock DAEMONEYE_DURABILITY__DIRECTORY=$D/durable DAEMONEYE_IPC__SOCKET_PATH=$D/ipc.sock DAEMONEYE_LOGGING__LEVEL=warning DAEMONEYE_COLLECTORS__0__ENABLED=false DAEMONEYE_COLLECTORS__1__ENABLED=false DAEMONEYE_COLLECTORS__2__ENABLED=false
cd "$ROOT"
env ${AGENT_ENV:-} dotnet src/Silo/bin/Release/net10.0/daemoneye-agent.dll > "$D/agent.log" 2>&1 &
AGENT=$!
trap 'kill $AGENT 2>/dev/null; wait $AGENT 2>/dev/null; rm -rf "$D"' EXIT
for _ in $(seq 1 100); do dotnet src/Cli/bin/Release/net10.0/daemoneye-cli.dll status >/dev/null 2>&1 && break; sleep 0.3; done
"$D/soak" "$D/bus.sock" "$RATE" "$SECS" "$SUBS" "$AGENT" "$IV"
