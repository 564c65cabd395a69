#!/bin/bash
# Sourced by bench/{procmond,netmond,fsmond}/*.sh (after a Release build of src/Silo and src/Cli):
# starts the agent (Release) with one collector on private sockets and samples processes' CPU from
# /proc/<pid>/stat. The machine is shared: every figure is printed with the load average.
#   agent_start <collector id> <arguments as a YAML flow list, e.g. '["--scan-interval-ms", "1000"]'> [environment as a YAML flow map]
#   -> $D (temp dir), $AG (agent pid), $CP (collector pid); CLI: cli <args...>; agent_stop at the end.
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
ROOT=$PWD
cli() { dotnet "$ROOT/src/Cli/bin/Release/net10.0/daemoneye-cli.dll" "$@"; }
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss_kb() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

agent_start() {
  D=$(mktemp -d /tmp/colbench.XXXX); local ENVY=${3:-"{}"}
  # Private sockets and durable log: other agents (other worktrees) may run at the same time.
  export DAEMONEYE_BROKER__SOCKET_PATH=$D/bus.sock DAEMONEYE_IPC__SOCKET_PATH=$D/ipc.sock DAEMONEYE_DURABILITY__DIRECTORY=$D/durable DAEMONEYE_LOGGING__LEVEL=warning
  cat > "$D/agent.yaml" <<YAML
collectors:
  - id: $1
    executable: collectors/$1/$1.dll
    arguments: $2
    environment: $ENVY
    enabled: true
YAML
  dotnet "$ROOT/src/Silo/bin/Release/net10.0/daemoneye-agent.dll" --config "$D/agent.yaml" > "$D/agent.log" 2>&1 &
  AG=$!
  CP=
  for _ in $(seq 1 120); do
    CP=$(cli collectors list --json 2>/dev/null | python3 -c "import json,sys; c=[x for x in json.load(sys.stdin) if x['id']=='$1' and x['state']=='Running' and x['pid']]; print(c[0]['pid'] if c else '')" 2>/dev/null)
    [ -n "$CP" ] && break
    sleep 0.5
  done
  [ -n "$CP" ] || { echo "collector $1 did not start; agent log:"; tail -20 "$D/agent.log"; agent_stop; exit 1; }
  echo "agent $AG, $1 pid $CP, dir $D"
}

agent_stop() { kill "$AG" 2>/dev/null; wait "$AG" 2>/dev/null; rm -rf "$D"; }

# cpu_window <label> <seconds> [pid...]: % of one core of each pid over the window, with the load.
cpu_window() {
  local label=$1 secs=$2; shift 2
  local pids=("$@") t0=() t1=() l0 s e
  for p in "${pids[@]}"; do t0+=("$(ticks "$p")"); done
  l0=$(load); s=$(date +%s.%N)
  sleep "$secs"
  for p in "${pids[@]}"; do t1+=("$(ticks "$p")"); done
  e=$(date +%s.%N)
  local out="$label: window $(echo "$e-$s" | bc | cut -c1-6) s"
  for i in "${!pids[@]}"; do
    out+=" | pid ${pids[$i]} $((t1[i]-t0[i])) ticks = $(echo "scale=2;(${t1[$i]}-${t0[$i]})/($e-$s)" | bc)% RSS $(rss_kb "${pids[$i]}") kB"
  done
  echo "$out | load $l0 -> $(load)"
}

# health <collector id>: the collector's HealthCheck details as one JSON object.
health() { cli collectors health "$1" --json; }

# details <collector id> <key>...: the named HealthCheck details, space-separated, in that order.
details() {
  local id=$1; shift
  health "$id" | python3 -c "import json,sys; d=json.load(sys.stdin)['health']['details']; print(' '.join(d.get(k,'?') for k in sys.argv[1:]))" "$@"
}

# delta "<before>" "<after>" <names...>: name=after-before for each pair of numbers.
delta() {
  local -a b=($1) a=($2); shift 2
  local out="" i=0
  for n in "$@"; do out+="$n=$(( ${a[$i]} - ${b[$i]} )) "; i=$((i+1)); done
  echo "$out"
}

# bench_with_cpu <warm-up s> <window s> <pid...> -- <cli bench args...>: runs the bench in the
# background and samples the pids' CPU over the window, starting after the warm-up.
bench_with_cpu() {
  local warm=$1 win=$2; shift 2
  local pids=()
  while [ "$1" != "--" ]; do pids+=("$1"); shift; done
  shift
  cli "$@" > "$D/bench.out" 2> "$D/bench.err" & local B=$!
  sleep "$warm"
  cpu_window "  cpu under load" "$win" "${pids[@]}"
  wait $B; echo "  bench exit $?"
  cat "$D/bench.out" "$D/bench.err"
}
