#!/bin/bash
# usage: bench/fsmond/run.sh [rate] [burst seconds] [burst processes] (root; after dotnet build -c Release src/Silo and src/Cli)
# The agent with fsmond alone, watching only a tmpfs of its own (fanotify filesystem mark; nothing
# else on the host reaches it), bulk suppression off so the bench's own files are all published.
# Prints: idle CPU; at <rate> files/s (default 1000: create + delete, 2 published events each)
# create -> CREATED on the bus p50/p99 (`daemoneye-cli bench fsmond`) with fsmond's CPU over 8 s
# and its CPU per 10,000 kernel events; then a burst of <burst seconds> (default 10) of
# bench/fsmond/burst.c in <burst processes> (default 2) as fast as they go, sampling fsmond's RSS every 0.5 s, and its counters.
source "$(dirname "$0")/../collectors/lib.sh"
RATE=${1:-1000}; BURST=${2:-10}; BURSTERS=${3:-2}
gcc -O2 -o /tmp/colbench-burst "$ROOT/bench/fsmond/burst.c" || exit 1
FS=$(mktemp -d /tmp/colbench-fs.XXXX); mount -t tmpfs -o size=64m colbench "$FS" || exit 1
trap 'umount "$FS"; rmdir "$FS"' EXIT
K="kernel_events kernel_changes published filtered coalesced bulk_suppressed rate_limited publish_queue_full queue_overflows names_unresolved"
agent_start fsmond "[\"--watch\", \"$FS/**\", \"--executable-watch=\", \"--integrity=\", \"--bulk-suppress\", \"0\"]"
sleep "${WARM:-60}"  # past tiered compilation of the scan path (a scan a second reaches tier 1 after 30 s)
b=$(details fsmond $K); cpu_window "idle" 10 "$CP" "$AG"; echo "  $(delta "$b" "$(details fsmond $K)" $K)"
echo "rate $RATE files/s:"
b=$(details fsmond $K); t0=$(ticks "$CP")
bench_with_cpu 3 8 "$CP" "$AG" -- bench fsmond --dir "$FS" --rate "$RATE" --duration 10 --warmup 2 --grace 5
a=$(details fsmond $K); t1=$(ticks "$CP")
echo "  $(delta "$b" "$a" $K)"
ke=$(( $(echo "$a" | cut -d' ' -f1) - $(echo "$b" | cut -d' ' -f1) ))
echo "  whole run: fsmond $((t1-t0)) ticks for $ke kernel events = $(echo "scale=1; ($t1-$t0)*10*10000/$ke" | bc) ms CPU per 10,000 events"
echo "burst $BURST s, as fast as possible:"
b=$(details fsmond $K); t0=$(ticks "$CP"); r0=$(rss_kb "$CP"); max=$r0
BP=()
for i in $(seq 1 "$BURSTERS"); do /tmp/colbench-burst "$FS" "$BURST" > "$D/burst$i.out" & BP+=($!); done
while kill -0 "${BP[@]}" 2>/dev/null; do r=$(rss_kb "$CP"); [ "$r" -gt "$max" ] && max=$r; sleep 0.5; done
wait "${BP[@]}"; cat "$D"/burst*.out; echo "  load $(load)"
for i in 1 2 3 4 5 6; do r=$(rss_kb "$CP"); [ "$r" -gt "$max" ] && max=$r; sleep 0.5; done
a=$(details fsmond $K); t1=$(ticks "$CP")
echo "  fsmond RSS before $r0 kB, max $max kB, 3 s after $(rss_kb "$CP") kB; CPU $((t1-t0)) ticks"
echo "  $(delta "$b" "$a" $K)"
ke=$(( $(echo "$a" | cut -d' ' -f1) - $(echo "$b" | cut -d' ' -f1) ))
echo "  kernel events $ke = $(echo "$ke/$BURST" | bc)/s over the burst; $(echo "scale=1; ($t1-$t0)*10*10000/$ke" | bc) ms CPU per 10,000"
cpu_window "idle after burst" 10 "$CP" "$AG"
agent_stop
