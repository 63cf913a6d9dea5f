// bounds: the C side of the benchmark's `bounds` part (bench/bounds.ts).
// One run = one victim: fork it, build its address-space layout, freeze it
// in a cgroup v1 freezer, SIGKILL it through a pidfd, free its memory with
// try_reap_dying_process (calls of a given cap until the call that returns 0)
// or with one process_mrelease, time every call, check that the victim did
// not run between the kill and the end, thaw it, wait for it. Prints one
// JSON object on stdout.
//
//   bounds run --freezer DIR --method tryreap|kill|mrelease [--cap BYTES]
//              [layout options] [--build-cpu B] [--cpu C] [--max-calls N]
//              [--timeout-ms MS] [--reapers 2]
//        --method kill: no SIGKILL first; the first call is
//        try_reap_dying_process(pidfd, TRY_REAP_KILL, cap) on the live
//        (frozen) victim, which kills and reaps in one call (series v3);
//        the loop then goes on without the flag until the 0
//        --reapers 2: a second thread, on the other CPU, calls try_reap on
//        the same pidfd at the same time (started before the kill, spinning
//        until it); the run ends when both have seen the 0
//   bounds clones --freezer DIR [layout options] [--build-cpu B] [--cpu C]
//                 [--own-pages 1]
//        builds one victim, then for each line "reap CAP" on stdin forks a
//        clone of it (fork(): the clone maps the same pages, copy-on-write),
//        freezes, kills and reaps the clone with calls of CAP bytes (0: no
//        cap) and prints one JSON line; EOF ends. Without --own-pages the
//        pages stay mapped by the parent, so the calls unmap without
//        freeing. With --own-pages 1 each clone first drops its shared
//        pages of the --anon, --thp and --file regions (MADV_DONTNEED) and
//        populates them again: it owns fresh pages (THPs again where the
//        region has MADV_HUGEPAGE), which its reaping really frees.
//   bounds stall --freezer DIR --alloc-mib N [--victim-mib V] [--cpu C]
//              [--build-cpu B] [--timeout-ms MS]
//        the shrinker part (bench/shrinker.ts): with --victim-mib, a victim
//        of V MiB of 4 KiB anonymous pages (populated by two threads, one
//        per CPU, for speed; joined before the freeze) is frozen and killed
//        by one try_reap_dying_process(pidfd, TRY_REAP_KILL, 0): killed,
//        doomed, nothing reaped. Then a child on CPU C maps N MiB of 4 KiB
//        anonymous pages and populates them (MADV_POPULATE_WRITE), timed
//        from before the mmap to the end of the populate; it keeps them
//        while the victim and /proc/vmstat are looked at again. Without
//        --victim-mib: the same allocation with memory free. Whatever
//        /sys/kernel/mm/reap_dying/shrinker_enabled says is the driver's.
//
// Two phases, so that the driver can build victims while none is measured:
// the victim is built on CPU B (default: C) and frozen in its own cgroup
// DIR/bounds-<pid> (DIR: a cgroup v1 freezer group), then this program
// prints "frozen" and waits for a line on stdin; on it, it moves to CPU C
// (default 1) and kills and reaps. EOF on stdin instead: it kills the victim
// and exits 1.
//
// Layout of the victim (any combination; mapped in this order):
//   --reserve-gib G  an empty PROT_NONE reservation of G GiB (as Go, JVMs,
//                    ASan, V8 make), never touched
//   --anon MIB       private anonymous 4 KiB pages (MADV_NOHUGEPAGE), all written
//   --thp MIB        private anonymous, 2 MiB aligned, MADV_HUGEPAGE, written
//   --file MIB       MAP_PRIVATE of an unlinked tmpfs file (/dev/shm), every
//                    page written (copy-on-write anonymous copies)
//   --file-path F    with --file: map this existing file instead (its page
//                    cache outlives the victim: all the victim holds is its
//                    copies, which reaping returns)
//   --sparse-mib MIB a MADV_NOHUGEPAGE region with one page written per 2 MiB
//   --vmas N --vma-kib K
//                    N adjacent VMAs of K KiB of 4 KiB pages, all written, with
//                    alternating protections so that they do not merge
//
// --cap 0 = no cap (SIZE_MAX). The victim is frozen before the kill: a
// killed task in a frozen v1 cgroup stays frozen, so nothing but the reaper
// frees its memory.
// "ran" compares the victim's utime+stime, voluntary and involuntary context
// switches and se.sum_exec_runtime (/proc/PID/sched, if present) read before
// the kill with the same read after the last call.
//
// EAGAIN (walk not over, nothing unmapped) and EBUSY (mmap_lock contended)
// are called again at once; 0 ends the reaping, and one more call checks
// that 0 stays 0. try_reap_dying_process's number is read from
// /sys/kernel/mm/reap_dying/syscall_nr. Times are CLOCK_MONOTONIC ns.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../victims/reap-sys.h"

#define KIB 1024UL
#define MIB (1024UL * KIB)
#define GIB (1024UL * MIB)
#define PMD_BYTES (2 * MIB)

static pid_t victim, parent_victim;  // parent_victim: the clones' parent
static char group[2048];  // the victim's freezer cgroup
static void thaw(void);

// Fails the run; a victim already forked is killed and thawed so that it goes.
static void die(const char *what) {
  fprintf(stderr, "bounds: %s: %s\n", what, strerror(errno));
  if (victim > 0) {
    kill(victim, SIGKILL);
    thaw();
    waitpid(victim, NULL, 0);
  }
  if (parent_victim > 0) {
    kill(parent_victim, SIGKILL);
    waitpid(parent_victim, NULL, 0);
  }
  if (group[0]) rmdir(group);
  exit(1);
}

// ---------------------------------------------------------------- options
static const char *opt_freezer, *opt_method = "tryreap", *opt_file_path, *opt_mode;
static uint64_t opt_cap;  // 0: SIZE_MAX
static unsigned long opt_reserve_gib, opt_anon, opt_thp, opt_file, opt_sparse, opt_vmas, opt_vma_kib = 4;
static int opt_cpu = 1, opt_build_cpu = -1;
static long opt_max_calls = 4000000, opt_timeout_ms = 120000;
static int opt_reapers = 1, opt_own_pages;
static unsigned long opt_victim_mib, opt_alloc_mib;

static void parse(int argc, char **argv) {
  if (argc < 2 || (strcmp(argv[1], "run") && strcmp(argv[1], "clones") && strcmp(argv[1], "stall"))) {
    fprintf(stderr, "usage: bounds run|clones|stall --freezer GROUP [--method tryreap|kill|mrelease] [--cap BYTES] [layout] (see the source)\n");
    exit(2);
  }
  opt_mode = argv[1];
  for (int i = 2; i < argc; i += 2) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) { fprintf(stderr, "bounds: %s needs a value\n", a); exit(2); }
    if (!strcmp(a, "--freezer")) opt_freezer = v;
    else if (!strcmp(a, "--method")) opt_method = v;
    else if (!strcmp(a, "--cap")) opt_cap = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--reserve-gib")) opt_reserve_gib = strtoul(v, NULL, 10);
    else if (!strcmp(a, "--anon")) opt_anon = strtoul(v, NULL, 10);
    else if (!strcmp(a, "--thp")) opt_thp = strtoul(v, NULL, 10);
    else if (!strcmp(a, "--file")) opt_file = strtoul(v, NULL, 10);
    else if (!strcmp(a, "--file-path")) opt_file_path = v;
    else if (!strcmp(a, "--sparse-mib")) opt_sparse = strtoul(v, NULL, 10);
    else if (!strcmp(a, "--vmas")) opt_vmas = strtoul(v, NULL, 10);
    else if (!strcmp(a, "--vma-kib")) opt_vma_kib = strtoul(v, NULL, 10);
    else if (!strcmp(a, "--cpu")) opt_cpu = atoi(v);
    else if (!strcmp(a, "--build-cpu")) opt_build_cpu = atoi(v);
    else if (!strcmp(a, "--max-calls")) opt_max_calls = atol(v);
    else if (!strcmp(a, "--timeout-ms")) opt_timeout_ms = atol(v);
    else if (!strcmp(a, "--reapers")) opt_reapers = atoi(v);
    else if (!strcmp(a, "--victim-mib")) opt_victim_mib = strtoul(v, NULL, 10);
    else if (!strcmp(a, "--alloc-mib")) opt_alloc_mib = strtoul(v, NULL, 10);
    else if (!strcmp(a, "--own-pages")) opt_own_pages = atoi(v);
    else { fprintf(stderr, "bounds: unknown option %s\n", a); exit(2); }
  }
  if (!opt_freezer) { fprintf(stderr, "bounds: --freezer is required\n"); exit(2); }
  if (opt_build_cpu < 0) opt_build_cpu = opt_cpu;
  if (strcmp(opt_method, "tryreap") && strcmp(opt_method, "kill") && strcmp(opt_method, "mrelease")) {
    fprintf(stderr, "bounds: unknown method %s\n", opt_method);
    exit(2);
  }
  if (opt_reapers < 1 || opt_reapers > 2) { fprintf(stderr, "bounds: --reapers is 1 or 2\n"); exit(2); }
  if (opt_vma_kib == 0 || opt_vma_kib % 4) { fprintf(stderr, "bounds: --vma-kib must be a multiple of 4\n"); exit(2); }
  if (!strcmp(opt_mode, "stall") && !opt_alloc_mib) { fprintf(stderr, "bounds: stall needs --alloc-mib\n"); exit(2); }
}

// ---------------------------------------------------------------- the victim
static void populate(char *p, size_t bytes) {
  long page = sysconf(_SC_PAGESIZE);
  // Write-faults every page from the kernel (no trap per page: faster under
  // TCG); a private file page gets its copy-on-write anonymous copy.
  if (madvise(p, bytes, MADV_POPULATE_WRITE) != 0) {
    if (errno != EINVAL) die("madvise(MADV_POPULATE_WRITE)");
    for (size_t off = 0; off < bytes; off += page) p[off] = 1;  // before Linux 5.14: fault each page
  }
}

static char *map_anon(size_t bytes, int advice) {
  char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) die("mmap");
  if (madvise(p, bytes, advice) != 0) die("madvise");
  return p;
}

static char *reserve_addr;

// The populated --anon, --thp and --file regions (clones --own-pages renews them).
static struct { char *p; size_t bytes; } owned[3];
static int nowned;
static void note_owned(char *p, size_t bytes) { owned[nowned++] = (typeof(owned[0])){p, bytes}; }

static void build_victim(void) {
  if (opt_reserve_gib) {
    reserve_addr = mmap(NULL, opt_reserve_gib * GIB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (reserve_addr == MAP_FAILED) die("mmap reservation");
  }
  if (opt_anon) {
    char *p = map_anon(opt_anon * MIB, MADV_NOHUGEPAGE);
    populate(p, opt_anon * MIB);
    note_owned(p, opt_anon * MIB);
  }
  if (opt_thp) {
    size_t bytes = (opt_thp * MIB + PMD_BYTES - 1) & ~(PMD_BYTES - 1);
    char *raw = mmap(NULL, bytes + PMD_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) die("mmap thp");
    char *p = (char *)(((uintptr_t)raw + PMD_BYTES - 1) & ~(PMD_BYTES - 1));
    if (p > raw) munmap(raw, p - raw);
    munmap(p + bytes, raw + PMD_BYTES - p);
    if (madvise(p, bytes, MADV_HUGEPAGE) != 0) die("madvise(MADV_HUGEPAGE)");
    populate(p, bytes);
    note_owned(p, bytes);
  }
  if (opt_file) {
    char path[] = "/dev/shm/bounds-victim-XXXXXX";
    int fd = opt_file_path ? open(opt_file_path, O_RDONLY) : mkstemp(path);
    if (fd < 0) die(opt_file_path ? opt_file_path : "mkstemp");
    struct stat st;
    if (opt_file_path && (fstat(fd, &st) != 0 || (unsigned long)st.st_size < opt_file * MIB)) {
      errno = EINVAL;
      die("--file-path is smaller than --file");
    }
    if (!opt_file_path && ftruncate(fd, (off_t)(opt_file * MIB)) != 0) die("ftruncate");
    char *p = mmap(NULL, opt_file * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) die("mmap file");
    if (!opt_file_path) unlink(path);
    close(fd);
    populate(p, opt_file * MIB);
    note_owned(p, opt_file * MIB);
  }
  if (opt_sparse) {
    char *p = map_anon(opt_sparse * MIB, MADV_NOHUGEPAGE);
    for (size_t off = 0; off < opt_sparse * MIB; off += PMD_BYTES) p[off] = 1;
  }
  if (opt_vmas) {
    size_t each = opt_vma_kib * KIB, bytes = opt_vmas * each;
    char *p = map_anon(bytes, MADV_NOHUGEPAGE);
    populate(p, bytes);
    for (unsigned long i = 1; i < opt_vmas; i += 2) {
      if (mprotect(p + i * each, each, PROT_READ) != 0) die("mprotect");
    }
  }
}

// ---------------------------------------------------------------- /proc and /sys
static int write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY);
  int ok = fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text);
  if (fd >= 0) close(fd);
  return ok ? 0 : -1;
}

static long long smaps_kb(int pid, const char *key) {
  static char buf[8192];
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/smaps_rollup", pid);
  return reap_read_text(path, buf, sizeof buf) > 0 ? reap_field_after(buf, key) : -1;
}

static long count_vmas(int pid) {
  char path[64], buf[65536];
  snprintf(path, sizeof path, "/proc/%d/maps", pid);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -1;
  long lines = 0;
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0)
    for (ssize_t i = 0; i < n; i++) lines += buf[i] == '\n';
  close(fd);
  return lines;
}

static int frozen(void) {
  char path[4096], buf[64];
  snprintf(path, sizeof path, "%s/freezer.state", group);
  return reap_read_text(path, buf, sizeof buf) > 0 && !strncmp(buf, "FROZEN", 6);
}

// CPU `cpu`, modulo the CPUs online (one vCPU under scripts/vm --icount: all on CPU 0).
static void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu % (int)sysconf(_SC_NPROCESSORS_ONLN), &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) die("sched_setaffinity");
}

static void make_group(void) {
  if (snprintf(group, sizeof group, "%s/bounds-%d", opt_freezer, (int)getpid()) >= (int)sizeof group) {
    group[0] = 0;
    errno = ENAMETOOLONG;
    die(opt_freezer);
  }
  if (mkdir(group, 0755) != 0) {
    group[0] = 0;
    die("mkdir (freezer cgroup)");
  }
}

static void freeze(int pid) {
  char path[4096], text[32];
  if (!group[0]) make_group();
  snprintf(path, sizeof path, "%s/cgroup.procs", group);
  snprintf(text, sizeof text, "%d", pid);
  if (write_file(path, text) != 0) die(path);
  snprintf(path, sizeof path, "%s/freezer.state", group);
  if (write_file(path, "FROZEN") != 0) die(path);
  for (uint64_t until = reap_now_ns() + 10000000000ull; !frozen(); usleep(1000)) {
    errno = ETIMEDOUT;
    if (reap_now_ns() > until) die("freezing the victim");
  }
}

static void thaw(void) {
  char path[4096];
  snprintf(path, sizeof path, "%s/freezer.state", group);
  write_file(path, "THAWED");
}

// What else the kernel did meanwhile (page migration, compaction, reclaim).
static const char *vmstat_keys[] = {"pgmigrate_success", "compact_stall", "compact_migrate_scanned", "pgscan_kswapd", "thp_collapse_alloc"};
#define NVMSTAT (sizeof vmstat_keys / sizeof *vmstat_keys)

// keys[i]'s count in /proc/vmstat into out[i] (-1 if missing).
static void read_vmstat_keys(const char **keys, size_t n, long long *out) {
  static char buf[16384];
  char key[64];
  int ok = reap_read_text("/proc/vmstat", buf, sizeof buf) > 0;
  for (size_t i = 0; i < n; i++) {
    snprintf(key, sizeof key, "\n%s ", keys[i]);
    out[i] = ok ? reap_field_after(buf, key) : -1;
  }
}

static void read_vmstat(long long *out) { read_vmstat_keys(vmstat_keys, NVMSTAT, out); }

// The kernel's own counts (series v3: vm events; -1 without them).
struct counters {
  long long calls, pages_reaped, busy;
};

static struct counters read_counters(void) {
  static char buf[16384];
  if (reap_read_text("/proc/vmstat", buf, sizeof buf) <= 0) return (struct counters){-1, -1, -1};
  return (struct counters){
      reap_field_after(buf, "\nreap_dying_calls "),
      reap_field_after(buf, "\nreap_dying_pages "),
      reap_field_after(buf, "\nreap_dying_busy "),
  };
}

// ---------------------------------------------------------------- calls
struct call {
  uint64_t ns;
  long ret;  // bytes, or -errno
};
static struct call *calls;
static long ncalls;

static uint64_t last_end;  // when the last timed call returned

static long timed_flags(long nr, int pidfd, unsigned int flags, size_t cap) {
  uint64_t start = reap_now_ns();
  long ret = nr == SYS_process_mrelease ? syscall(nr, pidfd, 0) : syscall(nr, pidfd, flags, cap);
  uint64_t end = last_end = reap_now_ns();
  ret = ret < 0 ? -errno : ret;
  if (ncalls < opt_max_calls) calls[ncalls++] = (struct call){end - start, ret};
  return ret;
}

static long timed(long nr, int pidfd, size_t cap) { return timed_flags(nr, pidfd, 0, cap); }

// A fixed piece of user-space work.
static void spin_work(unsigned long n) {
  for (volatile unsigned long i = 0; i < n; i++) {
  }
}

// A fixed piece of user-space work, timed: the best of three. Under QEMU TCG
// on a busy host the vCPU thread may share a host core; this shows how fast
// the vCPU ran just before the kill and just after the last call.
static uint64_t calibrate(void) {
  uint64_t best = UINT64_MAX;
  for (int round = 0; round < 3; round++) {
    uint64_t start = reap_now_ns();
    spin_work(200000);
    uint64_t ns = reap_now_ns() - start;
    if (ns < best) best = ns;
  }
  return best;
}

// How much two vCPUs can work at once right now (--reapers 2, before the
// kill): a fixed user-space loop of 2 W on this CPU alone, then W on each
// CPU at the same time (wall until both are done). Under QEMU TCG on a busy
// host the two vCPU threads may not get two host cores: then no two
// reapers can go faster than one, whatever the kernel does.
#define CONTROL_LOOPS 20000000UL

struct control_half {
  int cpu;
  atomic_int ready, go;
  uint64_t end;
};

static void *control_other(void *arg) {
  struct control_half *h = arg;
  pin(h->cpu);
  atomic_store(&h->ready, 1);
  while (!atomic_load(&h->go)) {
  }
  spin_work(CONTROL_LOOPS);
  h->end = reap_now_ns();
  return NULL;
}

static void parallel_control(int other_cpu, uint64_t *one_ns, uint64_t *two_ns) {
  uint64_t t0 = reap_now_ns();
  spin_work(2 * CONTROL_LOOPS);
  *one_ns = reap_now_ns() - t0;
  struct control_half h = {.cpu = other_cpu};
  pthread_t thread;
  if (pthread_create(&thread, NULL, control_other, &h) != 0) die("pthread_create");
  while (!atomic_load(&h.ready)) {
  }
  t0 = reap_now_ns();
  atomic_store(&h.go, 1);
  spin_work(CONTROL_LOOPS);
  uint64_t end = reap_now_ns();
  pthread_join(thread, NULL);
  *two_ns = (h.end > end ? h.end : end) - t0;
}

// ---------------------------------------------------------------- output
static void print_ran(const char *name, struct reap_ran r) {
  printf("\"%s\":", name);
  reap_print_ran(stdout, r);
}

// The second reaper of --reapers 2: the same loop on the other CPU, counted
// apart (its calls are not timed one by one).
struct second_reaper {
  long nr;
  int pidfd, cpu;
  size_t cap;
  atomic_int go;
  long long bytes;
  long calls, error;
  uint64_t last_bytes_ns;  // when its last call that returned bytes returned
};

static void *second_reaper(void *arg) {
  struct second_reaper *h = arg;
  pin(h->cpu);  // this thread only
  while (!atomic_load(&h->go)) {
  }
  for (;;) {
    long ret = syscall(h->nr, h->pidfd, 0, h->cap);
    h->calls++;
    if (ret > 0) {
      h->bytes += ret;
      h->last_bytes_ns = reap_now_ns();
    } else if (ret == 0) break;
    else if (errno != EAGAIN && errno != EBUSY) { h->error = -errno; break; }
  }
  return NULL;
}

// "ns":[...],"results":[[value, count]...]: each call's time, and the
// results run-length encoded (most runs are long runs of the cap, or of EAGAIN).
static void print_calls(void) {
  printf("\"ns\":[");
  for (long i = 0; i < ncalls; i++) printf("%s%" PRIu64, i ? "," : "", calls[i].ns);
  printf("],\"results\":[");
  for (long i = 0, first = 1; i < ncalls;) {
    long j = i;
    while (j < ncalls && calls[j].ret == calls[i].ret) j++;
    printf("%s[%ld,%ld]", first ? "" : ",", calls[i].ret, j - i);
    first = 0;
    i = j;
  }
  printf("]");
}

// ---------------------------------------------------------------- clones
// The parent victim forks a clone for each byte on `req` and answers its pid
// on `resp`; SIGCHLD ignored, so the clones are reaped by the kernel.
static void clone_server(int req, int resp) {
  signal(SIGCHLD, SIG_IGN);
  char byte;
  while (read(req, &byte, 1) == 1) {
    int ready[2];
    if (pipe(ready) != 0) _exit(1);
    pid_t child = fork();
    if (child == 0) {
      close(req);
      close(resp);
      close(ready[0]);
      // Fresh pages of its own, then it says so (so before the freeze).
      for (int i = 0; opt_own_pages && i < nowned; i++) {
        if (madvise(owned[i].p, owned[i].bytes, MADV_DONTNEED) != 0) _exit(1);
        populate(owned[i].p, owned[i].bytes);
      }
      if (write(ready[1], "r", 1) != 1) _exit(1);
      close(ready[1]);
      for (;;) pause();
    }
    close(ready[1]);
    // A clone that failed (or could not be forked) ends the server: the driver sees EOF.
    if (child < 0 || read(ready[0], &byte, 1) != 1) _exit(1);
    close(ready[0]);
    if (write(resp, &child, sizeof child) != sizeof child) _exit(1);
  }
  _exit(0);
}

static int clones_main(long nr) {
  int req[2], resp[2];
  if (pipe(req) != 0 || pipe(resp) != 0) die("pipe");
  uint64_t t_setup = reap_now_ns();
  pid_t parent = parent_victim = fork();
  if (parent < 0) die("fork");
  if (parent == 0) {
    close(req[1]);
    close(resp[0]);
    build_victim();
    clone_server(req[0], resp[1]);
  }
  close(req[0]);
  close(resp[1]);
  calls = calloc((size_t)opt_max_calls, sizeof *calls);
  if (!calls) die("calloc");
  make_group();
  char line[128];
  int first = 1;
  while (fgets(line, sizeof line, stdin)) {
    unsigned long long cap_arg;
    if (sscanf(line, "reap %llu", &cap_arg) != 1) continue;
    size_t cap = cap_arg ? (size_t)cap_arg : SIZE_MAX;
    uint64_t t_fork = reap_now_ns();
    pid_t pid;
    if (write(req[1], "f", 1) != 1 || read(resp[0], &pid, sizeof pid) != sizeof pid) {
      errno = EIO;
      die("the clones' parent failed (building its layout?)");
    }
    // The first fork waits for the parent to be built.
    double setup_ms = first ? (double)(reap_now_ns() - t_setup) / 1e6 : 0;
    double fork_ms = first ? 0 : (double)(reap_now_ns() - t_fork) / 1e6;
    first = 0;
    victim = pid;
    freeze(pid);
    pin(opt_cpu);
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) die("pidfd_open");
    long long rss_before = reap_rss_pages(pid);
    struct reap_ran before = reap_read_ran(pid);
    int frozen_before = frozen();
    if (syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0) != 0) die("pidfd_send_signal");
    ncalls = 0;
    long long bytes = 0;
    const char *ended = "zero";
    for (;;) {
      long ret = timed(nr, pidfd, cap);
      if (ret > 0) bytes += ret;
      else if (ret == 0) break;
      else if (ret != -EAGAIN && ret != -EBUSY) { ended = "error"; break; }
      if (ncalls >= opt_max_calls) { ended = "max-calls"; break; }
    }
    struct reap_ran after = reap_read_ran(pid);
    int frozen_after = frozen();
    long long rss_after = reap_rss_pages(pid);
    thaw();
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    if (poll(&p, 1, 60000) != 1) die("waiting for a clone to exit");
    close(pidfd);
    victim = 0;
    pin(opt_build_cpu);
    printf("{\"cap\":%llu,\"pid\":%d,\"setupMs\":%.1f,\"forkMs\":%.1f,\"pageSize\":%ld,\"rssBefore\":%lld,\"rssAfter\":%lld,",
           cap_arg, (int)pid, setup_ms, fork_ms, sysconf(_SC_PAGESIZE), rss_before, rss_after);
    printf("\"ended\":\"%s\",\"calls\":%ld,\"bytes\":%lld,\"victimRan\":%s,", ended, ncalls, bytes,
           reap_same_ran(before, after) && frozen_before && frozen_after ? "false" : "true");
    print_calls();
    printf("}\n");
    fflush(stdout);
  }
  close(req[1]);  // the parent ends
  kill(parent, SIGKILL);
  waitpid(parent, NULL, 0);
  parent_victim = 0;
  if (rmdir(group) != 0) die("rmdir (freezer cgroup)");
  return 0;
}

// ---------------------------------------------------------------- stall
// What the shrinker part reads around the allocation.
static const char *stall_keys[] = {
    "reap_dying_shrinker_pages", "reap_dying_pages", "oom_kill", "allocstall_dma32", "allocstall_normal",
    "allocstall_movable", "pgscan_kswapd", "pgscan_direct", "pgsteal_kswapd", "pgsteal_direct",
    "slabs_scanned", "workingset_refault_file", "pgmajfault", "kswapd_low_wmark_hit_quickly"};
#define NSTALL (sizeof stall_keys / sizeof *stall_keys)

static long long meminfo_kib(const char *key) {
  static char buf[8192];
  return reap_read_text("/proc/meminfo", buf, sizeof buf) > 0 ? reap_field_after(buf, key) : -1;
}

struct half {
  char *p;
  size_t bytes;
  int cpu;
};

static void *populate_half(void *arg) {
  struct half *h = arg;
  pin(h->cpu);
  populate(h->p, h->bytes);
  return NULL;
}

// The victim of the stall mode: V MiB of 4 KiB anonymous pages, populated
// by two threads (one per CPU), which are joined before it says it is ready.
static void build_stall_victim(void) {
  size_t bytes = opt_victim_mib * MIB, first = (bytes / 2) & ~(size_t)(sysconf(_SC_PAGESIZE) - 1);
  char *p = map_anon(bytes, MADV_NOHUGEPAGE);
  struct half halves[2] = {{p, first, 0}, {p + first, bytes - first, 1}};
  pthread_t threads[2];
  for (int i = 0; i < 2; i++)
    if (pthread_create(&threads[i], NULL, populate_half, &halves[i]) != 0) die("pthread_create");
  for (int i = 0; i < 2; i++) pthread_join(threads[i], NULL);
}

// The allocation: a child on opt_cpu maps and populates N MiB; it writes
// its two timestamps (or the errno) to `out`, then keeps the memory until
// `hold` reaches EOF.
static pid_t start_allocation(int *out_fd, int *hold_fd) {
  int out[2], hold[2];
  if (pipe(out) != 0 || pipe(hold) != 0) die("pipe");
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    close(out[0]);
    close(hold[1]);
    pin(opt_cpu);
    uint64_t t[3] = {reap_now_ns(), 0, 0};
    size_t bytes = opt_alloc_mib * MIB;
    char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED || madvise(p, bytes, MADV_NOHUGEPAGE) != 0 || madvise(p, bytes, MADV_POPULATE_WRITE) != 0) t[2] = (uint64_t)errno;
    t[1] = reap_now_ns();
    if (write(out[1], t, sizeof t) != sizeof t) _exit(1);
    char byte;
    while (read(hold[0], &byte, 1) > 0) {
    }
    _exit(0);
  }
  close(out[1]);
  close(hold[0]);
  *out_fd = out[0];
  *hold_fd = hold[1];
  return child;
}

static int stall_main(long nr) {
  pid_t pid = 0;
  int pidfd = -1;
  double setup_ms = 0;
  long kill_ret = 0;
  uint64_t kill_ns = 0;
  long long rss_before = -1, rss_killed = -1;
  struct reap_ran before = {-1, -1, -1, -1, -1, '?'}, after = before;  // no victim: "?"
  int frozen_before = 0, frozen_after = 0;
  if (opt_victim_mib) {
    int ready[2];
    if (pipe(ready) != 0) die("pipe");
    uint64_t t_setup = reap_now_ns();
    pid = victim = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
      close(ready[0]);
      build_stall_victim();
      pin(opt_build_cpu);
      if (write(ready[1], "r", 1) != 1) _exit(1);
      for (;;) pause();
    }
    close(ready[1]);
    char byte;
    if (read(ready[0], &byte, 1) != 1) {
      errno = EIO;
      die("the victim failed to build");
    }
    close(ready[0]);
    setup_ms = (double)(reap_now_ns() - t_setup) / 1e6;
    freeze(pid);
    pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) die("pidfd_open");
    rss_before = reap_rss_pages(pid);
    before = reap_read_ran(pid);
    frozen_before = frozen();
    // Killed, doomed (kept reachable, on the shrinker's list), nothing reaped.
    uint64_t t0 = reap_now_ns();
    kill_ret = syscall(nr, pidfd, TRY_REAP_KILL, (size_t)0);
    kill_ns = reap_now_ns() - t0;
    if (kill_ret < 0) kill_ret = -errno;
    rss_killed = reap_rss_pages(pid);
  }
  long long vm0[NSTALL], vm1[NSTALL];
  long long free_before = meminfo_kib("\nMemFree:"), available_before = meminfo_kib("\nMemAvailable:");
  read_vmstat_keys(stall_keys, NSTALL, vm0);
  int out_fd, hold_fd;
  pid_t alloc = start_allocation(&out_fd, &hold_fd);
  uint64_t t[3] = {0, 0, 0};
  struct pollfd p = {.fd = out_fd, .events = POLLIN};
  int polled = poll(&p, 1, (int)opt_timeout_ms);
  int timed_out = polled == 0;  // (an allocation killed by the OOM path ends with a hang-up instead)
  int got = polled == 1 && read(out_fd, t, sizeof t) == sizeof t;
  read_vmstat_keys(stall_keys, NSTALL, vm1);
  long long free_after = meminfo_kib("\nMemFree:");
  // The victim as the allocation left it: did it run, is it gone (the OOM path)?
  int victim_exited = 0;
  long long rss_after = -1;
  if (pid) {
    after = reap_read_ran(pid);
    frozen_after = frozen();
    rss_after = reap_rss_pages(pid);
    siginfo_t info = {0};
    victim_exited = waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid;
  }
  close(hold_fd);
  if (!got) kill(alloc, SIGKILL);  // timed out
  int alloc_status = 0;
  if (waitpid(alloc, &alloc_status, 0) != alloc) die("waitpid (allocation)");
  close(out_fd);
  double exit_ms = 0;
  int status = 0;
  if (pid) {
    uint64_t t_thaw = reap_now_ns();
    thaw();
    victim = 0;
    if (waitpid(pid, &status, 0) != pid) die("waitpid");
    exit_ms = (double)(reap_now_ns() - t_thaw) / 1e6;
    close(pidfd);
    if (rmdir(group) != 0) die("rmdir (freezer cgroup)");
  }
  printf("{\"mode\":\"%s\",\"victimMiB\":%lu,\"allocMiB\":%lu,\"pid\":%d,\"cpu\":%d,\"pageSize\":%ld,\"setupMs\":%.1f,",
         opt_victim_mib ? "victim" : "free", opt_victim_mib, opt_alloc_mib, (int)pid, opt_cpu, sysconf(_SC_PAGESIZE), setup_ms);
  printf("\"killResult\":%ld,\"killNs\":%" PRIu64 ",\"rssBefore\":%lld,\"rssAfterKill\":%lld,\"rssAfterAlloc\":%lld,", kill_ret, kill_ns,
         rss_before, rss_killed, rss_after);
  printf("\"memFreeKiB\":[%lld,%lld],\"memAvailableKiB\":%lld,", free_before, free_after, available_before);
  printf("\"allocated\":%s,\"allocNs\":%" PRIu64 ",\"allocErrno\":%d,\"allocStatus\":%d,\"timedOut\":%s,\"timeoutMs\":%ld,",
         got && !t[2] ? "true" : "false", got ? t[1] - t[0] : 0, (int)t[2], alloc_status, timed_out ? "true" : "false", opt_timeout_ms);
  printf("\"victimRan\":%s,\"victimExited\":%s,\"frozen\":[%s,%s],",
         pid && !(reap_same_ran(before, after) && frozen_before && frozen_after) ? "true" : "false", victim_exited ? "true" : "false",
         frozen_before ? "true" : "false", frozen_after ? "true" : "false");
  printf("\"vmstat\":{");
  for (size_t i = 0; i < NSTALL; i++) printf("%s\"%s\":%lld", i ? "," : "", stall_keys[i], vm0[i] < 0 || vm1[i] < 0 ? -1 : vm1[i] - vm0[i]);
  printf("},");
  print_ran("before", before);
  putchar(',');
  print_ran("after", after);
  printf(",\"exitMs\":%.1f,\"exit\":%d}\n", exit_ms, status);
  return 0;
}

int main(int argc, char **argv) {
  parse(argc, argv);
  pin(opt_build_cpu);  // the victim inherits it
  long nr = -1;
  if (strcmp(opt_method, "mrelease")) {
    nr = reap_syscall_nr();
    if (nr < 0) { fprintf(stderr, "bounds: try_reap_dying_process not available (no /sys/kernel/mm/reap_dying/syscall_nr)\n"); return 3; }
  } else {
    nr = SYS_process_mrelease;
  }
  size_t cap = opt_cap ? (size_t)opt_cap : SIZE_MAX;
  if (!strcmp(opt_mode, "stall")) {
    if (nr == SYS_process_mrelease) { fprintf(stderr, "bounds: stall kills with try_reap_dying_process\n"); return 2; }
    return stall_main(nr);
  }
  if (!strcmp(opt_mode, "clones")) {
    if (nr == SYS_process_mrelease) { fprintf(stderr, "bounds: clones reap with try_reap_dying_process\n"); return 2; }
    return clones_main(nr);
  }

  // The victim is forked before this program allocates anything big.
  int ready[2];
  if (pipe(ready) != 0) die("pipe");
  uint64_t t_setup = reap_now_ns();
  pid_t pid = victim = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    close(ready[0]);
    build_victim();
    if (write(ready[1], &reserve_addr, sizeof reserve_addr) != sizeof reserve_addr) _exit(1);
    for (;;) pause();
  }
  close(ready[1]);
  if (read(ready[0], &reserve_addr, sizeof reserve_addr) != sizeof reserve_addr) {
    errno = EIO;
    die("the victim failed to build its layout");
  }
  close(ready[0]);
  double setup_ms = (double)(reap_now_ns() - t_setup) / 1e6;
  calls = calloc((size_t)opt_max_calls, sizeof *calls);
  if (!calls) die("calloc");
  long vmas = count_vmas(pid);
  long long thp_kb = smaps_kb(pid, "\nAnonHugePages:");

  freeze(pid);
  printf("frozen\n");
  fflush(stdout);
  char line[64];
  if (!fgets(line, sizeof line, stdin)) {
    errno = ECANCELED;
    die("no go on stdin");
  }
  pin(opt_cpu);
  uint64_t control_one = 0, control_two = 0;
  if (opt_reapers == 2) parallel_control(opt_cpu ? 0 : 1, &control_one, &control_two);
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) die("pidfd_open");
  long long rss_before = reap_rss_pages(pid);
  struct counters c0 = read_counters();
  struct reap_ran before = reap_read_ran(pid);
  int frozen_before = frozen();
  long long vm0[NVMSTAT], vm1[NVMSTAT];
  read_vmstat(vm0);
  struct rusage ru0, ru1;
  uint64_t cal_before = calibrate();
  getrusage(RUSAGE_SELF, &ru0);

  struct second_reaper second = {.nr = nr, .pidfd = pidfd, .cpu = opt_cpu ? 0 : 1, .cap = cap};
  pthread_t second_thread;
  int two = opt_reapers == 2 && nr != SYS_process_mrelease;
  if (two && pthread_create(&second_thread, NULL, second_reaper, &second) != 0) die("pthread_create");
  int kill_call = !strcmp(opt_method, "kill");
  uint64_t t_kill = reap_now_ns(), last_bytes = 0;
  // --method kill: the first call kills and reaps (TRY_REAP_KILL); else SIGKILL first.
  long kill_ret = kill_call ? timed_flags(nr, pidfd, TRY_REAP_KILL, cap) : 0;
  if (!kill_call && syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0) != 0) die("pidfd_send_signal");
  if (two) atomic_store(&second.go, 1);
  uint64_t deadline = t_kill + (uint64_t)opt_timeout_ms * 1000000ull;
  long ebusy = 0, eagain = 0, positive = 0, other = 0, first_other = 0;
  long long bytes = 0, max_ret = 0;
  const char *ended = "zero";
  if (kill_call) {
    // Counted as the loop counts its calls.
    if (kill_ret > 0) {
      positive++;
      bytes = max_ret = kill_ret;
      last_bytes = last_end;
    } else if (kill_ret == -EAGAIN) {
      eagain++;
    } else if (kill_ret == -EBUSY) {
      ebusy++;
    } else if (kill_ret < 0) {
      other++;
      first_other = kill_ret;
      ended = "error";
    }
  }
  if (nr == SYS_process_mrelease) {
    long ret = timed(nr, pidfd, 0);
    ended = ret == 0 ? "done" : "error";
    if (ret < 0) { other++; first_other = ret; }
  } else if (!other) {  // (the kill call's error ends the run)
    for (;;) {
      long ret = timed(nr, pidfd, cap);
      if (ret > 0) {
        positive++;
        bytes += ret;
        if (ret > max_ret) max_ret = ret;
        last_bytes = last_end;
      } else if (ret == -EAGAIN) {
        eagain++;
      } else if (ret == -EBUSY) {
        ebusy++;
      } else if (ret == 0) {
        break;
      } else {
        other++;
        first_other = ret;
        ended = "error";
        break;
      }
      if (ncalls >= opt_max_calls) { ended = "max-calls"; break; }
      if (reap_now_ns() > deadline) { ended = "timeout"; break; }
    }
  }
  if (two) {
    pthread_join(second_thread, NULL);
    if (second.last_bytes_ns > last_bytes) last_bytes = second.last_bytes_ns;
    bytes += second.bytes;
    if (second.error) { other++; first_other = second.error; ended = "error"; }
  }
  uint64_t t_end = reap_now_ns();
  getrusage(RUSAGE_SELF, &ru1);
  uint64_t cal_after = calibrate();
  read_vmstat(vm1);
  struct reap_ran after = reap_read_ran(pid);
  int frozen_after = frozen();
  long long rss_after = reap_rss_pages(pid);
  struct counters c1 = read_counters();
  // 0 must stay 0 until the mm is released (outside the timed calls).
  long again = nr == SYS_process_mrelease ? 0 : syscall(nr, pidfd, 0, cap);
  if (again < 0) again = -errno;

  uint64_t t_thaw = reap_now_ns();
  thaw();
  int status = 0;
  victim = 0;
  if (waitpid(pid, &status, 0) != pid) die("waitpid");
  double exit_ms = (double)(reap_now_ns() - t_thaw) / 1e6;
  if (rmdir(group) != 0) die("rmdir (freezer cgroup)");

  printf("{\"method\":\"%s\",\"cap\":%" PRIu64 ",\"pid\":%d,\"cpu\":%d,\"buildCpu\":%d,\"setupMs\":%.1f,\"vmas\":%ld,\"thpBytes\":%lld,",
         opt_method, opt_cap, (int)pid, opt_cpu, opt_build_cpu, setup_ms, vmas, thp_kb < 0 ? -1 : thp_kb * 1024);
  printf("\"reserveAddr\":\"%p\",\"pageSize\":%ld,\"rssBefore\":%lld,\"rssAfter\":%lld,", (void *)reserve_addr,
         sysconf(_SC_PAGESIZE), rss_before, rss_after);
  printf("\"ended\":\"%s\",\"again\":%ld,\"calls\":%ld,\"positive\":%ld,\"eagain\":%ld,\"ebusy\":%ld,\"otherErrors\":%ld,\"firstOther\":%ld,",
         ended, again, ncalls, positive, eagain, ebusy, other, first_other);
  printf("\"bytes\":%lld,\"maxResult\":%lld,\"wallNs\":%" PRIu64 ",\"freedNs\":%" PRIu64 ",\"exitMs\":%.1f,", bytes, max_ret, t_end - t_kill,
         last_bytes ? last_bytes - t_kill : 0, exit_ms);
  printf("\"killCall\":%s,\"killResult\":%ld,", kill_call ? "true" : "false", kill_ret);
  printf("\"reapers\":%d,\"secondCalls\":%ld,\"secondBytes\":%lld,", two ? 2 : 1, second.calls, second.bytes);
  printf("\"parallelControlNs\":[%" PRIu64 ",%" PRIu64 "],", control_one, control_two);
  printf("\"counters\":{\"calls\":%lld,\"pagesReaped\":%lld,\"busy\":%lld},", c1.calls - c0.calls,
         c1.pages_reaped - c0.pages_reaped, c1.busy - c0.busy);
  printf("\"calibrationNs\":[%" PRIu64 ",%" PRIu64 "],", cal_before, cal_after);
  printf("\"reaperCsw\":[%ld,%ld],\"vmstat\":{", ru1.ru_nvcsw - ru0.ru_nvcsw, ru1.ru_nivcsw - ru0.ru_nivcsw);
  for (size_t i = 0; i < NVMSTAT; i++) printf("%s\"%s\":%lld", i ? "," : "", vmstat_keys[i], vm1[i] - vm0[i]);
  printf("},");
  printf("\"frozen\":[%s,%s],\"victimRan\":%s,", frozen_before ? "true" : "false", frozen_after ? "true" : "false",
         reap_same_ran(before, after) && frozen_before && frozen_after ? "false" : "true");
  print_ran("before", before);
  putchar(',');
  print_ran("after", after);
  printf(",\"exit\":%d,", status);
  print_calls();
  printf("}\n");
  return 0;
}
