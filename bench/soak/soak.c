// Soak load for a running agent, written against docs/protocol.md with no SDK: one publisher sends
// one Publish frame per send() at a fixed rate; N subscribers read in bulk. Every message carries its
// scheduled send time, so latency counts from when it was due (no coordinated omission; the
// publisher sleeps until each message is due, so its own wake-up is part of the figure). Each
// interval prints messages sent and received, losses (gaps in Deliver.sequence, Dropped notices),
// latency percentiles, and the agent's memory (VmRSS and its RssAnon/RssFile/RssShmem split) and
// CPU, from /proc/<pid>.
//
// With SOAK_PROTOCOL=resp in the environment it speaks Redis's RESP instead (PUBLISH; SUBSCRIBE and
// its pushes), so the same client measures Redis in the same minutes: losses are then counted from
// the totals (RESP pushes carry no sequence) and "agent pid" is the redis-server's.
//
//   cc -O2 -pthread -o soak bench/soak/soak.c
//   ./soak <bus.sock> <rate msg/s> <seconds> <subscribers> <agent pid> [interval s=60] [payload B=64]
#include <errno.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAXSUB 16
#define TOPIC "events.bench.soak"

static int64_t now_ns(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000LL + t.tv_nsec; }

static size_t put_varint(uint8_t *p, uint64_t v) { size_t n = 0; while (v >= 0x80) { p[n++] = (uint8_t)(v | 0x80); v >>= 7; } p[n++] = (uint8_t)v; return n; }
static size_t put_bytes(uint8_t *p, int field, const void *data, size_t len) { size_t n = put_varint(p, ((uint64_t)field << 3) | 2); n += put_varint(p + n, len); memcpy(p + n, data, len); return n + len; }
static size_t put_uint(uint8_t *p, int field, uint64_t v) { size_t n = put_varint(p, (uint64_t)field << 3); return n + put_varint(p + n, v); }
static int get_varint(const uint8_t *p, const uint8_t *end, uint64_t *v) { int s = 0, n = 0; *v = 0; while (p + n < end) { uint8_t b = p[n++]; *v |= (uint64_t)(b & 0x7f) << s; if (!(b & 0x80)) return n; s += 7; } return -1; }

// A frame: 4-byte big-endian length, then the envelope.
static size_t frame(uint8_t *out, const uint8_t *env, size_t len) { out[0] = len >> 24; out[1] = len >> 16; out[2] = len >> 8; out[3] = len; memcpy(out + 4, env, len); return len + 4; }

static void send_all(int fd, const uint8_t *p, size_t n) { while (n) { ssize_t w = send(fd, p, n, MSG_NOSIGNAL); if (w < 0) { if (errno == EINTR) continue; perror("send"); exit(1); } p += w; n -= (size_t)w; } }
static void read_frame(int fd, uint8_t *buf) { uint8_t h[4]; if (recv(fd, h, 4, MSG_WAITALL) != 4) { fprintf(stderr, "agent closed\n"); exit(1); } size_t l = ((size_t)h[0] << 24) | (h[1] << 16) | (h[2] << 8) | h[3]; if (recv(fd, buf, l, MSG_WAITALL) != (ssize_t)l) exit(1); }

static int resp; // SOAK_PROTOCOL=resp

static int connect_unix(const char *path) {
  int fd = socket(AF_UNIX, SOCK_STREAM, 0); struct sockaddr_un a = {.sun_family = AF_UNIX};
  strncpy(a.sun_path, path, sizeof a.sun_path - 1);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) { perror("connect"); exit(1); }
  return fd;
}

// RESP: a command as an array of bulk strings.
static size_t resp_command(uint8_t *out, int argc, const char **argv, const size_t *lens) {
  size_t n = (size_t)sprintf((char *)out, "*%d\r\n", argc);
  for (int i = 0; i < argc; i++) { n += (size_t)sprintf((char *)out + n, "$%zu\r\n", lens[i]); memcpy(out + n, argv[i], lens[i]); n += lens[i]; out[n++] = '\r'; out[n++] = '\n'; }
  return n;
}

// RESP: one element's length from p ("*3\r\n" or "$64\r\n"): the number, and the bytes of its header line; 0 when incomplete.
static size_t resp_header(const uint8_t *p, const uint8_t *end, long *value) {
  const uint8_t *q = p + 1; long v = 0; int neg = 0;
  if (q < end && *q == '-') { neg = 1; q++; }
  while (q < end && *q != '\r') v = v * 10 + (*q++ - '0');
  if (q + 1 >= end) return 0;
  *value = neg ? -v : v; return (size_t)(q + 2 - p);
}

// RESP: parses one complete push at p; returns its length (0 when incomplete) and its last bulk string (the payload).
static size_t resp_push(const uint8_t *p, const uint8_t *end, const uint8_t **last, long *last_len) {
  long count; size_t h = resp_header(p, end, &count); if (!h) return 0;
  if (*p != '*') { const uint8_t *q = memchr(p, '\n', (size_t)(end - p)); return q ? (size_t)(q + 1 - p) : 0; } // a simple reply
  const uint8_t *q = p + h;
  for (long i = 0; i < count; i++) {
    long len; size_t hh = resp_header(q, end, &len); if (!hh) return 0;
    if (*q == ':') { q += hh; continue; } // an integer (the SUBSCRIBE reply's count)
    if (q + hh + len + 2 > end) return 0;
    *last = q + hh; *last_len = len; q += hh + len + 2;
  }
  return (size_t)(q - p);
}

static int connect_hello(const char *path, const char *id) {
  if (resp) return connect_unix(path);
  int fd = socket(AF_UNIX, SOCK_STREAM, 0); struct sockaddr_un a = {.sun_family = AF_UNIX};
  strncpy(a.sun_path, path, sizeof a.sun_path - 1);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) { perror("connect"); exit(1); }
  uint8_t hello[256], env[300], out[320], buf[4096]; size_t h = 0, e = 0;
  h += put_uint(hello + h, 1, 1); h += put_bytes(hello + h, 2, id, strlen(id)); h += put_uint(hello + h, 3, 4 /* ROLE_CLIENT */);
  e += put_uint(env + e, 1, 1); e += put_bytes(env + e, 4, hello, h);
  send_all(fd, out, frame(out, env, e)); read_frame(fd, buf); // Welcome (an Error ends the run at the next read)
  return fd;
}

typedef struct { int64_t *lat; size_t n, cap; uint64_t received, lost, dropped, last_seq; pthread_mutex_t mu; } interval_t;
typedef struct { int fd; interval_t iv; } sub_t;
static sub_t subs[MAXSUB];
static int nsubs;
static volatile int done;

static void record(interval_t *iv, int64_t lat) {
  if (iv->n == iv->cap) { iv->cap = iv->cap ? iv->cap * 2 : 1 << 16; iv->lat = realloc(iv->lat, iv->cap * sizeof(int64_t)); }
  iv->lat[iv->n++] = lat;
}

// Parses one envelope; records a Deliver's latency and sequence gap, or a Dropped notice.
static void on_envelope(sub_t *s, const uint8_t *p, const uint8_t *end) {
  while (p < end) {
    uint64_t key, len; int k = get_varint(p, end, &key); p += k;
    if ((key & 7) == 0) { uint64_t v; p += get_varint(p, end, &v); continue; }
    p += get_varint(p, end, &len);
    const uint8_t *body = p, *bend = p + len; p = bend;
    if (key >> 3 == 13) { // Dropped{count=1}
      uint64_t c = 0, v; const uint8_t *q = body; while (q < bend) { uint64_t kk; q += get_varint(q, bend, &kk); if ((kk & 7) == 0) { q += get_varint(q, bend, &v); if (kk >> 3 == 1) c = v; } else { q += get_varint(q, bend, &v); q += v; } }
      pthread_mutex_lock(&s->iv.mu); s->iv.dropped += c; pthread_mutex_unlock(&s->iv.mu);
    }
    if (key >> 3 != 3) continue; // Deliver
    uint64_t seq = 0; int64_t due = -1; const uint8_t *q = body;
    while (q < bend) {
      uint64_t kk, v; q += get_varint(q, bend, &kk);
      if ((kk & 7) == 0) { q += get_varint(q, bend, &v); if (kk >> 3 == 2) seq = v; continue; }
      q += get_varint(q, bend, &v); const uint8_t *m = q, *mend = q + v; q = mend;
      if (kk >> 3 != 3) continue; // Publish
      while (m < mend) { uint64_t mk, ml; m += get_varint(m, mend, &mk); if ((mk & 7) == 0) { m += get_varint(m, mend, &ml); continue; } if ((mk & 7) == 1) { m += 8; continue; } m += get_varint(m, mend, &ml); if (mk >> 3 == 2 && ml >= 8) memcpy(&due, m, 8); m += ml; }
    }
    int64_t t = now_ns();
    pthread_mutex_lock(&s->iv.mu);
    if (s->iv.last_seq && seq > s->iv.last_seq + 1) s->iv.lost += seq - s->iv.last_seq - 1;
    if (seq > s->iv.last_seq) s->iv.last_seq = seq;
    s->iv.received++;
    if (due > 0) record(&s->iv, t - due);
    pthread_mutex_unlock(&s->iv.mu);
  }
}

// A RESP push: the payload's first 8 bytes are its due time.
static void on_resp(sub_t *s, const uint8_t *payload, long len) {
  int64_t due = -1, t = now_ns(); if (len >= 8) memcpy(&due, payload, 8);
  pthread_mutex_lock(&s->iv.mu); s->iv.received++; if (due > 0) record(&s->iv, t - due); pthread_mutex_unlock(&s->iv.mu);
}

// RESP: the publisher's replies (":<receivers>") are read and discarded, so Redis need not buffer them.
static void *discard(void *arg) {
  int fd = *(int *)arg; uint8_t buf[65536];
  while (!done) { ssize_t r = recv(fd, buf, sizeof buf, 0); if (r <= 0 && !(r < 0 && errno == EINTR)) break; }
  return NULL;
}

static void *reader(void *arg) {
  sub_t *s = arg; size_t cap = 1 << 20, have = 0; uint8_t *buf = malloc(cap);
  while (!done) {
    ssize_t r = recv(s->fd, buf + have, cap - have, 0);
    if (r <= 0) { if (r < 0 && errno == EINTR) continue; break; }
    have += (size_t)r; size_t off = 0;
    while (resp && have > off) {
      const uint8_t *payload = NULL; long len = 0; size_t n = resp_push(buf + off, buf + have, &payload, &len);
      if (!n) break;
      if (payload && len >= 16) on_resp(s, payload, len);
      off += n;
    }
    while (!resp && have - off >= 4) {
      size_t l = ((size_t)buf[off] << 24) | (buf[off + 1] << 16) | (buf[off + 2] << 8) | buf[off + 3];
      if (have - off < 4 + l) break;
      on_envelope(s, buf + off + 4, buf + off + 4 + l); off += 4 + l;
    }
    memmove(buf, buf + off, have - off); have -= off;
  }
  return NULL;
}

static int cmp64(const void *a, const void *b) { int64_t x = *(const int64_t *)a, y = *(const int64_t *)b; return x < y ? -1 : x > y; }
/* One "Name:  N kB" field of /proc/<pid>/status (VmRSS, RssAnon, RssFile, RssShmem), or -1. */
static long status_kb(int pid, const char *field) { char p[64], line[256]; long kb = -1; size_t n = strlen(field); snprintf(p, sizeof p, "/proc/%d/status", pid); FILE *f = fopen(p, "r"); if (!f) return -1; while (fgets(line, sizeof line, f)) if (!strncmp(line, field, n) && line[n] == ':') kb = atol(line + n + 1); fclose(f); return kb; }
static long agent_rss_kb(int pid) { return status_kb(pid, "VmRSS"); }
static long agent_ticks(int pid) { char p[64]; long v[17] = {0}; snprintf(p, sizeof p, "/proc/%d/stat", pid); FILE *f = fopen(p, "r"); if (!f) return -1; char comm[256]; int x; if (fscanf(f, "%d %255s %*c", &x, comm) != 2) { fclose(f); return -1; } for (int i = 3; i <= 15; i++) if (fscanf(f, "%ld", &v[i]) != 1) break; fclose(f); return v[14] + v[15]; }

// The report runs on its own thread: sorting an interval's latencies takes a while, and the
// publisher must not stop for it (its pause would show as every message's latency).
static struct { int pid, interval, secs; int64_t start; long rss0; volatile uint64_t sent; uint64_t recv, lost, dropped; int64_t worst999; } rep;

static void *report_loop(void *arg) {
  (void)arg; long hz = sysconf(_SC_CLK_TCK), t0 = agent_ticks(rep.pid); uint64_t sent0 = 0;
  for (int k = 1;; k++) {
    int64_t at = rep.start + (int64_t)k * rep.interval * 1000000000LL, end = rep.start + (int64_t)rep.secs * 1000000000LL;
    int last = at >= end; if (last) at = end + 1000000000LL; // let the tail arrive
    for (int64_t t = now_ns(); t < at; t = now_ns()) { struct timespec ts = {(at - t) / 1000000000LL, (at - t) % 1000000000LL}; nanosleep(&ts, NULL); }
    size_t n = 0, j = 0; uint64_t recv_iv = 0, lost = 0, dropped = 0;
    for (int i = 0; i < nsubs; i++) pthread_mutex_lock(&subs[i].iv.mu); // one consistent cut of every subscriber
    for (int i = 0; i < nsubs; i++) n += subs[i].iv.n;
    int64_t *all = malloc((n + 1) * sizeof(int64_t));
    for (int i = 0; i < nsubs; i++) { memcpy(all + j, subs[i].iv.lat, subs[i].iv.n * sizeof(int64_t)); j += subs[i].iv.n; recv_iv += subs[i].iv.received; lost += subs[i].iv.lost; dropped += subs[i].iv.dropped; subs[i].iv.n = 0; subs[i].iv.received = 0; subs[i].iv.lost = 0; subs[i].iv.dropped = 0; }
    for (int i = 0; i < nsubs; i++) pthread_mutex_unlock(&subs[i].iv.mu);
    qsort(all, j, sizeof(int64_t), cmp64);
    long t1 = agent_ticks(rep.pid), rss = agent_rss_kb(rep.pid); uint64_t sent = rep.sent;
    int64_t p999 = j ? all[j * 999 / 1000] : 0; if (p999 > rep.worst999) rep.worst999 = p999;
    printf("%d %llu %llu %llu %llu %.1f %.1f %.1f %.1f %ld %ld %ld %ld %.1f\n", last ? rep.secs : k * rep.interval, (unsigned long long)(sent - sent0), (unsigned long long)recv_iv, (unsigned long long)lost, (unsigned long long)dropped,
           j ? all[j / 2] / 1e3 : 0, j ? all[j * 99 / 100] / 1e3 : 0, p999 / 1e3, j ? all[j - 1] / 1e3 : 0, rss, status_kb(rep.pid, "RssAnon"), status_kb(rep.pid, "RssFile"), status_kb(rep.pid, "RssShmem"), 100.0 * (t1 - t0) / hz / rep.interval);
    fflush(stdout); free(all); t0 = t1; sent0 = sent; rep.recv += recv_iv; rep.lost += lost; rep.dropped += dropped;
    if (last) return NULL;
  }
}

int main(int argc, char **argv) {
  if (argc < 6) { fprintf(stderr, "usage: %s <bus.sock> <rate> <seconds> <subscribers> <agent pid> [interval s] [payload B]\n", argv[0]); return 2; }
  const char *path = argv[1]; double rate = atof(argv[2]); int secs = atoi(argv[3]); nsubs = atoi(argv[4]); int pid = atoi(argv[5]);
  int interval = argc > 6 ? atoi(argv[6]) : 60, size = argc > 7 ? atoi(argv[7]) : 64;
  resp = getenv("SOAK_PROTOCOL") && !strcmp(getenv("SOAK_PROTOCOL"), "resp");
  if (nsubs < 1 || nsubs > MAXSUB || size < 16 || rate <= 0) { fprintf(stderr, "subscribers 1-%d, payload >= 16, rate > 0\n", MAXSUB); return 2; }
  uint8_t env[512], out[600], buf[4096]; pthread_t th[MAXSUB];
  for (int i = 0; i < nsubs; i++) {
    char id[32]; snprintf(id, sizeof id, "soak-sub%d", i); subs[i].fd = connect_hello(path, id); pthread_mutex_init(&subs[i].iv.mu, NULL);
    if (resp) { // SUBSCRIBE; its reply is read here, before the reader starts
      const char *argv_[] = {"SUBSCRIBE", TOPIC}; size_t lens[] = {9, strlen(TOPIC)};
      send_all(subs[i].fd, out, resp_command(out, 2, argv_, lens));
      size_t have = 0; const uint8_t *last; long ll; // wait for the reply before publishing starts
      while (!(have && resp_push(buf, buf + have, &last, &ll))) { ssize_t r = recv(subs[i].fd, buf + have, sizeof buf - have, 0); if (r <= 0) { fprintf(stderr, "redis closed\n"); exit(1); } have += (size_t)r; }
    } else {
    uint8_t sub[64]; size_t sl = put_bytes(sub, 1, TOPIC, strlen(TOPIC)), e = 0;
    e += put_uint(env + e, 1, 2); e += put_bytes(env + e, 6, sub, sl);
    send_all(subs[i].fd, out, frame(out, env, e)); read_frame(subs[i].fd, buf); // SubscribeAck
    }
    pthread_create(&th[i], NULL, reader, &subs[i]);
  }
  int pub = connect_hello(path, "soak-pub");
  pthread_t discarder; if (resp) pthread_create(&discarder, NULL, discard, &pub);
  uint8_t payload[4096] = {0}, publish[4200]; size_t plen;
  int64_t period = (int64_t)(1e9 / rate);
  rep.pid = pid; rep.interval = interval; rep.secs = secs; rep.start = now_ns(); rep.rss0 = agent_rss_kb(pid);
  printf("# soak: rate %.0f/s, %d s, %d subscribers, %d B payload; agent pid %d, RSS at start %ld kB\n", rate, secs, nsubs, size, pid, rep.rss0);
  printf("# t_s sent received lost dropped p50_us p99_us p999_us max_us rss_kb anon_kb file_kb shmem_kb agent_cpu_pct\n");
  fflush(stdout);
  pthread_t reporter; pthread_create(&reporter, NULL, report_loop, NULL);
  prctl(PR_SET_TIMERSLACK, 1000UL); // wake within ~1 us of the due time, not the default 50 us
  for (uint64_t sent = 0;; sent++) {
    int64_t due = rep.start + (int64_t)sent * period;
    if (due - rep.start >= (int64_t)secs * 1000000000LL) break;
    for (int64_t t = now_ns(); due > t; t = now_ns()) { struct timespec ts = {0, due - t}; nanosleep(&ts, NULL); } // sleep, not spin: the client must not take a core from the agent
    memcpy(payload, &due, 8); memcpy(payload + 8, &sent, 8);
    if (resp) {
      const char *argv_[] = {"PUBLISH", TOPIC, (const char *)payload}; size_t lens[] = {7, strlen(TOPIC), (size_t)size};
      send_all(pub, publish, resp_command(publish, 3, argv_, lens));
    } else {
      plen = put_bytes(publish, 1, TOPIC, strlen(TOPIC)); plen += put_bytes(publish + plen, 2, payload, (size_t)size);
      size_t e = put_bytes(env, 2, publish, plen);
      send_all(pub, out, frame(out, env, e));
    }
    __atomic_store_n(&rep.sent, sent + 1, __ATOMIC_RELEASE);
  }
  pthread_join(reporter, NULL);
  done = 1;
  uint64_t sent = rep.sent;
  printf("# total: sent %llu, expected deliveries %llu, received %llu, lost %llu, dropped %llu, worst interval p99.9 %.1f us, RSS %ld -> %ld kB\n",
         (unsigned long long)sent, (unsigned long long)sent * nsubs, (unsigned long long)rep.recv, (unsigned long long)rep.lost, (unsigned long long)rep.dropped, rep.worst999 / 1e3, rep.rss0, agent_rss_kb(pid));
  return rep.lost || rep.dropped || rep.recv != sent * (uint64_t)nsubs ? 1 : 0;
}
