# Sourced by run.sh and redis.sh with D (the run's directory, holding the soak binary), BROKER, SOCK
# and PID (the broker's process) set: the warm-up, the measured windows and the idle window.
"$D/soak" "$SOCK" 10000 20 1 "$PID" 20 >/dev/null
echo "# $BROKER, 1 -> 1, 64 B: soak.c's columns per 10 s window"
"$D/soak" "$SOCK" 10000 20 1 "$PID" 10 | grep -v '^# soak'
"$D/soak" "$SOCK" 100000 10 1 "$PID" 10 | grep -v '^#'
ticks() { awk '{print $14+$15}' "/proc/$PID/stat"; }
a0=$(ticks); sleep 10; a1=$(ticks)
echo "idle 10 s after: $BROKER $(echo "scale=1; ($a1 - $a0) / 10" | bc) % of a core"
