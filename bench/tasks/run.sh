#!/bin/bash
# Tasks dispatched and aggregated per second across 4 collector instances (issue #6).
# usage, from anywhere, after a Release build of the agent, the CLI and the test collector:
#   for p in src/Silo src/Cli tests/TestCollector; do dotnet build -c Release $p; done
#   bench/tasks/run.sh [daemoneye-cli bench tasks options]   # default: --concurrency 16 --count 20000 --json
# Starts daemoneye-agent in a fresh temp directory (no config file: embedded defaults, so no
# procmond and no scheduled rules) with four test-collector instances tc-1..tc-4 of one type "tc"
# (task test.echo, capacity 100, no task delay), waits until all four are Running, runs
#   daemoneye-cli bench tasks --type test.echo <options>
# and stops the agent (which stops the collectors). Set KEEP=1 to keep the directory and agent.log.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-bin/Release/net10.0}   # BIN=bin/Debug/net10.0 to smoke-test a Debug build
D=$(mktemp -d /tmp/de-bench-tasks.XXXX)
export DAEMONEYE_BROKER__SOCKET_PATH=$D/bus.sock DAEMONEYE_DURABILITY__DIRECTORY=$D/durable
export DAEMONEYE_LOGGING__LEVEL=warning
export DAEMONEYE_COORDINATION__RULES__INTERVAL_SECONDS=0
for i in 0 1 2 3; do
  export DAEMONEYE_COLLECTORS__${i}__ID=tc-$((i + 1))
  export DAEMONEYE_COLLECTORS__${i}__TYPE=tc
  export DAEMONEYE_COLLECTORS__${i}__EXECUTABLE=$ROOT/tests/TestCollector/$BIN/test-collector.dll
  export DAEMONEYE_COLLECTORS__${i}__ARGUMENTS__0=--capacity
  export DAEMONEYE_COLLECTORS__${i}__ARGUMENTS__1=100
done
cli() { dotnet "$ROOT/src/Cli/$BIN/daemoneye-cli.dll" "$@"; }
(cd "$D" && exec dotnet "$ROOT/src/Silo/$BIN/daemoneye-agent.dll" > "$D/agent.log" 2>&1) &
AGENT=$!
cleanup() { kill "$AGENT" 2>/dev/null || true; wait "$AGENT" 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$D"; }
trap cleanup EXIT
for _ in $(seq 1 200); do
  running=$(cli collectors list --json 2>/dev/null | grep -oE '"state": *"Running"' | wc -l || true)
  [ "$running" = 4 ] && break
  sleep 0.3
done
[ "$running" = 4 ] || { echo "the four test collectors did not start; see $D/agent.log" >&2; KEEP=1; exit 1; }
[ $# -gt 0 ] || set -- --concurrency 16 --count 20000 --json
cli bench tasks --type test.echo "$@"
