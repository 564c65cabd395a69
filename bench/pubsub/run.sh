#!/bin/bash
# usage: run.sh <build-root> <label>: bench pubsub against a fresh Release agent (no collectors),
# one line per scenario with delivered/s, drops, latency and the agent's CPU-seconds (/proc ticks).
# AGENT_ENV: environment for the agent only (e.g. DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=1).
ROOT=$1; LABEL=$2
mkdir -p /tmp/psb; D=$(mktemp -d /tmp/psb/sock.XXXX)
export DAEMONEYE_BROKER__SOCKET_PATH=$D/bus.sock DAEMONEYE_DURABILITY__DIRECTORY=$D/durable DAEMONEYE_IPC__SOCKET_PATH=$D/ipc.sock DAEMONEYE_LOGGING__LEVEL=warning
cd $ROOT
env $AGENT_ENV dotnet src/Silo/bin/Release/net10.0/daemoneye-agent.dll > $D/agent.log 2>&1 &
AGENT=$!
for i in $(seq 1 100); do dotnet src/Cli/bin/Release/net10.0/daemoneye-cli.dll status >/dev/null 2>&1 && break; sleep 0.3; done
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
for args in "--messages 3000000" "--subscribers 10 --messages 1000000" "--rate 10000 --messages 100000" "--rate 1000 --messages 20000"; do
  a0=$(ticks $AGENT)
  out=$(dotnet src/Cli/bin/Release/net10.0/daemoneye-cli.dll bench pubsub --json $args | tail -1)
  a1=$(ticks $AGENT)
  echo "$LABEL [$args] $(echo "$out" | sed -E 's/.*"delivered_per_sec":([0-9]+).*"dropped":([0-9]+).*"p50":([0-9.]+),"p99":([0-9.]+).*/delivered\/s \1 dropped \2 p50 \3 p99 \4/') agent_cpu_s $(echo "scale=2;($a1-$a0)/100" | bc)"
done
kill $AGENT; wait $AGENT 2>/dev/null
[ -n "$KEEP" ] || rm -rf $D
