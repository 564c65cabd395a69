# The same load as rawps.py, against Redis over a Unix socket: 1 publisher (one PUBLISH per send,
# paced; its integer replies drained by a thread), 1 subscriber reading in bulk.
import socket, sys, time, threading
path, rate, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def cmd(*args):
    out = b'*%d\r\n' % len(args)
    for a in args:
        out += b'$%d\r\n%s\r\n' % (len(a), a)
    return out
topic = b'events.bench.raw'
sub = socket.socket(socket.AF_UNIX); sub.connect(path); sub.sendall(cmd(b'SUBSCRIBE', topic))
confirm = b''
while confirm.count(b'\r\n') < 6:
    confirm += sub.recv(4096)
pub = socket.socket(socket.AF_UNIX); pub.connect(path)
msg = cmd(b'PUBLISH', topic, b'x' * 64)
marker = b'$7\r\nmessage\r\n'
got = [0]
def reader():
    tail = b''
    while got[0] < n:
        d = sub.recv(1 << 20)
        if not d: break
        d = tail + d
        got[0] += d.count(marker)
        tail = d[-(len(marker) - 1):]
def drain():
    replies = 0
    while replies < n:
        d = pub.recv(1 << 20)
        if not d: break
        replies += d.count(b'\r\n')
threading.Thread(target=drain, daemon=True).start()
t = threading.Thread(target=reader); t.start()
start = time.perf_counter()
for i in range(n):
    due = start + i / rate
    while True:
        now = time.perf_counter()
        if now >= due: break
        if due - now > 0.0005: time.sleep(due - now - 0.0003)
    pub.send(msg)
t.join(timeout=30)
print(f"sent {n} got {got[0]} in {time.perf_counter()-start:.2f}s")
