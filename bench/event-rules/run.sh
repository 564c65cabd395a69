#!/bin/bash
# Event rules: event arrival -> alert on the bus, p99 (issue #18; goal <= 50 ms).
# usage, as root (fsmond's fanotify marks), after a Release build of the agent and the CLI:
#   dotnet build -c Release src/Silo && dotnet build -c Release src/Cli
#   bench/event-rules/run.sh [daemoneye-cli bench event-rules options]   # default: --count 200 --json
# Starts daemoneye-agent in a fresh temp directory D with the real procmond and fsmond (watching
# D/tmp, bulk suppression off), the shipped rules (config/rules; scheduled snapshot runs off, so only the event rules
# run) and the watch list volatile_directories set to D/tmp/*, waits until both collectors are
# Running, runs
#   daemoneye-cli bench event-rules --dir D/tmp <options>
# (each iteration drops a copy of sleep in D/tmp, runs it, and times the volatile-file-executed
# alert from the arrival of the event that completed the match), and stops the agent. Set KEEP=1
# to keep the directory and agent.log.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-bin/Release/net10.0}   # BIN=bin/Debug/net10.0 to smoke-test a Debug build
[ "$(id -u)" = 0 ] || { echo "run as root: fsmond needs fanotify" >&2; exit 2; }
D=$(mktemp -d /tmp/de-bench-events.XXXX)
mkdir -p "$D/tmp"
AGENT_DIR=$ROOT/src/Silo/$BIN
export DAEMONEYE_BROKER__SOCKET_PATH=$D/bus.sock
export DAEMONEYE_LOGGING__LEVEL=warning
export DAEMONEYE_DURABILITY__DIRECTORY=$D/durable
export DAEMONEYE_COORDINATION__RULES__DIRECTORY=$ROOT/config/rules
export DAEMONEYE_COORDINATION__RULES__INTERVAL_SECONDS=0
export DAEMONEYE_COORDINATION__RULES__WATCH_LISTS__VOLATILE_DIRECTORIES__0="$D/tmp/*"
export DAEMONEYE_COLLECTORS__0__ID=procmond
export DAEMONEYE_COLLECTORS__0__EXECUTABLE=$AGENT_DIR/collectors/procmond/procmond.dll
export DAEMONEYE_COLLECTORS__1__ID=fsmond
export DAEMONEYE_COLLECTORS__1__EXECUTABLE=$AGENT_DIR/collectors/fsmond/fsmond.dll
export DAEMONEYE_COLLECTORS__1__ARGUMENTS__0=--watch
export DAEMONEYE_COLLECTORS__1__ARGUMENTS__1="$D/tmp/**"
export DAEMONEYE_COLLECTORS__1__ARGUMENTS__2=--executable-watch
export DAEMONEYE_COLLECTORS__1__ARGUMENTS__3="$D/tmp/**"
export DAEMONEYE_COLLECTORS__1__ARGUMENTS__4=--integrity=
# The bench writes hundreds of files from one process: fsmond's bulk suppression would fold them
# into a bulk summary after bulk_threshold files (no per-file events, no alerts).
export DAEMONEYE_COLLECTORS__1__ARGUMENTS__5=--bulk-suppress=0
cli() { dotnet "$ROOT/src/Cli/$BIN/daemoneye-cli.dll" "$@"; }
(cd "$D" && exec dotnet "$AGENT_DIR/daemoneye-agent.dll" > "$D/agent.log" 2>&1) &
AGENT=$!
cleanup() { kill "$AGENT" 2>/dev/null || true; wait "$AGENT" 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$D"; }
trap cleanup EXIT
running=0
for _ in $(seq 1 200); do
  running=$(cli collectors list --json 2>/dev/null | grep -oE '"state": *"Running"' | wc -l || true)
  [ "$running" = 2 ] && break
  sleep 0.3
done
[ "$running" = 2 ] || { echo "procmond and fsmond did not start; see $D/agent.log" >&2; KEEP=1; exit 1; }
echo "load average before: $(cat /proc/loadavg)" >&2
[ $# -gt 0 ] || set -- --count 200 --json
cli bench event-rules --dir "$D/tmp" "$@"
echo "load average after: $(cat /proc/loadavg)" >&2
cli rules list | sed -n '/event windows/,$p' >&2
