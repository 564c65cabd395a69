#!/bin/bash
# usage: bench/procmond/realtime.sh [rates...] (root; after dotnet build -c Release src/Silo and src/Cli)
# The agent with procmond alone (connector source, shipped settings). Prints: idle CPU (with the
# machine's own exec rate over the window: procmond sees every exec of the host), then for each
# rate (default 100 1000 2000 4000): exec -> STARTED on the bus p50/p99 (`daemoneye-cli bench
# procmond`), procmond's and the agent's CPU over 8 s of the load, and what procmond counted as
# lost or coalesced in that run (overruns, lost by sequence, queue full, reconciled starts).
source "$(dirname "$0")/../collectors/lib.sh"
RATES=${*:-100 1000 2000 4000}
K="connector_events connector_overruns connector_lost_events connector_queue_full reconciliations reconciled_starts partial_execs events_published"
agent_start procmond '["--scan-interval-ms", "1000"]'
sleep "${WARM:-60}"  # past tiered compilation of the scan path (a scan a second reaches tier 1 after 30 s)
b=$(details procmond $K); cpu_window "idle" 10 "$CP" "$AG"; echo "  $(delta "$b" "$(details procmond $K)" $K)"
for r in $RATES; do
  echo "rate $r execs/s:"
  b=$(details procmond $K)
  bench_with_cpu 3 8 "$CP" "$AG" -- bench procmond --rate "$r" --duration 10 --warmup 2 --grace 5
  echo "  $(delta "$b" "$(details procmond $K)" $K)"
done
b=$(details procmond $K); cpu_window "idle after load" 10 "$CP" "$AG"; echo "  $(delta "$b" "$(details procmond $K)" $K)"
agent_stop
