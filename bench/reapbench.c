// reapbench: the C side of the benchmark's memory-back runs (bench/runs.ts).
// Kills a victim through a pidfd, frees its memory with one method, and
// samples the system's free memory, the victim's RSS and the kernel's count
// of reaped pages meanwhile. Prints one JSON object on stdout.
//
//   reapbench kill   --pid P --method wait|mrelease|tryreap [--cap BYTES]
//                    [--release-pid Q --release-after-ms MS] [sampling options]
//   reapbench sample --pid P [--release-pid Q --release-after-ms MS] [sampling options]
//        samples while the caller kills and reaps; stdin lines: "mark" (the
//        caller is about to kill: look at the victim, answer "marked"),
//        "killed T" (it killed at CLOCK_MONOTONIC ns T: start the release
//        timer; sent at the kill only when there is a release timer, else
//        after the reaping, so that it wakes nothing meanwhile), "end" (it
//        is done reaping: look at the victim again);
//        EOF ends the sampling
//
// kill mode: --notify-kill 1 prints "killed" right after the kill and
// "reaped" when the method is done (live displays, and the caller's event
// loop measured meanwhile); without it nothing wakes the caller before the
// reaping is over, as nothing does in killAndReap's runs.
//
// Sampling options: --sample-cpu C (default 1) --sample-prio N (SCHED_FIFO,
// default 60: above spin.c's 50, so the sampler preempts the busy loop on the
// starved CPU and never competes with the reaper on its own CPU; 0 = normal)
// --sample-us US (default 1000) --settle-ms MS (sampling after the method
// ended, default 30) --timeout-ms MS (default 120000).
//
// A sample is cheap: MemFree from sysinfo(2) (no /proc/meminfo text) and
// the RSS through a file descriptor kept open (pread); the kernel's count
// (reap_dying_pages in the 16 KB /proc/vmstat) only every 32nd sample. The time
// spent taking samples is reported (samplerBusyNs), so its cost is visible.
// "ran" looks (victim/reap-sys.h: CPU time, context switches) are taken at
// the kill, when the busy loop is ended and when the reaping ended.
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/sysinfo.h>

#include "../victims/reap-sys.h"

static void die(const char *what) {
  fprintf(stderr, "reapbench: %s: %s\n", what, strerror(errno));
  exit(1);
}

// ---------------------------------------------------------------- options
static const char *mode;
static int opt_pid = -1, opt_release_pid = -1, opt_sample_cpu = 1, opt_sample_prio = 60, opt_notify_kill = 0;
static long opt_release_after_ms = -1, opt_sample_us = 1000, opt_settle_ms = 30, opt_timeout_ms = 120000;
static const char *opt_method = "tryreap";
static uint64_t opt_cap = 0;  // 0: no cap (SIZE_MAX)

static void parse(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: reapbench kill|sample --pid P [options] (see the source)\n");
    exit(2);
  }
  mode = argv[1];
  for (int i = 2; i < argc; i += 2) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) { fprintf(stderr, "reapbench: %s needs a value\n", a); exit(2); }
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
    else if (!strcmp(a, "--notify-kill")) opt_notify_kill = atoi(v);
    else { fprintf(stderr, "reapbench: unknown option %s\n", a); exit(2); }
  }
  if (opt_pid <= 0) { fprintf(stderr, "reapbench: --pid is required\n"); exit(2); }
}

// ---------------------------------------------------------------- sampling
struct sample {
  uint64_t t;
  int64_t rss_pages;  // -1: statm unreadable (the process is gone)
  int64_t free_kb;
  int64_t reaped_pages;  // reap_dying_pages of /proc/vmstat (-1 without series v3)
};

#define MAX_SAMPLES 400000
static struct sample *samples;
static atomic_long nsamples;
static atomic_int sampler_stop;
static int sampler_realtime, statm_fd = -1, vmstat_fd = -1;
static uint64_t sampler_busy_ns, sampler_start_ns, sampler_end_ns;

static int64_t pread_number(int fd, int field) {
  char buf[256];
  if (fd < 0) return -1;
  ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return -1;
  buf[n] = 0;
  long long a = -1, b = -1;
  if (sscanf(buf, "%lld %lld", &a, &b) < field + 1) return -1;
  return field ? b : a;
}

#define COUNTER_EVERY 32

// reap_dying_pages from /proc/vmstat, read through a kept fd; -1 without it.
static int64_t pread_reaped_pages(void) {
  static char buf[16384];
  if (vmstat_fd < 0) return -1;
  ssize_t n = pread(vmstat_fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return -1;
  buf[n] = 0;
  return reap_field_after(buf, "\nreap_dying_pages ");
}

static void take_sample(void) {
  long i = atomic_load(&nsamples);
  if (i >= MAX_SAMPLES) return;
  struct sample *s = &samples[i];
  struct sysinfo si;
  s->t = reap_now_ns();
  s->rss_pages = pread_number(statm_fd, 1);
  s->free_kb = sysinfo(&si) == 0 ? (int64_t)((uint64_t)si.freeram * si.mem_unit / 1024) : -1;
  // The 16 KB /proc/vmstat only every COUNTER_EVERY-th sample (and the
  // last): the curves need MemFree and the RSS every time, the kernel's
  // count only now and then; -1 in between (the report carries the last).
  s->reaped_pages = i % COUNTER_EVERY == 0 || atomic_load(&sampler_stop) ? pread_reaped_pages() : -1;
  sampler_busy_ns += reap_now_ns() - s->t;
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
  sampler_start_ns = reap_now_ns();
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
  sampler_end_ns = reap_now_ns();
  return NULL;
}

static pthread_t sampler_thread;
static void start_sampler(void) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/statm", opt_pid);
  statm_fd = open(path, O_RDONLY | O_CLOEXEC);
  vmstat_fd = open("/proc/vmstat", O_RDONLY | O_CLOEXEC);
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

// ---------------------------------------------------------------- looks at the victim
struct look {
  uint64_t t;  // 0: not taken
  struct reap_ran ran;
};
static struct look at_kill, at_release, at_end;

static void look(struct look *l) {
  l->ran = reap_read_ran(opt_pid);
  l->t = reap_now_ns();
}

// ---------------------------------------------------------------- the release timer
// Ends the busy loop that starves the victim (--release-pid) at kill time +
// --release-after-ms, from its own thread so the main thread can be blocked
// in a syscall meanwhile. The victim is looked at just before.
static uint64_t t_kill, t_released;
static pthread_t release_thread;
static int releasing;
static void *releaser(void *unused) {
  (void)unused;
  uint64_t at = t_kill + (uint64_t)opt_release_after_ms * 1000000ull;
  struct timespec ts = {.tv_sec = (time_t)(at / 1000000000ull), .tv_nsec = (long)(at % 1000000000ull)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
  look(&at_release);
  t_released = reap_now_ns();
  kill(opt_release_pid, SIGKILL);
  return NULL;
}

static void start_release_timer(void) {
  if (opt_release_pid <= 0 || opt_release_after_ms < 0) return;
  if (pthread_create(&release_thread, NULL, releaser, NULL) != 0) die("pthread_create");
  releasing = 1;
}

static void join_release_timer(void) {
  if (releasing) pthread_join(release_thread, NULL);
}

// ---------------------------------------------------------------- calls
struct call {
  uint64_t start, end;
  long ret;  // >= 0, or -errno
};
#define MAX_CALLS 2000000
static struct call *calls;
static long ncalls;

static long do_call_flags(long nr, int pidfd, unsigned int flags, uint64_t cap) {
  struct call *c = &calls[ncalls < MAX_CALLS ? ncalls : MAX_CALLS - 1];
  c->start = reap_now_ns();
  long ret = nr == SYS_process_mrelease ? syscall(nr, pidfd, 0) : syscall(nr, pidfd, flags, cap ? (size_t)cap : SIZE_MAX);
  c->end = reap_now_ns();
  c->ret = ret < 0 ? -errno : ret;
  if (ncalls < MAX_CALLS) ncalls++;
  return c->ret;
}

static long do_call(long nr, int pidfd, uint64_t cap) { return do_call_flags(nr, pidfd, 0, cap); }

static int exited(int pidfd) {
  struct pollfd p = {.fd = pidfd, .events = POLLIN};
  return poll(&p, 1, 0) == 1;
}

static uint64_t wait_exit(int pidfd, uint64_t deadline) {
  for (;;) {
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    uint64_t now = reap_now_ns();
    if (now >= deadline) return 0;
    int ready = poll(&p, 1, (int)((deadline - now) / 1000000) + 1);
    if (ready == 1) return reap_now_ns();
    if (ready < 0 && errno != EINTR) die("poll");
  }
}

// Samples for --settle-ms more, or until the victim is gone.
static void settle(void) {
  uint64_t until = reap_now_ns() + (uint64_t)opt_settle_ms * 1000000ull;
  while (reap_now_ns() < until) {
    long n = atomic_load(&nsamples);
    if (n > 0 && samples[n - 1].rss_pages < 0) break;
    usleep(1000);
  }
}

// ---------------------------------------------------------------- output
static void print_look(const char *name, struct look l) {
  printf("\"%s\":", name);
  if (!l.t) {
    printf("null,");
    return;
  }
  printf("{\"t\":%" PRIu64 ",\"ran\":", l.t);
  reap_print_ran(stdout, l.ran);
  printf("},");
}

static void print_json(const char *method, uint64_t t_exit, int64_t rss_before) {
  long n = atomic_load(&nsamples);
  printf("{\"mode\":\"%s\",\"method\":\"%s\",\"pid\":%d,\"cap\":%" PRIu64 ",", mode, method, opt_pid, opt_cap);
  printf("\"pageSize\":%ld,\"samplerRealtime\":%s,", sysconf(_SC_PAGESIZE), sampler_realtime ? "true" : "false");
  printf("\"samplerBusyNs\":%" PRIu64 ",\"samplerSpanNs\":%" PRIu64 ",\"sampleUs\":%ld,", sampler_busy_ns,
         sampler_end_ns - sampler_start_ns, opt_sample_us);
  printf("\"tKill\":%" PRIu64 ",\"tExit\":%" PRIu64 ",\"tReleased\":%" PRIu64 ",", t_kill, t_exit, t_released);
  printf("\"rssBefore\":%" PRId64 ",", rss_before);
  print_look("atKill", at_kill);
  print_look("atRelease", at_release);
  print_look("atEnd", at_end);
  // Samples: [t, rss pages, MemFree kB, reap_dying_pages]
  printf("\"samples\":[");
  for (long i = 0; i < n; i++) {
    printf("%s[%" PRIu64 ",%" PRId64 ",%" PRId64 ",%" PRId64 "]", i ? "," : "", samples[i].t, samples[i].rss_pages,
           samples[i].free_kb, samples[i].reaped_pages);
  }
  printf("],\"calls\":[");
  for (long i = 0; i < ncalls; i++) printf("%s[%" PRIu64 ",%" PRIu64 ",%ld]", i ? "," : "", calls[i].start, calls[i].end, calls[i].ret);
  printf("]}\n");
}

// ---------------------------------------------------------------- modes
static int mode_kill(void) {
  long nr = reap_syscall_nr();
  int is_wait = !strcmp(opt_method, "wait"), is_mrelease = !strcmp(opt_method, "mrelease");
  if (!is_wait && !is_mrelease && strcmp(opt_method, "tryreap")) {
    fprintf(stderr, "reapbench: unknown method %s\n", opt_method);
    return 2;
  }
  if (!is_wait && !is_mrelease && nr < 0) {
    fprintf(stderr, "reapbench: try_reap_dying_process not available\n");
    return 3;
  }
  int pidfd = (int)syscall(SYS_pidfd_open, opt_pid, 0);
  if (pidfd < 0) die("pidfd_open");
  int64_t rss_before = reap_rss_pages(opt_pid);
  start_sampler();
  usleep(3000);  // a few samples before the kill
  look(&at_kill);
  t_kill = reap_now_ns();
  // tryreap: the same first call as killAndReap's, try_reap_dying_process(pidfd,
  // TRY_REAP_KILL, cap), which kills and reaps; the others send SIGKILL.
  long first = 0;
  if (!is_wait && !is_mrelease) {
    first = do_call_flags(nr, pidfd, TRY_REAP_KILL, opt_cap);
    if (first < 0 && first != -EAGAIN && first != -EBUSY) {
      errno = (int)-first;
      die("try_reap_dying_process(pidfd, TRY_REAP_KILL, cap)");
    }
  } else if (syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0) != 0) die("pidfd_send_signal");
  uint64_t deadline = t_kill + (uint64_t)opt_timeout_ms * 1000000ull;
  if (opt_notify_kill) {
    printf("killed\n");  // for live displays; the JSON line comes last
    fflush(stdout);
  }
  start_release_timer();
  uint64_t t_exit = 0;
  if (is_wait) {
    t_exit = wait_exit(pidfd, deadline);
  } else if (is_mrelease) {
    do_call(SYS_process_mrelease, pidfd, 0);
  } else if (first != 0) {  // 0: the killing call found nothing left
    for (;;) {
      long ret = do_call(nr, pidfd, opt_cap);
      if (ret == -EBUSY || ret == -EAGAIN) {  // lock contended / walk not over: again at once
        if (reap_now_ns() > deadline) break;
        continue;
      }
      if (ret <= 0) break;  // 0: nothing left; ESRCH: gone; anything else: stop
    }
  }
  if (opt_notify_kill) {
    printf("reaped\n");
    fflush(stdout);
  }
  look(&at_end);
  settle();
  if (!t_exit && exited(pidfd)) t_exit = reap_now_ns();
  stop_sampler();
  join_release_timer();
  print_json(opt_method, t_exit, rss_before);
  return 0;
}

static int mode_sample(void) {
  int64_t rss_before = reap_rss_pages(opt_pid);
  start_sampler();
  printf("sampling\n");
  fflush(stdout);
  char line[128];
  while (fgets(line, sizeof line, stdin)) {
    if (!strncmp(line, "mark", 4)) {
      look(&at_kill);
      printf("marked\n");
      fflush(stdout);
    } else if (!strncmp(line, "killed ", 7)) {
      t_kill = strtoull(line + 7, NULL, 10);
      start_release_timer();
    } else if (!strncmp(line, "end", 3)) {
      look(&at_end);
    }
  }
  stop_sampler();
  join_release_timer();
  print_json("sample", 0, rss_before);
  return 0;
}

int main(int argc, char **argv) {
  parse(argc, argv);
  calls = calloc(MAX_CALLS, sizeof *calls);
  if (!calls) die("calloc");
  if (!strcmp(mode, "kill")) return mode_kill();
  if (!strcmp(mode, "sample")) return mode_sample();
  fprintf(stderr, "reapbench: unknown mode %s\n", mode);
  return 2;
}
