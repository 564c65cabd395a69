#!/bin/bash
# usage: run.sh <build-root> <label> <conc>... ; prints one line per concurrency:
# rps, latency, and CPU µs per round trip of the agent and the collector (clock ticks from /proc) and of
# the bench CLI (bash's time; includes its start-up and JIT), then syscalls/context switches per round trip
# BENCH_ARGS: extra options for bench rpc (e.g. "--completions thread-pool"); AGENT_ENV: environment for the agent only
# Each point is a steady-state window: WARM unrecorded calls (default 20000, past the JIT's tiering),
# then DUR seconds (default 10) of measured calls.
ROOT=$1; LABEL=$2; shift 2
DUR=${DUR:-10}; WARM=${WARM:-20000}
mkdir -p /tmp/rpcb; D=$(mktemp -d /tmp/rpcb/sock.XXXX)
export DAEMONEYE_BROKER__SOCKET_PATH=$D/bus.sock DAEMONEYE_DURABILITY__DIRECTORY=$D/durable
export DAEMONEYE_IPC__SOCKET_PATH=$D/ipc.sock
export DAEMONEYE_COLLECTORS__0__ID=example
export DAEMONEYE_COLLECTORS__0__EXECUTABLE=$ROOT/src/Collectors/Example/bin/Release/net10.0/example-collector.dll
export DAEMONEYE_LOGGING__LEVEL=warning
export DAEMONEYE_RPC__MAX_PENDING_REQUESTS=${MAXP:-1000}
cd $ROOT
env $AGENT_ENV dotnet src/Silo/bin/Release/net10.0/daemoneye-agent.dll > $D/agent.log 2>&1 &
AGENT=$!
for i in $(seq 1 100); do
  if dotnet src/Cli/bin/Release/net10.0/daemoneye-cli.dll bench rpc --collector example --concurrency 1 --requests 10 --warmup 0 >/dev/null 2>&1; then break; fi
  sleep 0.3
done
COLL=$(pgrep -P $AGENT | head -1)
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
for c in "$@"; do
  conns=1; [ $c -ge 128 ] && conns=2; [ $c -ge 256 ] && conns=4
  a0=$(ticks $AGENT); k0=$(ticks $COLL)
  perf stat -x, -e raw_syscalls:sys_enter,context-switches -p $AGENT -o $D/pa.txt & PA=$!
  perf stat -x, -e raw_syscalls:sys_enter,context-switches -p $COLL -o $D/pk.txt & PK=$!
  sleep 0.2
  TIMEFORMAT='%U %S'
  { time out=$(dotnet src/Cli/bin/Release/net10.0/daemoneye-cli.dll bench rpc --collector example --concurrency $c --connections $conns --duration $DUR --warmup $WARM $BENCH_ARGS --json 2>&1 | tail -1) ; } 2> $D/bench-time.txt
  a1=$(ticks $AGENT); k1=$(ticks $COLL)
  kill -INT $PA $PK; wait $PA $PK 2>/dev/null
  sa=$(grep sys_enter $D/pa.txt | cut -d, -f1); ca=$(grep context $D/pa.txt | cut -d, -f1)
  sk=$(grep sys_enter $D/pk.txt | cut -d, -f1); ck=$(grep context $D/pk.txt | cut -d, -f1)
  # clock ticks are 10 ms; CPU µs per round trip (includes the warm-up calls)
  tot=$(( $(echo "$out" | sed -E 's/.*"requests":([0-9]+).*/\1/') + WARM ))
  echo "$LABEL c=$c $(echo "$out" | sed -E 's/.*"requests_per_sec":([0-9]+).*"p50":([0-9.]+),"p99":([0-9.]+),"p999":([0-9.]+).*/rps \1 p50 \2 p99 \3 p999 \4/') cpu_us/rt agent $(( (a1-a0)*10000000/tot/1000 )) collector $(( (k1-k0)*10000000/tot/1000 )) bench $(awk -v t=$tot '{printf "%d", ($1+$2)*1000000/t}' $D/bench-time.txt) | per_rt syscalls/cswitch agent $(echo "scale=1;$sa/$tot" | bc)/$(echo "scale=1;$ca/$tot" | bc) collector $(echo "scale=1;$sk/$tot" | bc)/$(echo "scale=1;$ck/$tot" | bc)"
done
kill $AGENT; wait $AGENT 2>/dev/null
[ -n "$KEEP" ] || rm -rf $D
