// SPDX-License-Identifier: MIT
/*
 * reap_stress: try_reap_dying_process() under concurrency, for the debug
 * kernel (lockdep, KASAN, ...). Run by scripts/stress-in-guest inside the
 * scripts/vm guest; see --help. Checks the v2 ABI (spec-v2, README):
 *
 * Victims (forked children) map, touch, mprotect, madvise(MADV_DONTNEED)
 * and unmap memory in several threads, some of it in MADV_HUGEPAGE THPs and
 * in a private file mapping. Each is stopped (SIGSTOP), its RSS read from
 * /proc/PID/statm (and VmHWM), then killed (some while frozen in a cgroup
 * v1 freezer, so that they stay dying for a while), while R reaper threads
 * call try_reap_dying_process() with random caps on the victims, live and
 * dying, and race their exit. Meanwhile a thread writes to
 * /proc/sys/vm/compact_memory (THP migration), another calls
 * process_mrelease() on some victims, and with cgroup v2's memory
 * controller some victims run into memory.max of their own cgroup, so the
 * memcg OOM killer and the OOM reaper work on the same mm. With the v3
 * series, half the victims are killed by try_reap_dying_process() itself
 * (TRY_REAP_KILL, some with a cap of 0: killed and doomed only), and with
 * /sys/kernel/mm/reap_dying/shrinker_enabled set for the run, a thread
 * writes to /proc/sys/vm/drop_caches so that the shrinker reaps doomed
 * victims under the reapers.
 *
 * Allowed answers: bytes >= 0 (a page multiple, at most
 * max(PAGE_ALIGN(cap), 2 MiB), exactly 0 for cap 0), EAGAIN, EBUSY (not for
 * cap 0), ESRCH, and EPERM only before the victim is dying (SIGKILL sent, or
 * an answer only a dying victim gives seen). ESRCH is final; once a call
 * with a cap returned 0 (nothing left), later calls answer 0 (or EBUSY, or
 * ESRCH once the mm is gone), never bytes or EAGAIN. Per victim, the results
 * sum to at most its RSS when it was stopped (OOM victims: memory.max + what
 * they map that is charged elsewhere). At the end the mm_struct count of
 * /proc/slabinfo (after emptying the cache's KASAN quarantine) must be back
 * where it started.
 *
 * Prints one summary line "reap_stress: PASS|FAIL ..."; exit status 0 only
 * if nothing failed.
 */
#include "reap_common.h"

#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

enum { K_KILL, K_OOM };
enum { V_FREE, V_STARTING, V_READY, V_KILLED, V_EXITED, V_WAITED };

#define RETIRED (1 << 30)

struct victim {
	_Atomic int users;	/* reapers using pidfd; RETIRED: not usable */
	int pidfd;
	pid_t pid;
	int id;
	int kind;
	bool mrelease;		/* process_mrelease() it too */
	bool frozen, thawed;	/* killed while frozen (cgroup v1 freezer) */
	bool stopped;		/* its RSS was read while it was stopped */
	int nthreads;
	int ready_fd;
	int state;		/* main thread only */
	double t_next, t_kill, t_thaw;
	long bound;		/* bytes the results may sum to; <0: unknown */
	char cg[128];		/* memcg of an OOM victim */
	_Atomic bool dying;	/* SIGKILL sent, or a dying-only answer seen */
	_Atomic bool gone;	/* ESRCH seen */
	_Atomic bool empty;	/* a call with a cap returned 0 */
	_Atomic long reaped;	/* sum of positive results */
	_Atomic long calls;
};

/* options */
static double opt_seconds = 30;
static int opt_reapers = 4, opt_victims = 4, opt_victim_mb = 16, opt_oom_every = 4;
static int opt_oom_mb = 24, opt_verbose;
static uint64_t opt_seed;

static struct victim *victims;
static int nslots;
static _Atomic bool stop_threads;
static int file_fd = -1;
static char file_path[64];
static bool memcg_ok, freezer_ok;
static char freezer_root[96];
static char cg_root[96];

/* statistics */
static _Atomic long st_calls, st_bytes_calls, st_bytes, st_zero, st_probe, st_eagain,
	st_eagain_after_zero, st_ebusy, st_esrch, st_eperm, st_mrelease, st_mrelease_ok,
	st_compact, st_kill_calls, st_shrinks;
static long st_victims, st_oom_killed, st_oom_timeouts, st_with_mrelease, st_unbounded,
	st_frozen;

/* --- victims (children) ------------------------------------------------------- */

struct region {
	char *base;		/* what to munmap */
	size_t len;
};

struct churn_arg {
	uint64_t seed;
};

static void touch(char *p, size_t len, char v)
{
	for (size_t off = 0; off < len; off += PAGE)
		p[off] = v;
}

/* mmap len bytes; with thp, 2 MiB aligned and MADV_HUGEPAGE. */
static char *map_region(struct region *r, size_t len, bool thp)
{
	size_t full = thp ? len + PMD_BYTES : len;
	char *p = mmap(NULL, full, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		r->base = NULL;
		return NULL;
	}
	r->base = p;
	r->len = full;
	if (thp) {
		p = (char *)(((uintptr_t)p + PMD_BYTES - 1) & ~(PMD_BYTES - 1));
		madvise(p, len, MADV_HUGEPAGE);
	}
	return p;
}

/* A victim thread: map, touch, mprotect, madvise and unmap, forever. */
static void *churn(void *arg)
{
	uint64_t rs = ((struct churn_arg *)arg)->seed;
	struct region ring[8] = { 0 };

	for (unsigned long n = 0;; n++) {
		struct region *r = &ring[rnd_below(&rs, 8)];
		bool thp = rnd_below(&rs, 5) == 0;
		size_t len = thp ? 2 * PMD_BYTES : (1 + rnd_below(&rs, 64)) * 16 * KiB;
		char *p;

		if (r->base)
			munmap(r->base, r->len);
		p = map_region(r, len, thp);
		if (!p) {
			sleep_us(1000);
			continue;
		}
		touch(p, len, (char)n);
		if (rnd_below(&rs, 2)) {
			mprotect(p, len / 2, PROT_READ);
			touch(p + len / 2, len / 2, 1);
			mprotect(p, len / 2, PROT_READ | PROT_WRITE);
		}
		if (rnd_below(&rs, 2)) {
			size_t off = rnd_below(&rs, len / PAGE) * PAGE;
			size_t l = (1 + rnd_below(&rs, (len - off) / PAGE)) * PAGE;

			madvise(p + off, l, MADV_DONTNEED);
			touch(p + off, l / 2, 2);
		}
		if (rnd_below(&rs, 4) == 0) {
			mprotect(p + PAGE, PAGE, PROT_NONE);	/* splits the VMA */
			mprotect(p + PAGE, PAGE, PROT_READ | PROT_WRITE);
		}
	}
	return NULL;
}

static void __attribute__((noreturn))
victim_main(struct victim *v, int ready_wr, bool thp, uint64_t seed)
{
	uint64_t rs = seed;
	struct churn_arg args[8];
	struct region ranon, rthp;
	size_t anon_len = (size_t)opt_victim_mb * MiB / 2, thp_len = 4 * MiB, file_len = 4 * MiB;

	/* An OOM victim must get ready before it reaches its limit. */
	if (v->kind == K_OOM && anon_len > (size_t)opt_oom_mb * MiB / 4)
		anon_len = (size_t)opt_oom_mb * MiB / 4;
	char *anon, *huge = NULL, *file;
	pthread_t t;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (v->kind == K_OOM) {
		char path[192];

		snprintf(path, sizeof(path), "%s/cgroup.procs", v->cg);
		if (write_file(path, "0"))
			_exit(3);
	}
	anon = map_region(&ranon, anon_len, false);
	if (!anon)
		_exit(3);
	touch(anon, anon_len, 1);
	if (thp) {
		huge = map_region(&rthp, thp_len, true);
		if (huge)
			touch(huge, thp_len, 1);
	}
	/*
	 * Only read: mapped to the zero page (the huge zero page in the THP
	 * case), which is in no RSS and must not be counted when unmapped.
	 */
	{
		struct region rz;
		char *zero = map_region(&rz, 4 * MiB, thp);
		volatile char sink = 0;

		for (size_t off = 0; zero && off < 4 * MiB; off += PAGE)
			sink += zero[off];
	}
	/* page cache of a private file mapping, some of it COWed */
	file = mmap(NULL, file_len, PROT_READ | PROT_WRITE, MAP_PRIVATE, file_fd, 0);
	if (file != MAP_FAILED) {
		volatile char sink = 0;

		for (size_t off = 0; off < file_len; off += PAGE)
			sink += file[off];
		for (size_t off = 0; off < file_len; off += 4 * PAGE)
			file[off] = sink;
	}
	for (int i = 0; i < v->nthreads && i < 8; i++) {
		args[i].seed = rnd_seed(seed, 1000 + i);
		pthread_create(&t, NULL, churn, &args[i]);
	}
	if (write(ready_wr, "r", 1) != 1)
		_exit(3);
	close(ready_wr);

	for (;;) {
		if (v->kind == K_OOM) {
			/* Grow until the memcg OOM killer kills us. */
			struct region r;
			char *p = map_region(&r, 2 * MiB, rnd_below(&rs, 2));

			if (p)
				touch(p, 2 * MiB, 3);
			else
				sleep_us(1000);
			continue;
		}
		/* Dirty pages here and there; now and then drop some. */
		size_t off = rnd_below(&rs, anon_len / PAGE) * PAGE;

		anon[off]++;
		if (huge)
			huge[rnd_below(&rs, thp_len / PAGE) * PAGE]++;
		if (rnd_below(&rs, 256) == 0 && off + 16 * PAGE <= anon_len)
			madvise(anon + off, 16 * PAGE, MADV_DONTNEED);
	}
}

/* --- reapers ---------------------------------------------------------------------- */

static bool get_victim(struct victim *v)
{
	if (atomic_fetch_add(&v->users, 1) & RETIRED) {
		atomic_fetch_sub(&v->users, 1);
		return false;
	}
	return true;
}

static void put_victim(struct victim *v)
{
	atomic_fetch_sub(&v->users, 1);
}

/*
 * A random usable victim, mostly a dying one; NULL if none. With no dying
 * victim, mostly none either: the victims getting ready need the CPUs more
 * than a stream of EPERMs does.
 */
static struct victim *pick_victim(uint64_t *rs, bool dying_only)
{
	bool want_dying = dying_only || rnd_below(rs, 8) != 0;
	bool want_there = rnd_below(rs, 8) != 0;	/* not known gone (ESRCH) */

	for (int tries = 0; tries < 2 * nslots; tries++) {
		struct victim *v = &victims[rnd_below(rs, nslots)];

		if (want_dying && !atomic_load(&v->dying))
			continue;
		if (want_there && atomic_load(&v->gone))
			continue;
		if (get_victim(v))
			return v;
	}
	if (dying_only || (want_dying && rnd_below(rs, 4)))
		return NULL;
	for (int tries = 0; tries < nslots; tries++) {
		struct victim *v = &victims[rnd_below(rs, nslots)];

		if (get_victim(v))
			return v;
	}
	return NULL;
}

static size_t pick_cap(uint64_t *rs)
{
	switch (rnd_below(rs, 12)) {
	case 0: return 0;
	case 1: return 1;
	case 2: return PAGE;
	case 3: return 3 * PAGE + 123;
	case 4: return 64 * KiB;
	case 5: return MiB;
	case 6: return PMD_BYTES - 1;
	case 7: return PMD_BYTES;
	case 8: return PMD_BYTES + PAGE;
	case 9: return rnd_below(rs, 16 * MiB);
	case 10: return UINT32_MAX;
	default: return SIZE_MAX;
	}
}

/* Check one answer of try_reap_dying_process() on v; see the header. */
static void check_answer(struct victim *v, size_t cap, long r, int e,
			 bool dying, bool gone, bool empty)
{
	atomic_fetch_add(&st_calls, 1);
	atomic_fetch_add(&v->calls, 1);
	if (gone && (r >= 0 || e != ESRCH)) {
		failure("victim %d (pid %d): %s%s after ESRCH (cap %zu)", v->id, v->pid,
			r >= 0 ? "returned " : "", r >= 0 ? "bytes" : errname(e), cap);
		return;
	}
	if (r >= 0) {
		if (r % PAGE)
			failure("victim %d: %ld bytes, not a page multiple (cap %zu)", v->id, r, cap);
		if (cap == 0 && r != 0)
			failure("victim %d: probe (cap 0) returned %ld", v->id, r);
		if ((size_t)r > reap_call_bound(cap))
			failure("victim %d: %ld bytes > max(PAGE_ALIGN(%zu), 2 MiB)", v->id, r, cap);
		if (r > 0 && empty)
			failure("victim %d (pid %d, %s, %d threads): %ld bytes (cap %zu) after a call had "
				"returned 0 (nothing left)", v->id, v->pid,
				v->kind == K_OOM ? "memcg OOM" : "SIGKILL", v->nthreads + 1, r, cap);
		if (r > 0) {
			atomic_fetch_add(&v->reaped, r);
			atomic_fetch_add(&st_bytes, r);
			atomic_fetch_add(&st_bytes_calls, 1);
		} else if (cap) {
			atomic_fetch_add(&st_zero, 1);
			atomic_store(&v->empty, true);
		} else {
			atomic_fetch_add(&st_probe, 1);
		}
		atomic_store(&v->dying, true);
		return;
	}
	switch (e) {
	case EAGAIN:
	case EBUSY:
		if (cap == 0)
			failure("victim %d: probe (cap 0) returned %s", v->id, errname(e));
		atomic_fetch_add(e == EAGAIN ? &st_eagain : &st_ebusy, 1);
		if (e == EAGAIN && empty) {
			atomic_fetch_add(&st_eagain_after_zero, 1);
			failure("victim %d (pid %d, %s, %d threads): EAGAIN (cap %zu) after a call had "
				"returned 0 (nothing left: later calls must answer 0)", v->id, v->pid,
				v->kind == K_OOM ? "memcg OOM" : "SIGKILL", v->nthreads + 1, cap);
		}
		atomic_store(&v->dying, true);
		break;
	case ESRCH:
		atomic_fetch_add(&st_esrch, 1);
		atomic_store(&v->gone, true);
		break;
	case EPERM:
		atomic_fetch_add(&st_eperm, 1);
		if (dying)
			failure("victim %d (pid %d, %s): EPERM after it was dying (cap %zu)",
				v->id, v->pid, v->kind == K_OOM ? "memcg OOM" : "SIGKILL", cap);
		break;
	default:
		failure("victim %d (pid %d): %s (%ld), not an answer of the v2 ABI (cap %zu)",
			v->id, v->pid, errname(e), r, cap);
	}
}

static void *reaper(void *arg)
{
	uint64_t rs = rnd_seed(opt_seed, 100 + (uintptr_t)arg);

	while (!atomic_load(&stop_threads)) {
		struct victim *v = pick_victim(&rs, false);
		bool dying, gone, empty;
		size_t cap;
		long r;

		if (!v) {
			sleep_us(1000);
			continue;
		}
		cap = pick_cap(&rs);
		dying = atomic_load(&v->dying);
		gone = atomic_load(&v->gone);
		empty = atomic_load(&v->empty);
		errno = 0;
		r = try_reap(v->pidfd, 0, cap);
		check_answer(v, cap, r, r < 0 ? errno : 0, dying, gone, empty);
		put_victim(v);
		if (rnd_below(&rs, 8) == 0)
			sched_yield();
	}
	return NULL;
}

/* process_mrelease() on dying victims marked for it, racing the reapers. */
static void *mreleaser(void *arg)
{
	uint64_t rs = rnd_seed(opt_seed, 200);

	(void)arg;
	while (!atomic_load(&stop_threads)) {
		struct victim *v = pick_victim(&rs, true);
		int r, e;

		if (!v || !v->mrelease) {
			if (v)
				put_victim(v);
			sleep_us(1000);
			continue;
		}
		r = process_mrelease(v->pidfd, 0);
		e = errno;
		atomic_fetch_add(&st_mrelease, 1);
		if (r == 0)
			atomic_fetch_add(&st_mrelease_ok, 1);
		else if (e != ESRCH && e != EAGAIN && e != EINTR)
			failure("victim %d (pid %d): process_mrelease: %s", v->id, v->pid, errname(e));
		put_victim(v);
		sleep_us(2000 + rnd_below(&rs, 20000));
	}
	return NULL;
}

/* Compaction migrates THPs (and everything else) under the reapers. */
static void *compactor(void *arg)
{
	uint64_t rs = rnd_seed(opt_seed, 300);

	(void)arg;
	while (!atomic_load(&stop_threads)) {
		if (write_file("/proc/sys/vm/compact_memory", "1"))
			break;
		atomic_fetch_add(&st_compact, 1);
		sleep_us(100000 + rnd_below(&rs, 300000));
	}
	return NULL;
}

/* The v3 shrinker (switched on by main) reaps doomed victims under drop_caches. */
static void *shrinker(void *arg)
{
	uint64_t rs = rnd_seed(opt_seed, 400);

	(void)arg;
	while (!atomic_load(&stop_threads)) {
		if (write_file("/proc/sys/vm/drop_caches", "2"))
			break;
		atomic_fetch_add(&st_shrinks, 1);
		sleep_us(200000 + rnd_below(&rs, 500000));
	}
	return NULL;
}

/* --- mm_struct accounting ---------------------------------------------------------- */

/*
 * Live mm_structs per /proc/slabinfo, -1 if unknown. First run on every CPU
 * so that no idle CPU still holds a dead victim's mm as its lazy TLB mm,
 * then shrink the cache, which empties its KASAN quarantine.
 */
static long count_mm_structs(void)
{
	static char buf[1 << 17];
	cpu_set_t old, one;
	long n = -1;
	char *p;

	if (!sched_getaffinity(0, sizeof(old), &old)) {
		for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
			if (!CPU_ISSET(cpu, &old))
				continue;
			CPU_ZERO(&one);
			CPU_SET(cpu, &one);
			if (!sched_setaffinity(0, sizeof(one), &one))
				sleep_us(2000);
		}
		sched_setaffinity(0, sizeof(old), &old);
	}
	write_file("/sys/kernel/slab/mm_struct/shrink", "1");
	if (read_file("/proc/slabinfo", buf, sizeof(buf)) < 0)
		return -1;
	for (p = buf; p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (!strncmp(p, "mm_struct ", 10) && sscanf(p + 10, "%ld", &n) == 1)
			break;
	return n;
}

/* --- the conductor ------------------------------------------------------------------ */

static void setup_memcg(void)
{
	char buf[512], path[192];

	if (!opt_oom_every || read_file("/sys/fs/cgroup/cgroup.controllers", buf, sizeof(buf)) < 0 ||
	    !strstr(buf, "memory"))
		return;
	write_file("/sys/fs/cgroup/cgroup.subtree_control", "+memory");
	snprintf(cg_root, sizeof(cg_root), "/sys/fs/cgroup/reap_stress.%d", getpid());
	if (mkdir(cg_root, 0755) && errno != EEXIST)
		return;
	snprintf(path, sizeof(path), "%s/cgroup.subtree_control", cg_root);
	if (write_file(path, "+memory")) {
		rmdir(cg_root);
		return;
	}
	memcg_ok = true;
}

/*
 * A cgroup v1 freezer hierarchy of our own: a victim killed while frozen
 * there stays dying, unable to exit, until thawed, so the reapers can take
 * everything, get 0, and keep calling (the v2 cgroup freezer lets SIGKILL
 * through).
 */
static void setup_freezer(void)
{
	snprintf(freezer_root, sizeof(freezer_root), "/run/reap_stress_freezer.%d", getpid());
	if (mkdir(freezer_root, 0755))
		return;
	if (mount("reap_stress", freezer_root, "cgroup", 0, "freezer")) {
		rmdir(freezer_root);
		return;
	}
	freezer_ok = true;
}

static void freezer_dir(struct victim *v, char *buf, size_t size)
{
	snprintf(buf, size, "%s/v%d", freezer_root, v->id);
}

/* Freeze v (stopped) in a freezer cgroup of its own; false if that failed. */
static bool freeze_victim(struct victim *v)
{
	char dir[160], path[192], state[32] = "";
	char pid[16];

	freezer_dir(v, dir, sizeof(dir));
	snprintf(pid, sizeof(pid), "%d", v->pid);
	if (mkdir(dir, 0755))
		return false;
	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	if (write_file(path, pid))
		return false;
	snprintf(path, sizeof(path), "%s/freezer.state", dir);
	if (write_file(path, "FROZEN"))
		return false;
	for (int i = 0; i < 500; i++) {
		if (read_file(path, state, sizeof(state)) > 0 && !strncmp(state, "FROZEN", 6))
			return true;
		sleep_us(10000);
	}
	failure("victim %d (pid %d) not frozen after 5 s (freezer.state %s)", v->id, v->pid, state);
	return false;
}

static void thaw_victim(struct victim *v)
{
	char path[192];

	freezer_dir(v, path, sizeof(path));
	strcat(path, "/freezer.state");
	if (write_file(path, "THAWED"))
		failure("victim %d: cannot thaw it: %s", v->id, strerror(errno));
	v->thawed = true;
}

static long cg_oom_kills(const char *cg)
{
	char path[192], buf[1024], *p;

	snprintf(path, sizeof(path), "%s/memory.events", cg);
	if (read_file(path, buf, sizeof(buf)) < 0 || !(p = strstr(buf, "oom_kill ")))
		return 0;
	return atol(p + 9);
}

static void rmdir_retry(const char *path)
{
	for (int i = 0; i < 100; i++) {
		if (!rmdir(path) || errno == ENOENT)
			return;
		sleep_us(20000);
	}
	fprintf(stderr, "reap_stress: warning: cannot remove %s: %m\n", path);
}

static void spawn(struct victim *v, int id, uint64_t *rs)
{
	int p[2];
	bool thp = rnd_below(rs, 2);
	uint64_t seed = rnd_seed(opt_seed, 10000 + id);

	memset((char *)v + sizeof(v->users), 0, sizeof(*v) - sizeof(v->users));
	v->id = id;
	v->kind = memcg_ok && opt_oom_every && id % opt_oom_every == opt_oom_every - 1 ? K_OOM : K_KILL;
	v->mrelease = v->kind == K_KILL && rnd_below(rs, 3) == 0;
	v->frozen = v->kind == K_KILL && freezer_ok && rnd_below(rs, 3) == 0;
	/* more than 4 threads: their robust-list heads do not fit inline */
	v->nthreads = 1 + rnd_below(rs, 6);
	v->bound = -1;
	if (v->kind == K_OOM) {
		char path[192], val[32];

		snprintf(v->cg, sizeof(v->cg), "%s/v%d", cg_root, id);
		if (mkdir(v->cg, 0755)) {
			failure("mkdir %s: %s", v->cg, strerror(errno));
			v->kind = K_KILL;
		} else {
			snprintf(path, sizeof(path), "%s/memory.max", v->cg);
			snprintf(val, sizeof(val), "%ld", (long)opt_oom_mb * (long)MiB);
			if (write_file(path, val))
				failure("cannot write %s", path);
			snprintf(path, sizeof(path), "%s/memory.swap.max", v->cg);
			write_file(path, "0");
		}
	}
	if (pipe2(p, O_CLOEXEC)) {
		failure("pipe: %s", strerror(errno));
		return;
	}
	if (v->kind == K_OOM) {
		/*
		 * It maps at most memory.max of pages charged to its memcg, plus
		 * pages charged elsewhere: inherited from us (at most our RSS now)
		 * and the shared file's page cache (charged to us, who wrote it).
		 * Its RSS cannot be read reliably: the OOM killer may strike first.
		 */
		v->bound = ((long)opt_oom_mb + 4) * (long)MiB + statm_resident(getpid()) * (long)PAGE;
	}
	v->pid = fork();
	if (v->pid < 0) {
		failure("fork: %s", strerror(errno));
		close(p[0]);
		close(p[1]);
		return;
	}
	if (!v->pid) {
		close(p[0]);
		victim_main(v, p[1], thp, seed);
	}
	close(p[1]);
	v->ready_fd = p[0];
	fcntl(v->ready_fd, F_SETFL, O_NONBLOCK);
	v->pidfd = pidfd_open(v->pid, 0);
	if (v->pidfd < 0) {
		failure("pidfd_open(%d): %s", v->pid, strerror(errno));
		kill(v->pid, SIGKILL);
		waitpid(v->pid, NULL, 0);
		close(v->ready_fd);
		return;
	}
	v->state = V_STARTING;
	v->t_next = now_s() + 60;	/* ready by then */
	st_victims++;
	st_with_mrelease += v->mrelease;
	/* Reapers may use it now (they may be counting a failed get_victim()). */
	atomic_fetch_and(&v->users, ~RETIRED);
}

static bool exited(struct victim *v)
{
	struct pollfd pfd = { .fd = v->pidfd, .events = POLLIN };

	return poll(&pfd, 1, 0) == 1;
}

/* SIGKILL v; when it can be stopped first, read the RSS to bound the results. */
static void kill_victim(struct victim *v, bool stop_first, uint64_t *rs)
{
	siginfo_t si = { 0 };

	if (stop_first && !pidfd_kill(v->pidfd, SIGSTOP) &&
	    !waitid(P_PIDFD, v->pidfd, &si, WSTOPPED | WEXITED | WNOWAIT)) {
		if (si.si_code == CLD_STOPPED) {
			long rss = statm_resident(v->pid), hwm = status_kb(v->pid, "VmHWM");

			v->bound = rss * (long)PAGE > hwm ? rss * (long)PAGE : hwm;
			v->stopped = true;
			if (v->frozen && !freeze_victim(v)) {
				thaw_victim(v);
				v->frozen = false;
			}
		} else {
			failure("victim %d (pid %d) ended on its own (code %d, status %d)",
				v->id, v->pid, si.si_code, si.si_status);
		}
	}
	if (rnd_below(rs, 2)) {
		/* v3: kill and reap in one call (a cap of 0: kill and doom only) */
		size_t cap = rnd_below(rs, 2) ? 0 : pick_cap(rs);
		long r = try_reap(v->pidfd, TRY_REAP_KILL, cap);
		int e = r < 0 ? errno : 0;

		atomic_fetch_add(&st_kill_calls, 1);
		if (r < 0 && e == EPERM)
			failure("victim %d: try_reap(TRY_REAP_KILL, cap %zu): EPERM for root",
				v->id, cap);
		else
			check_answer(v, cap, r, e, false, false, false);
	} else if (pidfd_kill(v->pidfd, SIGKILL) && errno != ESRCH) {
		failure("victim %d: pidfd_send_signal(SIGKILL): %s", v->id, strerror(errno));
	}
	/* From now on, EPERM is wrong. */
	atomic_store(&v->dying, true);
	v->state = V_KILLED;
	v->t_kill = now_s();
	if (v->frozen) {
		v->frozen = v->stopped;
		v->t_thaw = v->t_kill + (200 + rnd_below(rs, 800)) / 1000.0;
		st_frozen += v->frozen;
	}
}

static void retire(struct victim *v)
{
	long reaped;

	atomic_fetch_or(&v->users, RETIRED);
	while (atomic_load(&v->users) != RETIRED)
		sched_yield();
	reaped = atomic_load(&v->reaped);
	if (v->bound < 0)
		st_unbounded++;
	else if (reaped > v->bound)
		failure("victim %d (pid %d%s): reapers reaped %ld bytes in all, more than its %s %ld",
			v->id, v->pid, v->kind == K_OOM ? ", memcg OOM" : "", reaped,
			v->kind == K_OOM ? "memory.max + 4 MiB + our RSS at fork" : "RSS when stopped",
			v->bound);
	if (opt_verbose)
		fprintf(stderr, "reap_stress: victim %d pid %d %s threads %d calls %ld reaped %ld bound %ld\n",
			v->id, v->pid, v->kind == K_OOM ? "oom" : v->mrelease ? "kill+mrelease" : "kill",
			v->nthreads, atomic_load(&v->calls), reaped, v->bound);
	close(v->pidfd);
	close(v->ready_fd);
	if (v->kind == K_OOM)
		rmdir_retry(v->cg);
	if (v->frozen) {
		char dir[160];

		freezer_dir(v, dir, sizeof(dir));
		rmdir_retry(dir);
	}
	v->state = V_FREE;
}

/* Advance v's state machine; returns true if v is still in use. */
static bool step(struct victim *v, double now, bool ending, uint64_t *rs)
{
	siginfo_t si;
	char c;

	switch (v->state) {
	case V_STARTING:
		if (read(v->ready_fd, &c, 1) == 1) {
			v->state = V_READY;
			if (v->kind == K_OOM) {
				v->t_next = now + 10;	/* kill it ourselves if no OOM by then */
			} else {
				v->t_next = now + rnd_below(rs, 400) / 1000.0;
			}
		} else if (exited(v)) {
			/* An OOM victim may hit its limit early; others must not end. */
			if (v->kind != K_OOM || !cg_oom_kills(v->cg))
				failure("victim %d (pid %d) ended before it was ready", v->id, v->pid);
			v->state = V_KILLED;
			v->t_kill = now;
		} else if (ending || now > v->t_next) {
			if (!ending)
				failure("victim %d (pid %d) not ready after 60 s", v->id, v->pid);
			kill_victim(v, false, rs);
		}
		break;
	case V_READY:
		if (v->kind == K_OOM && exited(v)) {
			v->state = V_KILLED;
			v->t_kill = now;
		} else if (now >= v->t_next || ending) {
			if (v->kind == K_OOM && !ending)
				st_oom_timeouts++;
			kill_victim(v, v->kind == K_KILL, rs);
		}
		break;
	case V_KILLED:
		/* Frozen, it cannot exit: the reapers have it to themselves. */
		if (v->frozen && !v->thawed && now >= v->t_thaw)
			thaw_victim(v);
		if (exited(v)) {
			v->state = V_EXITED;
			/* a zombie for a while: reapers must get ESRCH */
			v->t_next = now + rnd_below(rs, 50) / 1000.0;
		} else if (now - v->t_kill > 120) {
			failure("victim %d (pid %d) has not exited 120 s after SIGKILL", v->id, v->pid);
			v->t_kill = now;
		}
		break;
	case V_EXITED:
		if (now < v->t_next)
			break;
		memset(&si, 0, sizeof(si));
		if (waitid(P_PIDFD, v->pidfd, &si, WEXITED)) {
			failure("victim %d: waitid: %s", v->id, strerror(errno));
		} else if (si.si_code != CLD_KILLED || si.si_status != SIGKILL) {
			failure("victim %d (pid %d) ended with code %d status %d, not SIGKILL",
				v->id, v->pid, si.si_code, si.si_status);
		}
		if (v->kind == K_OOM && cg_oom_kills(v->cg) > 0)
			st_oom_killed++;
		v->state = V_WAITED;
		v->t_next = now + rnd_below(rs, 50) / 1000.0;
		break;
	case V_WAITED:
		if (now >= v->t_next)
			retire(v);
		break;
	}
	return v->state != V_FREE;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: reap_stress --seconds N [--reapers R] [--victims M] [--victim-mb MB]\n"
		"                   [--oom-every K] [--oom-mb MB] [--seed S] [--verbose]\n"
		"Stress try_reap_dying_process(): R reaper threads (default 4) on M victims at\n"
		"a time (default 4) of about MB MiB each (default 16) for N seconds; every\n"
		"K-th victim (default 4; 0: none) runs into a memcg limit of --oom-mb MiB\n"
		"(default 24). Run as root inside the scripts/vm guest. Exit status 0 only if\n"
		"every answer was one the v2 ABI allows and no mm_struct leaked.\n");
}

static void save_and_set(const char *path, char *saved, size_t size, const char *val)
{
	saved[0] = 0;
	if (read_file(path, saved, size) > 0 && !write_file(path, val))
		return;
	saved[0] = 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "seconds", required_argument, NULL, 's' },
		{ "reapers", required_argument, NULL, 'r' },
		{ "victims", required_argument, NULL, 'v' },
		{ "victim-mb", required_argument, NULL, 'm' },
		{ "oom-every", required_argument, NULL, 'o' },
		{ "oom-mb", required_argument, NULL, 'l' },
		{ "seed", required_argument, NULL, 'S' },
		{ "verbose", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	const char *ptes_none = "/sys/kernel/mm/transparent_hugepage/khugepaged/max_ptes_none";
	const char *shrinker_enabled = REAP_DYING_SYSFS "/shrinker_enabled";
	char saved_ptes_none[32], saved_dump_tasks[32], saved_shrinker[32];
	pthread_t threads[64 + 3];
	int nthreads = 0, live, next_id = 0, opt;
	long mm_before, mm_after = -1;
	double t0, deadline, end_by;
	uint64_t rs;
	char buf[4 * KiB];

	opt_seed = (uint64_t)time(NULL) ^ getpid();
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 's': opt_seconds = atof(optarg); break;
		case 'r': opt_reapers = atoi(optarg); break;
		case 'v': opt_victims = atoi(optarg); break;
		case 'm': opt_victim_mb = atoi(optarg); break;
		case 'o': opt_oom_every = atoi(optarg); break;
		case 'l': opt_oom_mb = atoi(optarg); break;
		case 'S': opt_seed = strtoull(optarg, NULL, 0); break;
		case 'V': opt_verbose = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || opt_seconds <= 0 || opt_reapers < 1 || opt_reapers > 64 ||
	    opt_victims < 1 || opt_victims > 64 || opt_victim_mb < 2 || opt_oom_mb < 4) {
		usage(stderr);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (reap_read_syscall_nr()) {
		printf("reap_stress: FAIL: no /sys/kernel/mm/reap_dying/syscall_nr (not the patched kernel?)\n");
		return 1;
	}

	/* The private file mapping's backing file (tmpfs in the guest). */
	snprintf(file_path, sizeof(file_path), "/tmp/reap_stress.%d", getpid());
	{
		int fd = open(file_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		memset(buf, 0x5a, sizeof(buf));
		for (int i = 0; fd >= 0 && i < (int)(4 * MiB / sizeof(buf)); i++)
			if (write(fd, buf, sizeof(buf)) != sizeof(buf))
				break;
		if (fd >= 0)
			close(fd);
		file_fd = open(file_path, O_RDONLY);
		if (file_fd < 0) {
			printf("reap_stress: FAIL: cannot create %s: %s\n", file_path, strerror(errno));
			return 1;
		}
	}
	/* khugepaged must not grow a stopped victim's RSS by collapsing sparse ranges. */
	save_and_set(ptes_none, saved_ptes_none, sizeof(saved_ptes_none), "0");
	/* OOM reports are long; the task dump is not needed. */
	save_and_set("/proc/sys/vm/oom_dump_tasks", saved_dump_tasks, sizeof(saved_dump_tasks), "0");
	save_and_set(shrinker_enabled, saved_shrinker, sizeof(saved_shrinker), "1");
	setup_memcg();
	setup_freezer();

	nslots = 2 * opt_victims + 2;
	victims = calloc(nslots, sizeof(*victims));
	for (int i = 0; i < nslots; i++)
		atomic_store(&victims[i].users, RETIRED);
	mm_before = count_mm_structs();

	t0 = now_s();
	deadline = t0 + opt_seconds;
	end_by = deadline + 180;
	for (int i = 0; i < opt_reapers; i++)
		pthread_create(&threads[nthreads++], NULL, reaper, (void *)(uintptr_t)i);
	pthread_create(&threads[nthreads++], NULL, mreleaser, NULL);
	if (!access("/proc/sys/vm/compact_memory", W_OK))
		pthread_create(&threads[nthreads++], NULL, compactor, NULL);
	if (saved_shrinker[0])
		pthread_create(&threads[nthreads++], NULL, shrinker, NULL);

	rs = rnd_seed(opt_seed, 1);
	do {
		double now = now_s();
		bool ending = now >= deadline;
		int starting = 0;

		live = 0;
		for (int i = 0; i < nslots; i++) {
			struct victim *v = &victims[i];

			if (v->state == V_FREE)
				continue;
			live += step(v, now, ending, &rs);
			starting += v->state == V_STARTING || v->state == V_READY;
		}
		for (int i = 0; !ending && i < nslots && starting < opt_victims; i++) {
			if (victims[i].state == V_FREE) {
				spawn(&victims[i], next_id++, &rs);
				starting += victims[i].state != V_FREE;
				live += victims[i].state != V_FREE;
			}
		}
		if (now > end_by) {
			failure("victims still not gone %d s after the end", (int)(end_by - deadline));
			break;
		}
		sleep_us(2000);
	} while (live || now_s() < deadline);

	if (opt_verbose)
		fprintf(stderr, "reap_stress: all victims gone %.1f s after the deadline\n", now_s() - deadline);
	atomic_store(&stop_threads, true);
	for (int i = 0; i < nthreads; i++)
		pthread_join(threads[i], NULL);
	if (opt_verbose)
		fprintf(stderr, "reap_stress: threads joined %.1f s after the deadline\n", now_s() - deadline);

	/*
	 * Some references end late by design: the OOM reaper holds a memcg OOM
	 * victim's task (and with it signal->oom_mm) for OOM_REAPER_DELAY (2 s)
	 * and then up to ten 100 ms retries, longer in a slow debug guest. A
	 * leak never ends, so give them 30 s before calling it one.
	 */
	if (mm_before >= 0) {
		for (int i = 0; i < 120; i++) {
			mm_after = count_mm_structs();
			if (mm_after <= mm_before)
				break;
			sleep_us(250000);
		}
		if (mm_after > mm_before)
			failure("mm_struct leak? /proc/slabinfo counts %ld mm_structs after the run, %ld before",
				mm_after, mm_before);
	}

	if (saved_ptes_none[0])
		write_file(ptes_none, saved_ptes_none);
	if (saved_dump_tasks[0])
		write_file("/proc/sys/vm/oom_dump_tasks", saved_dump_tasks);
	if (saved_shrinker[0])
		write_file(shrinker_enabled, saved_shrinker);
	if (memcg_ok)
		rmdir_retry(cg_root);
	if (freezer_ok) {
		umount2(freezer_root, MNT_DETACH);
		rmdir(freezer_root);
	}
	close(file_fd);
	unlink(file_path);

	printf("reap_stress: %s (%.1f s, seed %llu, %d reapers): %ld victims (%ld memcg OOM-killed, "
	       "%ld OOM timeouts, %ld killed frozen, %ld also process_mrelease'd, %ld unbounded), "
	       "%ld calls: "
	       "%ld reaped %.1f MiB, 0: %ld, probes %ld, EAGAIN %ld (%ld after a 0), EBUSY %ld, "
	       "ESRCH %ld, EPERM %ld; TRY_REAP_KILL %ld; process_mrelease %ld (%ld ok); "
	       "compactions %ld; shrinker runs %ld; "
	       "mm_struct %ld -> %ld%s; %ld failures\n",
	       failures() ? "FAIL" : "PASS", now_s() - t0, (unsigned long long)opt_seed,
	       opt_reapers, st_victims, st_oom_killed, st_oom_timeouts, st_frozen, st_with_mrelease,
	       st_unbounded, atomic_load(&st_calls), atomic_load(&st_bytes_calls),
	       atomic_load(&st_bytes) / (double)MiB, atomic_load(&st_zero),
	       atomic_load(&st_probe), atomic_load(&st_eagain), atomic_load(&st_eagain_after_zero),
	       atomic_load(&st_ebusy), atomic_load(&st_esrch), atomic_load(&st_eperm),
	       atomic_load(&st_kill_calls), atomic_load(&st_mrelease), atomic_load(&st_mrelease_ok),
	       atomic_load(&st_compact), atomic_load(&st_shrinks),
	       mm_before, mm_after, memcg_ok ? "" : " (no memcg: no OOM victims)", failures());
	return failures() ? 1 : 0;
}
