// reapbench: the C side of the benchmark. Kills a victim through a pidfd,
// frees its memory with one method, and samples the victim's RSS and the
// system's free memory meanwhile. Prints one JSON object on stdout.
//
//   reapbench kill   --pid P --method wait|mrelease|tryreap [--cap BYTES]
//                    [--release-pid Q --release-after-ms MS] [sampling options]
//   reapbench sample --pid P [sampling options]
//        samples until stdin is closed (the caller kills and reaps meanwhile)
//   reapbench busy   --pid P --cap BYTES --duration-ms MS [sampling options]
//        kills, then calls try_reap_dying_process back to back for MS and
//        records every call (EBUSY latency while the victim holds mmap_lock)
//   reapbench calls  --pid P --syscall tryreap0|mrelease --n N --batches B
//        the cost of one error-path syscall on a live process, per batch
//
// Sampling options: --sample-cpu C (default 1) --sample-prio N (SCHED_FIFO,
// default 60: above spin.c's 50, so the sampler preempts the busy loop on the
// starved CPU and never competes with the reaper on its own CPU; 0 = normal)
// --sample-us US (default 1000) --settle-ms MS (sampling after the method
// ended, default 30) --timeout-ms MS (default 120000).
//
// Times are CLOCK_MONOTONIC nanoseconds (the clock of Node's process.hrtime).
// try_reap_dying_process's number is read from /sys/kernel/mm/reap_dying/syscall_nr.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_process_mrelease
#define SYS_process_mrelease 448
#endif

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
  fprintf(stderr, "reapbench: %s: %s\n", what, strerror(errno));
  exit(1);
}

// ---------------------------------------------------------------- options
static const char *mode;
static int opt_pid = -1, opt_release_pid = -1, opt_sample_cpu = 1, opt_sample_prio = 60;
static long opt_release_after_ms = 0, opt_sample_us = 1000, opt_settle_ms = 30, opt_timeout_ms = 120000;
static long opt_duration_ms = 1000, opt_n = 10000, opt_batches = 5;
static const char *opt_method = "tryreap", *opt_syscall = "tryreap0";
static uint64_t opt_cap = 0;  // 0: no cap (SIZE_MAX)

static void parse(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: reapbench kill|sample|busy|calls --pid P [options] (see the source)\n");
    exit(2);
  }
  mode = argv[1];
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) { fprintf(stderr, "reapbench: %s needs a value\n", a); exit(2); }
    i++;
    if (!strcmp(a, "--pid")) opt_pid = atoi(v);
    else if (!strcmp(a, "--method")) opt_method = v;
    else if (!strcmp(a, "--cap")) opt_cap = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--release-pid")) opt_release_pid = atoi(v);
    else if (!strcmp(a, "--release-after-ms")) opt_release_after_ms = atol(v);
    else if (!strcmp(a, "--sample-cpu")) opt_sample_cpu = atoi(v);
    else if (!strcmp(a, "--sample-prio")) opt_sample_prio = atoi(v);
    else if (!strcmp(a, "--sample-us")) opt_sample_us = atol(v);
    else if (!strcmp(a, "--settle-ms")) opt_settle_ms = atol(v);
    else if (!strcmp(a, "--timeout-ms")) opt_timeout_ms = atol(v);
    else if (!strcmp(a, "--duration-ms")) opt_duration_ms = atol(v);
    else if (!strcmp(a, "--syscall")) opt_syscall = v;
    else if (!strcmp(a, "--n")) opt_n = atol(v);
    else if (!strcmp(a, "--batches")) opt_batches = atol(v);
    else { fprintf(stderr, "reapbench: unknown option %s\n", a); exit(2); }
  }
  if (opt_pid <= 0) { fprintf(stderr, "reapbench: --pid is required\n"); exit(2); }
}

static long try_reap_nr(void) {
  FILE *f = fopen("/sys/kernel/mm/reap_dying/syscall_nr", "r");
  long nr = -1;
  if (f) {
    if (fscanf(f, "%ld", &nr) != 1) nr = -1;
    fclose(f);
  }
  return nr;
}

// ---------------------------------------------------------------- sampling
struct sample {
  uint64_t t;
  int64_t rss_pages;  // -1: statm unreadable (the process is gone)
  int64_t avail_kb, free_kb;
};

#define MAX_SAMPLES 400000
static struct sample *samples;
static atomic_long nsamples;
static atomic_int sampler_stop;
static int sampler_realtime;

static int64_t read_rss_pages(int pid) {
  char path[64], buf[256];
  snprintf(path, sizeof path, "/proc/%d/statm", pid);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = 0;
  long long size, resident;
  if (sscanf(buf, "%lld %lld", &size, &resident) != 2) return -1;
  return resident;
}

static void read_meminfo(int64_t *avail_kb, int64_t *free_kb) {
  static char buf[8192];
  int fd = open("/proc/meminfo", O_RDONLY);
  *avail_kb = *free_kb = -1;
  if (fd < 0) return;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return;
  buf[n] = 0;
  char *p = strstr(buf, "MemFree:");
  if (p) *free_kb = strtoll(p + 8, NULL, 10);
  p = strstr(buf, "MemAvailable:");
  if (p) *avail_kb = strtoll(p + 13, NULL, 10);
}

static void take_sample(void) {
  long i = atomic_load(&nsamples);
  if (i >= MAX_SAMPLES) return;
  struct sample *s = &samples[i];
  s->t = now_ns();
  s->rss_pages = read_rss_pages(opt_pid);
  read_meminfo(&s->avail_kb, &s->free_kb);
  atomic_store(&nsamples, i + 1);
}

static void *sampler(void *unused) {
  (void)unused;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(opt_sample_cpu, &set);
  sched_setaffinity(0, sizeof set, &set);
  if (opt_sample_prio > 0) {
    struct sched_param param = {.sched_priority = opt_sample_prio};
    sampler_realtime = pthread_setschedparam(pthread_self(), SCHED_FIFO, &param) == 0;
  }
  struct timespec next;
  clock_gettime(CLOCK_MONOTONIC, &next);
  while (!atomic_load(&sampler_stop)) {
    take_sample();
    next.tv_nsec += opt_sample_us * 1000;
    while (next.tv_nsec >= 1000000000) {
      next.tv_nsec -= 1000000000;
      next.tv_sec++;
    }
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
  }
  take_sample();
  return NULL;
}

static pthread_t sampler_thread;
static void start_sampler(void) {
  samples = calloc(MAX_SAMPLES, sizeof *samples);
  if (!samples) die("calloc");
  if (pthread_create(&sampler_thread, NULL, sampler, NULL) != 0) die("pthread_create");
  // Wait for the first sample, so the series starts before the kill.
  while (atomic_load(&nsamples) == 0) usleep(100);
}

static void stop_sampler(void) {
  atomic_store(&sampler_stop, 1);
  pthread_join(sampler_thread, NULL);
}

// ---------------------------------------------------------------- the release timer
// Ends the busy loop that starves the victim (or whatever --release-pid is)
// at kill time + --release-after-ms, from its own thread so the main thread
// can be blocked in a syscall meanwhile.
static uint64_t t_kill, t_released;
static void *releaser(void *unused) {
  (void)unused;
  uint64_t at = t_kill + (uint64_t)opt_release_after_ms * 1000000ull;
  struct timespec ts = {.tv_sec = (time_t)(at / 1000000000ull), .tv_nsec = (long)(at % 1000000000ull)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
  t_released = now_ns();
  kill(opt_release_pid, SIGKILL);
  return NULL;
}

// ---------------------------------------------------------------- calls
struct call {
  uint64_t start, end;
  long ret;  // >= 0, or -errno
};
#define MAX_CALLS 2000000
static struct call *calls;
static long ncalls;

static long do_call(long nr, int pidfd, uint64_t cap) {
  struct call *c = &calls[ncalls < MAX_CALLS ? ncalls : MAX_CALLS - 1];
  c->start = now_ns();
  long ret = syscall(nr, pidfd, 0, cap ? (size_t)cap : SIZE_MAX);
  c->end = now_ns();
  c->ret = ret < 0 ? -errno : ret;
  if (ncalls < MAX_CALLS) ncalls++;
  return c->ret;
}

static int open_pidfd(int pid) {
  int fd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (fd < 0) die("pidfd_open");
  return fd;
}

static int exited(int pidfd) {
  struct pollfd p = {.fd = pidfd, .events = POLLIN};
  return poll(&p, 1, 0) == 1;
}

static uint64_t wait_exit(int pidfd, uint64_t deadline) {
  for (;;) {
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    uint64_t now = now_ns();
    if (now >= deadline) return 0;
    int ready = poll(&p, 1, (int)((deadline - now) / 1000000) + 1);
    if (ready == 1) return now_ns();
    if (ready < 0 && errno != EINTR) die("poll");
  }
}

// Samples for --settle-ms more, or until the victim is gone.
static void settle(void) {
  uint64_t until = now_ns() + (uint64_t)opt_settle_ms * 1000000ull;
  while (now_ns() < until) {
    long n = atomic_load(&nsamples);
    if (n > 0 && samples[n - 1].rss_pages < 0) break;
    usleep(1000);
  }
}

// ---------------------------------------------------------------- output
static void print_json(const char *method, uint64_t t_exit, int64_t rss_before, long busy_calls) {
  printf("{\"mode\":\"%s\",\"method\":\"%s\",\"pid\":%d,\"cap\":%" PRIu64 ",", mode, method, opt_pid, opt_cap);
  printf("\"pageSize\":%ld,\"samplerRealtime\":%s,", sysconf(_SC_PAGESIZE), sampler_realtime ? "true" : "false");
  printf("\"tKill\":%" PRIu64 ",\"tExit\":%" PRIu64 ",\"tReleased\":%" PRIu64 ",", t_kill, t_exit, t_released);
  printf("\"rssBefore\":%" PRId64 ",\"busyCalls\":%ld,", rss_before, busy_calls);
  printf("\"samples\":[");
  long n = atomic_load(&nsamples);
  for (long i = 0; i < n; i++) {
    printf("%s[%" PRIu64 ",%" PRId64 ",%" PRId64 ",%" PRId64 "]", i ? "," : "", samples[i].t, samples[i].rss_pages,
           samples[i].avail_kb, samples[i].free_kb);
  }
  printf("],\"calls\":[");
  for (long i = 0; i < ncalls; i++) {
    printf("%s[%" PRIu64 ",%" PRIu64 ",%ld]", i ? "," : "", calls[i].start, calls[i].end, calls[i].ret);
  }
  printf("]}\n");
}

// ---------------------------------------------------------------- modes
static int mode_kill(void) {
  long nr = try_reap_nr();
  int is_wait = !strcmp(opt_method, "wait"), is_mrelease = !strcmp(opt_method, "mrelease");
  if (!is_wait && !is_mrelease && strcmp(opt_method, "tryreap")) {
    fprintf(stderr, "reapbench: unknown method %s\n", opt_method);
    return 2;
  }
  if (!is_wait && !is_mrelease && nr < 0) {
    fprintf(stderr, "reapbench: try_reap_dying_process not available\n");
    return 3;
  }
  int pidfd = open_pidfd(opt_pid);
  int64_t rss_before = read_rss_pages(opt_pid);
  start_sampler();
  usleep(3000);  // a few samples before the kill
  uint64_t deadline_timeout;
  pthread_t release_thread;
  t_kill = now_ns();
  if (syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0) != 0) die("pidfd_send_signal");
  deadline_timeout = t_kill + (uint64_t)opt_timeout_ms * 1000000ull;
  printf("killed\n");  // for live displays; the JSON line comes last
  fflush(stdout);
  if (opt_release_pid > 0 && pthread_create(&release_thread, NULL, releaser, NULL) != 0) die("pthread_create");
  uint64_t t_exit = 0;
  long busy = 0;
  if (is_wait) {
    t_exit = wait_exit(pidfd, deadline_timeout);
  } else if (is_mrelease) {
    do_call(SYS_process_mrelease, pidfd, 0);
    // process_mrelease takes no size: do_call passed SIZE_MAX as its (ignored) third argument
  } else {
    for (;;) {
      long ret = do_call(nr, pidfd, opt_cap);
      if (ret == -EBUSY) {
        busy++;
        if (now_ns() > deadline_timeout) break;
        continue;
      }
      if (ret == -EAGAIN) continue;  // nothing unmapped by this call, walk not over
      if (ret <= 0) break;  // 0: nothing left; ESRCH: gone; anything else: stop
    }
  }
  settle();
  if (!t_exit && exited(pidfd)) t_exit = now_ns();
  stop_sampler();
  if (opt_release_pid > 0) pthread_join(release_thread, NULL);
  print_json(opt_method, t_exit, rss_before, busy);
  return 0;
}

static int mode_sample(void) {
  start_sampler();
  printf("sampling\n");
  fflush(stdout);
  char buf[256];
  while (read(0, buf, sizeof buf) > 0) {
  }
  stop_sampler();
  print_json("sample", 0, -1, 0);
  return 0;
}

static int mode_busy(void) {
  long nr = try_reap_nr();
  if (nr < 0) {
    fprintf(stderr, "reapbench: try_reap_dying_process not available\n");
    return 3;
  }
  int pidfd = open_pidfd(opt_pid);
  int64_t rss_before = read_rss_pages(opt_pid);
  start_sampler();
  t_kill = now_ns();
  if (syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0) != 0) die("pidfd_send_signal");
  uint64_t until = t_kill + (uint64_t)opt_duration_ms * 1000000ull;
  long busy = 0;
  while (now_ns() < until) {
    long ret = do_call(nr, pidfd, opt_cap);
    if (ret == -EBUSY) busy++;
    else if (ret <= 0) break;
  }
  stop_sampler();
  print_json("busy", 0, rss_before, busy);
  return 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static int mode_calls(void) {
  long nr;
  uint64_t cap;
  if (!strcmp(opt_syscall, "tryreap0")) {
    nr = try_reap_nr();
    cap = 0;  // max_bytes 0: the probe (on a live process: EPERM)
    if (nr < 0) {
      fprintf(stderr, "reapbench: try_reap_dying_process not available\n");
      return 3;
    }
  } else if (!strcmp(opt_syscall, "mrelease")) {
    nr = SYS_process_mrelease;
    cap = 0;
  } else {
    fprintf(stderr, "reapbench: unknown syscall %s\n", opt_syscall);
    return 2;
  }
  int pidfd = open_pidfd(opt_pid);
  double *per_call = calloc(opt_batches, sizeof *per_call);
  long first_result = 0;
  for (long b = 0; b < opt_batches; b++) {
    uint64_t start = now_ns();
    for (long i = 0; i < opt_n; i++) {
      long ret = nr == SYS_process_mrelease ? syscall(nr, pidfd, 0) : syscall(nr, pidfd, 0, (size_t)cap);
      if (i == 0 && b == 0) first_result = ret < 0 ? -errno : ret;
    }
    per_call[b] = (double)(now_ns() - start) / (double)opt_n;
  }
  printf("{\"mode\":\"calls\",\"syscall\":\"%s\",\"n\":%ld,\"result\":%ld,\"nsPerCall\":[", opt_syscall, opt_n, first_result);
  for (long b = 0; b < opt_batches; b++) printf("%s%.1f", b ? "," : "", per_call[b]);
  qsort(per_call, opt_batches, sizeof *per_call, cmp_double);
  printf("],\"median\":%.1f}\n", per_call[opt_batches / 2]);
  return 0;
}

int main(int argc, char **argv) {
  parse(argc, argv);
  calls = calloc(MAX_CALLS, sizeof *calls);
  if (!calls) die("calloc");
  if (!strcmp(mode, "kill")) return mode_kill();
  if (!strcmp(mode, "sample")) return mode_sample();
  if (!strcmp(mode, "busy")) return mode_busy();
  if (!strcmp(mode, "calls")) return mode_calls();
  fprintf(stderr, "reapbench: unknown mode %s\n", mode);
  return 2;
}
