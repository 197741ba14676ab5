// LD_PRELOAD library for tests/bench/per_request_costs.py: counts the heap allocations of a
// process (malloc, calloc, aligned allocations; realloc separately) in any program, C or C++
// (operator new calls malloc). Signal SIGRTMIN+4 appends "pid allocations reallocs frees" to the
// file named by MALLOC_COUNTER_OUT when the process started (read at load time, because nginx
// clears its workers' environment). Counting costs one relaxed atomic add per call.
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void* __libc_malloc(size_t);
extern void* __libc_calloc(size_t, size_t);
extern void* __libc_realloc(void*, size_t);
extern void __libc_free(void*);
extern void* __libc_memalign(size_t, size_t);

static _Atomic unsigned long allocations, reallocs, frees;
static char out_path[512];

static void count(_Atomic unsigned long* counter) {
  atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
}

void* malloc(size_t n) {
  count(&allocations);
  return __libc_malloc(n);
}
void* calloc(size_t a, size_t b) {
  count(&allocations);
  return __libc_calloc(a, b);
}
void* realloc(void* p, size_t n) {
  count(&reallocs);
  return __libc_realloc(p, n);
}
void free(void* p) {
  if (p != NULL) count(&frees);
  __libc_free(p);
}
void* memalign(size_t alignment, size_t n) {
  count(&allocations);
  return __libc_memalign(alignment, n);
}
void* aligned_alloc(size_t alignment, size_t n) { return memalign(alignment, n); }
int posix_memalign(void** out, size_t alignment, size_t n) {
  void* p = memalign(alignment, n);
  if (p == NULL) return 12;  // ENOMEM
  *out = p;
  return 0;
}

static void report(int sig) {
  (void)sig;
  if (out_path[0] == '\0') return;
  int fd = open(out_path, O_WRONLY | O_APPEND | O_CREAT, 0666);
  if (fd < 0) return;
  char line[128];
  int len = snprintf(line, sizeof line, "%d %lu %lu %lu\n", (int)getpid(),
                     (unsigned long)allocations, (unsigned long)reallocs, (unsigned long)frees);
  if (len > 0) (void)!write(fd, line, (size_t)len);
  close(fd);
}

__attribute__((constructor)) static void init(void) {
  const char* path = getenv("MALLOC_COUNTER_OUT");
  if (path != NULL) strncpy(out_path, path, sizeof out_path - 1);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = report;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGRTMIN + 4, &sa, NULL);
}
