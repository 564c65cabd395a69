// The RPC topology in raw C: client -> relay -> server -> relay -> client, three processes,
// Unix socketpairs, N-byte messages; relay uses poll() on its two sockets (like the agent's
// one reader per connection). Prints round-trip p50/p99/p99.9 in microseconds (4 hops).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <poll.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/wait.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e6+t.tv_nsec/1e3;}
static int cmp(const void*a,const void*b){double x=*(double*)a,y=*(double*)b;return x<y?-1:x>y;}
int main(int argc,char**argv){int n=argc>1?atoi(argv[1]):20000,sz=argc>2?atoi(argv[2]):150;
 int a[2],b[2];socketpair(AF_UNIX,SOCK_STREAM,0,a);socketpair(AF_UNIX,SOCK_STREAM,0,b);char buf[65536];memset(buf,1,sizeof buf);
 if(fork()==0){close(a[0]);close(a[1]);close(b[0]);for(;;){int r=read(b[1],buf,sizeof buf);if(r<=0)_exit(0);write(b[1],buf,r);}}
 if(fork()==0){close(a[0]);close(b[1]);struct pollfd p[2]={{a[1],POLLIN},{b[0],POLLIN}};
  for(;;){poll(p,2,-1);if(p[0].revents){int r=read(a[1],buf,sizeof buf);if(r<=0)_exit(0);write(b[0],buf,r);}
   if(p[1].revents){int r=read(b[0],buf,sizeof buf);if(r<=0)_exit(0);write(a[1],buf,r);}}}
 close(a[1]);close(b[0]);close(b[1]);double*lat=malloc(sizeof(double)*n);
 for(int i=0;i<n+1000;i++){double t=now();write(a[0],buf,sz);int got=0;while(got<sz){int r=read(a[0],buf,sz-got);got+=r;}if(i>=1000)lat[i-1000]=now()-t;}
 close(a[0]);wait(0);wait(0);qsort(lat,n,sizeof(double),cmp);
 printf("raw relay (4 hops) %d B: p50 %.1f us p99 %.1f us p99.9 %.1f us (n=%d)\n",sz,lat[n/2],lat[n*99/100],lat[n*999/1000],n);}
