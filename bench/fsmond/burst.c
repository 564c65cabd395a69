// usage: burst DIR SECONDS [FILES_PER_SECOND]  -- creates, closes and deletes files in DIR for
// SECONDS (each file: create, close after write-open, delete: up to three fanotify events), as fast
// as possible or paced to FILES_PER_SECOND; prints the files done and the rate reached.
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: %s DIR SECONDS [FILES_PER_SECOND]\n", argv[0]); return 2; }
  double secs = atof(argv[2]), rate = argc > 3 ? atof(argv[3]) : 0;
  char path[4096];
  double start = now(), end = start + secs;
  long n = 0, failed = 0;
  for (;;) {
    double t = now();
    if (t >= end) break;
    if (rate > 0 && n >= (t - start) * rate) { struct timespec s = {0, 100000}; nanosleep(&s, NULL); continue; }
    for (int k = 0; k < 64; k++, n++) {
      snprintf(path, sizeof path, "%s/burst-%d-%ld", argv[1], getpid(), n);
      int fd = open(path, O_CREAT | O_WRONLY | O_EXCL, 0600);
      if (fd < 0) { failed++; continue; }
      close(fd);
      if (unlink(path) != 0) failed++;
    }
  }
  double took = now() - start;
  printf("burst: %ld files in %.3f s = %.0f files/s, %ld failed\n", n, took, n / took, failed);
  return failed ? 1 : 0;
}
