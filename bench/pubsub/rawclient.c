// A minimal bus client in C (no SDK, no .NET): frames hand-encoded from docs/protocol.md, one
// publisher thread and N subscriber threads, each on its own connection to a running agent. It
// measures the agent alone, so that `daemoneye-cli bench pubsub` (the C# SDK at both ends) can be
// compared with it: agent cost and SDK cost as separate figures.
//
// usage: rawclient SOCKET [-r rate] [-n messages] [-s payload bytes] [-k subscribers] [-w warm-up]
//                         [-p subscriber mode] [-b publish batch]
//   -r  messages per second, 0 = as fast as possible (default 10000)
//   -n  messages to publish (default 100000)          -s  payload bytes, at least 8 (default 64)
//   -k  subscribing connections (default 1)           -w  messages not recorded at the start (default 0)
//   -p  0: subscribers sleep in read() (default); 2: they poll with MSG_DONTWAIT and sched_yield
//   -b  at -r 0, messages per write (default 256)
//
// Latency is measured from each message's *scheduled* send time (start + i / rate), which the
// payload carries (CLOCK_MONOTONIC ns, little-endian), to the moment a subscriber has parsed it:
// a publisher that falls behind its schedule counts its lateness (no coordinated omission). Pacing:
// at each wake-up the publisher writes every message that is due in one write(), then sleeps until
// 20 µs before the next one is due (timer slack set to 1 ns) and yields until it is.
// The Publish frames look like the SDK's for the same call (32-character correlation id, root = id,
// sequence number, timestamp; no content type), so the agent does the same work for both.
// The run ends like the SDK bench: the publisher's Ping/Pong barrier (everything routed), then each
// subscriber's own Ping/Pong (everything queued for it is read); delivered + dropped must equal
// messages x subscribers. One line of JSON on stdout.
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static const char *sock_path;
static long rate = 10000, messages = 100000, warmup = 0;
static int size = 64, subscribers = 1, poll_mode = 0, batch = 256;
static char topic[64];

static int64_t now_ns(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000LL + t.tv_nsec; }
static void die(const char *what) { perror(what); exit(1); }

// ---- protobuf by hand ----
static int put_varint(uint8_t *p, uint64_t v) { int i = 0; while (v >= 0x80) { p[i++] = (uint8_t)(v | 0x80); v >>= 7; } p[i++] = (uint8_t)v; return i; }
static int varint_size(uint64_t v) { int n = 1; while (v >= 0x80) { v >>= 7; n++; } return n; }
static int get_varint(const uint8_t *p, const uint8_t *end, uint64_t *v) {
  *v = 0; for (int i = 0, s = 0; i < 10 && p + i < end; i++, s += 7) { *v |= (uint64_t)(p[i] & 0x7f) << s; if (p[i] < 0x80) return i + 1; } return -1; }
static int put_bytes(uint8_t *p, int field, const void *b, int n) { int i = 0; p[i++] = (uint8_t)(field << 3 | 2); i += put_varint(p + i, (uint64_t)n); memcpy(p + i, b, (size_t)n); return i + n; }
// A whole frame: 4-byte big-endian length, then the envelope bytes in body[0..n).
static int frame(uint8_t *out, const uint8_t *body, int n) { out[0] = (uint8_t)(n >> 24); out[1] = (uint8_t)(n >> 16); out[2] = (uint8_t)(n >> 8); out[3] = (uint8_t)n; memcpy(out + 4, body, (size_t)n); return n + 4; }

static void write_all(int fd, const uint8_t *b, size_t n) {
  while (n > 0) { ssize_t w = write(fd, b, n); if (w < 0) { if (errno == EINTR) continue; die("write"); } b += w; n -= (size_t)w; } }

// Envelope{request_id: 1, hello: {protocol_version: 1, client_id, role: ROLE_CLIENT (4)}}
static int connect_bus(const char *client_id) {
  int fd = socket(AF_UNIX, SOCK_STREAM, 0); struct sockaddr_un a = {.sun_family = AF_UNIX};
  strncpy(a.sun_path, sock_path, sizeof a.sun_path - 1);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
  uint8_t hello[256], env[300], out[320]; int h = 0;
  hello[h++] = 0x08; hello[h++] = 1; h += put_bytes(hello + h, 2, client_id, (int)strlen(client_id)); hello[h++] = 0x18; hello[h++] = 4;
  int e = 0; env[e++] = 0x08; env[e++] = 1; e += put_bytes(env + e, 4, hello, h);
  write_all(fd, out, (size_t)frame(out, env, e));
  return fd;
}

// Reads one frame into buf (blocking; only for the handshake and the subscribe ack).
static int read_frame(int fd, uint8_t *buf, int cap) {
  uint8_t hdr[4]; int got = 0;
  while (got < 4) { ssize_t r = read(fd, hdr + got, (size_t)(4 - got)); if (r <= 0) die("read header"); got += (int)r; }
  int n = hdr[0] << 24 | hdr[1] << 16 | hdr[2] << 8 | hdr[3]; if (n > cap) { fprintf(stderr, "frame of %d bytes\n", n); exit(1); }
  got = 0; while (got < n) { ssize_t r = read(fd, buf + got, (size_t)(n - got)); if (r <= 0) die("read body"); got += (int)r; }
  return n;
}

// Body field number of an envelope (skips request_id).
static int body_of(const uint8_t *p, int n) {
  const uint8_t *end = p + n; uint64_t tag, v;
  while (p < end) { int k = get_varint(p, end, &tag); if (k < 0) return -1; p += k;
    if ((tag & 7) == 0) { k = get_varint(p, end, &v); if (k < 0) return -1; p += k; continue; }
    return (int)(tag >> 3); }
  return 0; }

static void expect_welcome(int fd) { uint8_t buf[4096]; int n = read_frame(fd, buf, sizeof buf); if (body_of(buf, n) != 5) { fprintf(stderr, "no Welcome (body %d)\n", body_of(buf, n)); exit(1); } }

// Envelope{request_id: id, ping: {nonce: id}}
static void send_ping(int fd, uint32_t id) {
  uint8_t env[32], out[40], ping[12]; int p = 0, e = 0; ping[p++] = 0x08; p += put_varint(ping + p, id);
  env[e++] = 0x08; e += put_varint(env + e, id); env[e++] = 11 << 3 | 2; env[e++] = (uint8_t)p; memcpy(env + e, ping, (size_t)p); e += p;
  write_all(fd, out, (size_t)frame(out, env, e)); }

// ---- latency recording: every sample kept, sorted at the end ----
typedef struct { int fd; int64_t *lat; long nlat; long delivered; long dropped; int64_t last_ns; int done; pthread_t thread; } sub_t;
static sub_t *subs;
static volatile int64_t record_from = INT64_MAX; // scheduled time of the first recorded message
static int64_t start_ns;

// Parses Envelope{deliver{..., message: Publish{..., payload}}} and records the payload's timestamp.
static void on_deliver(sub_t *s, const uint8_t *p, const uint8_t *end, int64_t t) {
  uint64_t tag, len; int k;
  while (p < end) { // Deliver fields
    if ((k = get_varint(p, end, &tag)) < 0) { return; } p += k;
    if ((tag & 7) == 0) { uint64_t v; if ((k = get_varint(p, end, &v)) < 0) { return; } p += k; continue; }
    if ((k = get_varint(p, end, &len)) < 0) { return; } p += k;
    if (tag >> 3 != 3) { p += len; continue; }
    const uint8_t *q = p, *qe = p + len; // Publish fields
    while (q < qe) {
      if ((k = get_varint(q, qe, &tag)) < 0) { return; } q += k;
      if ((tag & 7) == 1) { q += 8; continue; }
      if ((tag & 7) == 0) { uint64_t v; if ((k = get_varint(q, qe, &v)) < 0) { return; } q += k; continue; }
      if ((k = get_varint(q, qe, &len)) < 0) { return; } q += k;
      if (tag >> 3 == 2 && len >= 8) { int64_t sent; memcpy(&sent, q, 8); s->delivered++; s->last_ns = t; if (sent >= record_from) s->lat[s->nlat++] = t - sent; return; }
      q += len; }
    return; }
}

static void *subscriber(void *arg) {
  sub_t *s = arg; size_t cap = 1 << 20; uint8_t *buf = malloc(cap); size_t have = 0;
  for (;;) {
    ssize_t r = poll_mode == 2 ? recv(s->fd, buf + have, cap - have, MSG_DONTWAIT) : read(s->fd, buf + have, cap - have);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) { if (poll_mode == 2) sched_yield(); continue; }
    if (r <= 0) { fprintf(stderr, "subscriber: connection ended\n"); exit(1); }
    int64_t t = now_ns(); have += (size_t)r; size_t off = 0;
    while (have - off >= 4) {
      uint8_t *f = buf + off; uint32_t n = (uint32_t)f[0] << 24 | f[1] << 16 | f[2] << 8 | f[3];
      if (have - off - 4 < n) break;
      const uint8_t *b = f + 4, *be = b + n; int body = body_of(b, (int)n);
      if (body == 3) { // Deliver: the body's length prefix first
        const uint8_t *p = b; uint64_t tag, len; int k;
        while (p < be) { k = get_varint(p, be, &tag); p += k; if ((tag & 7) == 0) { uint64_t v; p += get_varint(p, be, &v); continue; }
          k = get_varint(p, be, &len); p += k; if (tag >> 3 == 3) on_deliver(s, p, p + len, t); p += len; }
      } else if (body == 13) { // Dropped{count (1), total (2), reason (3)}
        const uint8_t *p = b; uint64_t tag, len, v;
        while (p < be) { p += get_varint(p, be, &tag); if ((tag & 7) == 0) { p += get_varint(p, be, &v); continue; }
          p += get_varint(p, be, &len); const uint8_t *q = p, *qe = p + len; p += len; if (tag >> 3 != 13) continue;
          while (q < qe) { q += get_varint(q, qe, &tag); if ((tag & 7) != 0) { q += get_varint(q, qe, &len); q += len; continue; }
            q += get_varint(q, qe, &v); if (tag >> 3 == 1) s->dropped += (long)v; } }
      } else if (body == 12) { s->done = 1; } // Pong: our barrier
      off += 4 + n; }
    memmove(buf, buf + off, have - off); have -= off;
    if (s->done) break; }
  free(buf); return NULL;
}

static int cmp64(const void *a, const void *b) { int64_t x = *(const int64_t *)a, y = *(const int64_t *)b; return x < y ? -1 : x > y; }

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: %s SOCKET [-r rate] [-n messages] [-s bytes] [-k subscribers] [-w warmup] [-p 0|2] [-b batch]\n", argv[0]); return 2; }
  sock_path = argv[1];
  for (int i = 2; i + 1 < argc; i += 2) {
    long v = atol(argv[i + 1]);
    switch (argv[i][1]) { case 'r': rate = v; break; case 'n': messages = v; break; case 's': size = (int)v; break; case 'k': subscribers = (int)v; break;
      case 'w': warmup = v; break; case 'p': poll_mode = (int)v; break; case 'b': batch = (int)v; break; default: fprintf(stderr, "unknown option %s\n", argv[i]); return 2; } }
  if (size < 8 || messages < 1 || rate < 0 || subscribers < 0 || batch < 1) { fprintf(stderr, "bad arguments\n"); return 2; }
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  snprintf(topic, sizeof topic, "events.bench.raw-%d", (int)getpid());

  subs = calloc((size_t)(subscribers ? subscribers : 1), sizeof *subs);
  for (int i = 0; i < subscribers; i++) {
    char id[64]; snprintf(id, sizeof id, "rawclient-%d-sub%d", (int)getpid(), i);
    int fd = connect_bus(id); expect_welcome(fd);
    uint8_t sub[128], env[160], out[170], buf[4096]; int sn = put_bytes(sub, 1, topic, (int)strlen(topic)), e = 0;
    env[e++] = 0x08; env[e++] = 2; e += put_bytes(env + e, 6, sub, sn); write_all(fd, out, (size_t)frame(out, env, e));
    int n = read_frame(fd, buf, sizeof buf); if (body_of(buf, n) != 7) { fprintf(stderr, "no SubscribeAck (body %d)\n", body_of(buf, n)); return 1; }
    subs[i].fd = fd; subs[i].lat = malloc(sizeof(int64_t) * (size_t)messages); }
  char pid[64]; snprintf(pid, sizeof pid, "rawclient-%d-pub", (int)getpid());
  int pub = connect_bus(pid); expect_welcome(pub);
  for (int i = 0; i < subscribers; i++) pthread_create(&subs[i].thread, NULL, subscriber, &subs[i]);

  // One publish frame, re-stamped per message: payload[0..8) = scheduled time, correlation id = counter.
  int tlen = (int)strlen(topic); uint8_t *payload = calloc((size_t)size, 1); memset(payload + 8, 'x', (size_t)size - 8);
  char cid[33]; memset(cid, '0', 32); cid[32] = 0;
  uint8_t corr[128], pubm[4096], env[4200]; int c = 0;
  c += put_bytes(corr + c, 1, cid, 32); c += put_bytes(corr + c, 3, cid, 32); corr[c++] = 0x20; c += put_varint(corr + c, 1);
  int m = 0; m += put_bytes(pubm + m, 1, topic, tlen); int payload_at = m + 1 + varint_size((uint64_t)size); m += put_bytes(pubm + m, 2, payload, size);
  int corr_at = m + 2; m += put_bytes(pubm + m, 3, corr, c); pubm[m++] = 4 << 3 | 1; int ts_at = m; m += 8;
  int e = 0; env[e++] = 2 << 3 | 2; e += put_varint(env + e, (uint64_t)m); int base = e; memcpy(env + e, pubm, (size_t)m); e += m;
  int fsize = e + 4; size_t cap = (size_t)fsize * (size_t)(batch > 4096 ? batch : 4096); uint8_t *out = malloc(cap);

  start_ns = now_ns() + 1000000; // 1 ms from now: the schedule's origin
  double fperiod = rate > 0 ? 1e9 / (double)rate : 0;
  int64_t max_behind = 0; long i = 0;
  if (warmup == 0) record_from = rate > 0 ? start_ns : 0;
  while (i < messages) {
    int64_t t = now_ns(), due = rate > 0 ? start_ns + (int64_t)((double)i * fperiod) : t;
    if (rate > 0 && due > t) { // sleep to 20 µs before it is due, then yield until it is
      int64_t sleep_ns = due - t - 20000;
      if (sleep_ns > 0) { struct timespec ts = {sleep_ns / 1000000000LL, sleep_ns % 1000000000LL}; nanosleep(&ts, NULL); }
      while ((t = now_ns()) < due) sched_yield(); }
    if (rate > 0 && t - due > max_behind) max_behind = t - due;
    size_t used = 0; long limit = rate > 0 ? (long)(cap / (size_t)fsize) : batch;
    for (long n = 0; i < messages && n < limit; n++, i++) { // everything due now, in one write
      int64_t sched = rate > 0 ? start_ns + (int64_t)((double)i * fperiod) : now_ns();
      if (rate > 0 && sched > t) break;
      if (i == warmup) record_from = sched;
      memcpy(env + base + payload_at, &sched, 8); memcpy(env + base + ts_at, &sched, 8);
      char hex[17]; snprintf(hex, sizeof hex, "%016lx", (unsigned long)i); memcpy(env + base + corr_at + 2 + 16, hex, 16); memcpy(env + base + corr_at + 2 + 34 + 16, hex, 16);
      used += (size_t)frame(out + used, env, e); }
    write_all(pub, out, used); }
  int64_t published = now_ns();

  // Barriers: the publisher's Pong (all routed), then each subscriber's (all it was sent is read).
  send_ping(pub, 7); { uint8_t buf[4096]; for (;;) { int n = read_frame(pub, buf, sizeof buf); if (body_of(buf, n) == 12) break; } }
  for (int k = 0; k < subscribers; k++) send_ping(subs[k].fd, 9);
  long delivered = 0, dropped = 0, nlat = 0; int64_t last = published;
  for (int k = 0; k < subscribers; k++) { pthread_join(subs[k].thread, NULL); delivered += subs[k].delivered; dropped += subs[k].dropped; nlat += subs[k].nlat; if (subs[k].last_ns > last) last = subs[k].last_ns; }
  int64_t *all = malloc(sizeof(int64_t) * (size_t)(nlat ? nlat : 1)); long at = 0;
  for (int k = 0; k < subscribers; k++) { memcpy(all + at, subs[k].lat, sizeof(int64_t) * (size_t)subs[k].nlat); at += subs[k].nlat; }
  qsort(all, (size_t)nlat, sizeof *all, cmp64);
#define PCT(p) (nlat ? all[(long)((double)(nlat - 1) * (p))] / 1000.0 : 0.0)
  double pub_s = (double)(published - start_ns) / 1e9, del_s = (double)(last - start_ns) / 1e9;
  printf("{\"client\":\"raw\",\"subscribers\":%d,\"messages\":%ld,\"size\":%d,\"rate\":%ld,\"offered_per_sec\":%.0f,\"delivered\":%ld,\"delivered_per_sec\":%.0f,"
         "\"dropped\":%ld,\"expected\":%ld,\"complete\":%s,\"max_behind_schedule_us\":%.1f,\"latency_us\":{\"p50\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f},\"recorded\":%ld}\n",
         subscribers, messages, size, rate, (double)messages / pub_s, delivered, del_s > 0 ? (double)delivered / del_s : 0, dropped, messages * subscribers,
         delivered + dropped == messages * subscribers ? "true" : "false", (double)max_behind / 1000.0, PCT(0.5), PCT(0.99), PCT(0.999), nlat ? all[nlat - 1] / 1000.0 : 0.0, nlat);
  return delivered + dropped == messages * subscribers ? 0 : 1;
}
