# Minimal raw pub/sub load for measurement: 1 publisher (one frame per send, paced), 1 subscriber reading in bulk.
import socket, struct, sys, time, threading
path, rate, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def vi(x):
    b=bytearray()
    while True:
        t=x&0x7f; x>>=7
        if x: b.append(t|0x80)
        else: b.append(t); return bytes(b)
def fld(num, data): return vi((num<<3)|2)+vi(len(data))+data
def fvar(num, v): return vi(num<<3)+vi(v)
def frame(env): return struct.pack('>I', len(env))+env
def hello(cid, role): return frame(fvar(1,1)+fld(4, fvar(1,1)+fld(2,cid.encode())+fvar(3,role)))
def connect(cid, role):
    s=socket.socket(socket.AF_UNIX); s.connect(path); s.sendall(hello(cid, role))
    hdr=s.recv(4, socket.MSG_WAITALL); l=struct.unpack('>I',hdr)[0]; s.recv(l, socket.MSG_WAITALL); return s
topic=b'events.bench.raw'
sub=connect('raw-sub',4); sub.sendall(frame(fvar(1,2)+fld(6, fld(1, topic))))
hdr=sub.recv(4, socket.MSG_WAITALL); sub.recv(struct.unpack('>I',hdr)[0], socket.MSG_WAITALL)
pub=connect('raw-pub',4)
payload=b'x'*64
msg=frame(fld(2, fld(1,topic)+fld(2,payload)))
got=[0]
def reader():
    buf=b''
    while got[0] < n:
        d=sub.recv(1<<20)
        if not d: break
        buf+=d
        while len(buf)>=4:
            l=struct.unpack('>I',buf[:4])[0]
            if len(buf)<4+l: break
            buf=buf[4+l:]; got[0]+=1
t=threading.Thread(target=reader); t.start()
start=time.perf_counter()
for i in range(n):
    due=start+i/rate
    while True:
        now=time.perf_counter()
        if now>=due: break
        if due-now>0.0005: time.sleep(due-now-0.0003)
    pub.send(msg)
t.join(timeout=30)
print(f"sent {n} got {got[0]} in {time.perf_counter()-start:.2f}s")
