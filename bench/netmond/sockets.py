#!/usr/bin/env python3
"""usage: sockets.py N  -- holds N TCP sockets open on loopback (N/2 connections: client and
accepted ends), prints 'ready N' and waits until stdin closes. For netmond's enumeration bench."""
import resource, socket, sys

n = int(sys.argv[1])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, n + 100), max(hard, n + 100)))
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(4096)
held = []
for _ in range(n // 2):
    c = socket.create_connection(listener.getsockname())
    a, _ = listener.accept()
    held += [c, a]
print(f"ready {len(held)}", flush=True)
sys.stdin.read()
