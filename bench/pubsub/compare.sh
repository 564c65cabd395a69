#!/bin/bash
# usage: compare.sh <build-root> <label> [rounds]
# The agent alone and the agent with the SDK at both ends, on the same agent in the same minutes:
# starts a fresh Release agent from <build-root> (no collectors, private socket), builds
# bench/pubsub/rawclient.c (the minimal C client), then for each scenario runs the C client and
# `daemoneye-cli bench pubsub` alternately, <rounds> times (default 2). One line per run:
#   <label> <client> <scenario> offered/s delivered/s dropped p50 p99 p99.9 max (µs) behind-schedule (µs)
# Build first: dotnet build -c Release src/Silo && dotnet build -c Release src/Cli
# SCENARIOS (env): override the list, each "name|rawclient args|bench pubsub args".
# SDK_ARGS (env): extra options for bench pubsub (e.g. "--receive channel --completions thread-pool").
# AGENT_ENV (env): environment for the agent only.
set -u
ROOT=$1; LABEL=$2; ROUNDS=${3:-2}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p /tmp/psb; D=$(mktemp -d /tmp/psb/sock.XXXX)
gcc -O2 -pthread -o "$D/rawclient" "$HERE/rawclient.c" || exit 1
export DAEMONEYE_BROKER__SOCKET_PATH=$D/bus.sock DAEMONEYE_DURABILITY__DIRECTORY=$D/durable DAEMONEYE_IPC__SOCKET_PATH=$D/ipc.sock DAEMONEYE_LOGGING__LEVEL=warning DAEMONEYE_COLLECTORS__0__ENABLED=false DAEMONEYE_COLLECTORS__1__ENABLED=false DAEMONEYE_COLLECTORS__2__ENABLED=false
cd "$ROOT"
CLI=src/Cli/bin/Release/net10.0/daemoneye-cli.dll
env ${AGENT_ENV:-} dotnet src/Silo/bin/Release/net10.0/daemoneye-agent.dll > "$D/agent.log" 2>&1 &
AGENT=$!
trap 'kill $AGENT 2>/dev/null; wait $AGENT 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$D"' EXIT
for i in $(seq 1 100); do dotnet $CLI status >/dev/null 2>&1 && break; sleep 0.3; done

DEFAULT_SCENARIOS=(
  "10k|-r 10000 -n 100000 -w 10000|--rate 10000 --messages 100000 --warmup 10000"
  "100k|-r 100000 -n 1000000 -w 100000|--rate 100000 --messages 1000000 --warmup 100000"
  "1M|-r 1000000 -n 3000000 -w 1000000|--rate 1000000 --messages 3000000 --warmup 1000000"
  "max-1to1|-r 0 -n 3000000|--messages 3000000"
  "max-1to10|-r 0 -n 1000000 -k 10|--subscribers 10 --messages 1000000"
)
if [ -n "${SCENARIOS:-}" ]; then IFS=';' read -ra LIST <<< "$SCENARIOS"; else LIST=("${DEFAULT_SCENARIOS[@]}"); fi

line() { # client scenario json
  python3 - "$LABEL" "$1" "$2" "$3" <<'EOF'
import json, sys
label, client, scenario, text = sys.argv[1:5]
try:
    d = json.loads(text.strip().splitlines()[-1])
except Exception:
    import os, tempfile
    fd, path = tempfile.mkstemp(prefix=f"compare-{client}-{scenario}-", suffix=".txt", dir="/tmp/psb"); os.write(fd, text.encode()); os.close(fd)
    print(f"{label} {client} {scenario} FAILED (whole output in {path}): {text.strip()[-200:]}"); sys.exit()
l = d["latency_us"]
print(f"{label} {client} {scenario} offered/s {d.get('offered_per_sec', 0):.0f} delivered/s {d['delivered_per_sec']:.0f} "
      f"dropped {d['dropped']} p50 {l['p50']} p99 {l['p99']} p99.9 {l['p999']} max {l['max']} behind {d.get('max_behind_schedule_us', 0)} "
      f"complete {d['complete']}")
EOF
}

for round in $(seq 1 "$ROUNDS"); do
  for s in "${LIST[@]}"; do
    IFS='|' read -r name raw sdk <<< "$s"
    line raw "$name" "$("$D/rawclient" "$D/bus.sock" $raw 2>&1)"
    line sdk "$name" "$(dotnet $CLI bench pubsub --json $sdk ${SDK_ARGS:-} 2>&1)"
  done
done
