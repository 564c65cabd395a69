// The RPC topology in raw C: client -> relay -> server -> relay -> client, three processes,
// Unix socketpairs, N-byte messages; relay uses poll() on its two sockets (like the agent's
// one reader per connection). Prints round-trip p50/p99/p99.9 in microseconds (4 hops).
// usage: relay [round trips=20000] [bytes=150] [relay mode=0] [client mode=0]
// mode 0: sleep until data (poll(-1), blocking read); 1: poll without waiting, in a loop;
// 2: as 1, with sched_yield() after each poll that found nothing (what SocketReactor.BusyPoll does).
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <poll.h>
#include <sched.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/wait.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e6+t.tv_nsec/1e3;}
static int cmp(const void*a,const void*b){double x=*(double*)a,y=*(double*)b;return x<y?-1:x>y;}
int main(int argc,char**argv){int n=argc>1?atoi(argv[1]):20000,sz=argc>2?atoi(argv[2]):150;
 int rmode=argc>3?atoi(argv[3]):0,cmode=argc>4?atoi(argv[4]):0;
 int a[2],b[2];socketpair(AF_UNIX,SOCK_STREAM,0,a);socketpair(AF_UNIX,SOCK_STREAM,0,b);char buf[65536];memset(buf,1,sizeof buf);
 if(fork()==0){close(a[0]);close(a[1]);close(b[0]);for(;;){int r=read(b[1],buf,sizeof buf);if(r<=0)_exit(0);write(b[1],buf,r);}}
 if(fork()==0){close(a[0]);close(b[1]);struct pollfd p[2]={{a[1],POLLIN},{b[0],POLLIN}};
  for(;;){if(rmode==0)poll(p,2,-1);else if(poll(p,2,0)==0){if(rmode==2)sched_yield();continue;}
   if(p[0].revents){int r=read(a[1],buf,sizeof buf);if(r<=0)_exit(0);write(b[0],buf,r);}
   if(p[1].revents){int r=read(b[0],buf,sizeof buf);if(r<=0)_exit(0);write(a[1],buf,r);}}}
 close(a[1]);close(b[0]);close(b[1]);double*lat=malloc(sizeof(double)*n);
 for(int i=0;i<n+1000;i++){double t=now();write(a[0],buf,sz);int got=0;
  while(got<sz){int r=cmode==0?read(a[0],buf,sz-got):recv(a[0],buf,sz-got,MSG_DONTWAIT);if(r<=0){if(cmode==2)sched_yield();continue;}got+=r;}
  if(i>=1000)lat[i-1000]=now()-t;}
 close(a[0]);wait(0);wait(0);qsort(lat,n,sizeof(double),cmp);
 printf("raw relay (4 hops) %d B, relay mode %d, client mode %d: p50 %.1f us p99 %.1f us p99.9 %.1f us (n=%d)\n",sz,rmode,cmode,lat[n/2],lat[n*99/100],lat[n*999/1000],n);}
