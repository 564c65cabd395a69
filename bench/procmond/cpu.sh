#!/bin/bash
# usage: bench/procmond/cpu.sh <label> <warm-up s> <window s> (after a Release build). Runs the agent with the
# shipped configuration (procmond) on a private socket; prints procmond's and the agent's CPU as % of one core
# over the window (utime+stime from /proc/<pid>/stat), both RSS figures, the process count and the load.
cd "$(dirname "$0")/../.."
D=$(mktemp -d /tmp/pm.XXXX)
export DAEMONEYE_BROKER__SOCKET_PATH=$D/bus.sock DAEMONEYE_DURABILITY__DIRECTORY=$D/durable DAEMONEYE_IPC__SOCKET_PATH=$D/ipc.sock DAEMONEYE_LOGGING__LEVEL=warning
dotnet src/Silo/bin/Release/net10.0/daemoneye-agent.dll > $D/agent.log 2>&1 & AG=$!
sleep $2
P=$(pgrep -P $AG | head -1)
tk(){ awk '{print $14+$15}' /proc/$1/stat; }
t0=$(tk $P); a0=$(tk $AG); l0=$(cut -d' ' -f1 /proc/loadavg); s=$(date +%s.%N)
sleep $3
t1=$(tk $P); a1=$(tk $AG); e=$(date +%s.%N)
w=$(echo "$e-$s" | bc)
echo "$1: window ${w}s procmond $((t1-t0)) ticks = $(echo "scale=2;($t1-$t0)/$w" | bc)% agent $((a1-a0)) ticks = $(echo "scale=2;($a1-$a0)/$w" | bc)% | RSS agent $(grep VmRSS /proc/$AG/status | awk '{print $2}') kB procmond $(grep VmRSS /proc/$P/status | awk '{print $2}') kB | procs $(ls /proc | grep -c '^[0-9]') | load $l0 -> $(cut -d' ' -f1 /proc/loadavg)"
kill $AG; wait $AG 2>/dev/null; rm -rf $D
