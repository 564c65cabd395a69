#!/bin/bash
# usage: bench/netmond/run.sh [rate] [sockets] (root; after dotnet build -c Release src/Silo and src/Cli)
# The agent with netmond alone (1 s scans, shipped settings). Prints: idle CPU; at <rate>
# connections/s (default 1000) socket closed -> CLOSED on the bus p50/p99 (`daemoneye-cli bench
# netmond`) with netmond's and the agent's CPU over 8 s of it and netmond's counters for the run;
# then with <sockets> (default 10000) TCP sockets held open, netmond's own scan time
# (last_scan_us: one sock_diag dump of TCP+UDP, v4+v6, plus the table update) over 8 scans, and
# its idle CPU with those sockets.
source "$(dirname "$0")/../collectors/lib.sh"
RATE=${1:-1000}; N=${2:-10000}
K="sockets_tracked scans inode_map_scans proc_fd_denied events_published coalesced_events closed_unseen unattributed_events notification_overruns vanished"
agent_start netmond '["--scan-interval-ms", "1000"]'
sleep "${WARM:-60}"  # past tiered compilation of the scan path (a scan a second reaches tier 1 after 30 s)
b=$(details netmond $K); cpu_window "idle" 10 "$CP" "$AG"; echo "  $(delta "$b" "$(details netmond $K)" $K)"
echo "rate $RATE connections/s:"
b=$(details netmond $K)
bench_with_cpu 3 8 "$CP" "$AG" -- bench netmond --rate "$RATE" --duration 10 --warmup 2 --grace 5
echo "  $(delta "$b" "$(details netmond $K)" $K)"
echo "$N sockets held open:"
coproc HOLD { python3 "$ROOT/bench/netmond/sockets.py" "$N"; }
read -r ready <&"${HOLD[0]}"; echo "  $ready ($(load))"
sleep 3
for i in $(seq 1 8); do echo "  scan: $(details netmond sockets_tracked last_scan_us max_scan_us) (sockets_tracked last_scan_us max_scan_us)"; sleep 1; done
cpu_window "idle with $N sockets" 10 "$CP" "$AG"
exec {HOLD[1]}>&-; wait
agent_stop
