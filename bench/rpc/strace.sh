#!/bin/bash
# usage: strace.sh <root> <label> <conc> <n>: syscall counts per round trip in the agent and the collector
ROOT=$1; LABEL=$2; c=$3; n=$4
mkdir -p /tmp/rpcb; D=$(mktemp -d /tmp/rpcb/sock.XXXX)
export DAEMONEYE_BROKER__SOCKET_PATH=$D/bus.sock DAEMONEYE_DURABILITY__DIRECTORY=$D/durable DAEMONEYE_IPC__SOCKET_PATH=$D/ipc.sock DAEMONEYE_COLLECTORS__0__ID=example
export DAEMONEYE_COLLECTORS__0__EXECUTABLE=$ROOT/src/Collectors/Example/bin/Release/net10.0/example-collector.dll DAEMONEYE_LOGGING__LEVEL=warning
cd $ROOT
dotnet src/Silo/bin/Release/net10.0/daemoneye-agent.dll > $D/agent.log 2>&1 & AGENT=$!
for i in $(seq 1 100); do dotnet src/Cli/bin/Release/net10.0/daemoneye-cli.dll bench rpc --collector example --concurrency 1 --requests 10 --warmup 0 >/dev/null 2>&1 && break; sleep 0.3; done
COLL=$(pgrep -P $AGENT | head -1)
strace -f -c -o $D/sa.txt -p $AGENT 2>/dev/null & SA=$!
strace -f -c -o $D/sk.txt -p $COLL 2>/dev/null & SK=$!
sleep 1
out=$(dotnet src/Cli/bin/Release/net10.0/daemoneye-cli.dll bench rpc --collector example --concurrency $c --requests $n --warmup 0 --json | tail -1)
kill -INT $SA $SK; wait $SA $SK 2>/dev/null
echo "$LABEL c=$c rps $(echo $out | sed -E 's/.*"requests_per_sec":([0-9]+).*/\1/')"
for f in sa sk; do echo -n "  $f per rt: "; awk -v n=$n '$NF ~ /^(sendmsg|sendto|recvmsg|recvfrom|write|read|epoll_wait|futex|sched_yield|total)$/ { printf "%s %.2f  ", $NF, $4/n }' $D/$f.txt; echo; done
kill $AGENT; wait $AGENT 2>/dev/null; rm -rf $D
