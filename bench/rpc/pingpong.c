// Raw Unix-socket ping-pong between two processes, blocking read/write, N-byte messages.
// Prints round-trip p50/p99 in microseconds. One round trip = 2 hops (send+wake each way).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/wait.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e6+t.tv_nsec/1e3;}
static int cmp(const void*a,const void*b){double x=*(double*)a,y=*(double*)b;return x<y?-1:x>y;}
int main(int argc,char**argv){int n=argc>1?atoi(argv[1]):20000,sz=argc>2?atoi(argv[2]):150;
 int sv[2];socketpair(AF_UNIX,SOCK_STREAM,0,sv);char buf[65536];memset(buf,1,sizeof buf);
 if(fork()==0){close(sv[0]);for(;;){int r=read(sv[1],buf,sz);if(r<=0)_exit(0);write(sv[1],buf,r);}}
 close(sv[1]);double*lat=malloc(sizeof(double)*n);
 for(int i=0;i<n+1000;i++){double t=now();write(sv[0],buf,sz);int got=0;while(got<sz){int r=read(sv[0],buf,sz-got);got+=r;}if(i>=1000)lat[i-1000]=now()-t;}
 close(sv[0]);wait(0);qsort(lat,n,sizeof(double),cmp);
 printf("raw unix ping-pong %d B: p50 %.1f us p99 %.1f us p99.9 %.1f us (n=%d)\n",sz,lat[n/2],lat[n*99/100],lat[n*999/1000],n);}
