/* SPDX-License-Identifier: MIT */
/*
 * Shared helpers of test/kernel/reap_stress.c and test/kernel/reap_fuzz.c:
 * raw system calls, the try_reap_dying_process() number from sysfs, the
 * v2 bound on one call's result, a per-thread PRNG, timing, and failure
 * reporting (the first few failures in full, the rest counted).
 */
#ifndef REAP_COMMON_H
#define REAP_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Syscall numbers, sysfs and clock helpers shared with the benchmark */
#include "../../victims/reap-sys.h"

#define KiB (1024UL)
#define MiB (1024UL * 1024)
#define PAGE 4096UL
#define PMD_BYTES (2 * MiB)

/*
 * PIDFD_THREAD of the uapi headers the program was built against (the
 * patched tree's, see scripts/stress-in-guest), 0 if they lack it. In its
 * own file, reap_uapi.c: <linux/pidfd.h> conflicts with glibc's <fcntl.h>.
 */
extern const int reap_pidfd_thread;

static long reap_nr = -1;

/* The number is not stable across trees: read it, never hard-code it. */
static inline int reap_read_syscall_nr(void)
{
	reap_nr = reap_syscall_nr();
	return reap_nr > 0 ? 0 : -1;
}

static inline long try_reap(int pidfd, unsigned int flags, size_t max_bytes)
{
	return syscall(reap_nr, pidfd, flags, max_bytes);
}

static inline int pidfd_open(pid_t pid, unsigned int flags)
{
	return syscall(SYS_pidfd_open, pid, flags);
}

static inline int pidfd_kill(int pidfd, int sig)
{
	return syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

static inline int process_mrelease(int pidfd, unsigned int flags)
{
	return syscall(SYS_process_mrelease, pidfd, flags);
}

/*
 * spec-v2: result <= max(PAGE_ALIGN(max_bytes), 2 MiB); SIZE_MAX means no
 * cap (returns SIZE_MAX here). Computed without overflow.
 */
static inline size_t reap_call_bound(size_t cap)
{
	size_t pages = cap / PAGE + (cap % PAGE != 0);

	if (cap == SIZE_MAX || pages > SIZE_MAX / PAGE)
		return SIZE_MAX;
	return pages * PAGE > PMD_BYTES ? pages * PAGE : PMD_BYTES;
}

/* xorshift64*: one state per thread, seeded from --seed. */
static inline uint64_t rnd_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static inline uint64_t rnd_below(uint64_t *s, uint64_t n)
{
	return n ? rnd_next(s) % n : 0;
}

static inline uint64_t rnd_seed(uint64_t seed, uint64_t stream)
{
	uint64_t s = seed * 0x9E3779B97F4A7C15ULL + stream * 0xBF58476D1CE4E5B9ULL + 1;

	for (int i = 0; i < 4; i++)
		rnd_next(&s);
	return s ? s : 1;
}

static inline double now_s(void)
{
	return reap_now_ns() / 1e9;
}

static inline void sleep_us(long us)
{
	struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* errno name for the summaries and failure messages */
static inline const char *errname(int e)
{
	switch (e) {
	case 0: return "0";
	case EPERM: return "EPERM";
	case ESRCH: return "ESRCH";
	case EINTR: return "EINTR";
	case EBADF: return "EBADF";
	case EAGAIN: return "EAGAIN";
	case ENOMEM: return "ENOMEM";
	case EACCES: return "EACCES";
	case EFAULT: return "EFAULT";
	case EBUSY: return "EBUSY";
	case EINVAL: return "EINVAL";
	case ENOSYS: return "ENOSYS";
	default: return strerrorname_np(e) ? strerrorname_np(e) : "E?";
	}
}

/*
 * Failures: counted in a (possibly shared, see reap_fuzz.c) counter; the
 * first REAP_MAX_REPORTS are printed to stderr with their details.
 */
#define REAP_MAX_REPORTS 25
static _Atomic long *reap_failures;
static _Atomic long reap_failures_local;

__attribute__((format(printf, 1, 2)))
static inline void failure(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	long n;

	if (!reap_failures)
		reap_failures = &reap_failures_local;
	n = atomic_fetch_add(reap_failures, 1);
	if (n >= REAP_MAX_REPORTS)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	/* One write: lines of threads and processes do not interleave. */
	dprintf(2, "FAIL: %s%s\n", buf,
		n == REAP_MAX_REPORTS - 1 ? " (further failures are only counted)" : "");
}

static inline long failures(void)
{
	return reap_failures ? atomic_load(reap_failures) : 0;
}

/* Write a string to a sysfs/procfs/cgroup file; returns 0 or -errno. */
static inline int write_file(const char *path, const char *s)
{
	FILE *f = fopen(path, "w");
	int ret = 0;

	if (!f)
		return -errno;
	if (fputs(s, f) < 0)
		ret = -errno;
	if (fclose(f) && !ret)
		ret = -errno;
	return ret;
}

/* Read a whole small file into buf; returns its length or -1. */
static inline ssize_t read_file(const char *path, char *buf, size_t size)
{
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return -1;
	n = fread(buf, 1, size - 1, f);
	buf[n] = 0;
	fclose(f);
	return n;
}

/* Resident pages of a process (/proc/PID/statm, 2nd field), -1 if gone. */
static inline long statm_resident(pid_t pid)
{
	char path[64], buf[256];
	long size, res;

	snprintf(path, sizeof(path), "/proc/%d/statm", pid);
	if (read_file(path, buf, sizeof(buf)) < 0 || sscanf(buf, "%ld %ld", &size, &res) != 2)
		return -1;
	return res;
}

/* A "Name:   N kB" field of /proc/PID/status, in bytes; -1 if absent. */
static inline long status_kb(pid_t pid, const char *name)
{
	char path[64], buf[4096], *p;
	size_t len = strlen(name);

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	if (read_file(path, buf, sizeof(buf)) < 0)
		return -1;
	for (p = buf; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (!strncmp(p, name, len) && p[len] == ':')
			return atol(p + len + 1) * 1024;
	return -1;
}

#endif /* REAP_COMMON_H */
