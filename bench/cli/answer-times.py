#!/usr/bin/env python3
"""Wall time from exec to exit of daemoneye-cli commands (docs/operator.md, "Answer times").

usage: answer-times.py CLI [OTHER_CLI] [--runs N]
Runs each command N times (default 5); with OTHER_CLI, alternately with it, so both see the same
load. Prints a Markdown row per command (median, range in ms, exit codes) and the load average
before and after. The agent to ask is found as the CLI finds it (DAEMONEYE_BROKER__SOCKET_PATH...);
the figures in docs/operator.md had the example collector running as `example`.
"""
import statistics, subprocess, sys, time

args = [a for a in sys.argv[1:] if not a.startswith("--runs")]
runs = next((int(a.split("=", 1)[1]) for a in sys.argv[1:] if a.startswith("--runs=")), 5)
clis = args[:2]
if not clis:
    sys.exit(__doc__)
commands = [["--help"], ["--version"], ["status"], ["health"], ["metrics"], ["collectors", "list"],
            ["collectors", "health", "example"], ["topic", "validate", "events.process.lifecycle"],
            ["topic", "match", "events.#", "events"], ["publish", "events.demo.hello", "hi"],
            ["config", "validate"], ["config", "show"], ["rules", "list"], ["task", "run", "no.such.type"]]


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


print("load average", loadavg())
for command in commands:
    times = {cli: [] for cli in clis}
    codes = {cli: set() for cli in clis}
    for _ in range(runs):
        for cli in clis:
            start = time.perf_counter()
            code = subprocess.run([cli] + command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
            times[cli].append((time.perf_counter() - start) * 1000)
            codes[cli].add(code)
    cells = [f"{statistics.median(times[c]):.0f} ms | {min(times[c]):.0f}–{max(times[c]):.0f}" for c in clis]
    print(f"| `daemoneye-cli {' '.join(command)}` | {' | '.join(cells)} | {','.join(map(str, sorted(codes[clis[0]])))} |")
print("load average", loadavg())
