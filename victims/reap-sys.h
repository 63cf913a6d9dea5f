/* SPDX-License-Identifier: MIT */
/*
 * What the C programs around pidfd-reap share (the benchmark's helpers
 * bench/reapbench.c and bench/bounds.c, and test/kernel/reap_common.h):
 * the raw system call numbers, try_reap_dying_process()'s number from
 * sysfs (never hard-coded: it differs between kernels), the clock, small
 * /proc and /sys reads, and whether a process ran between two looks.
 * Header-only (static inline), C11, glibc.
 */
#ifndef PIDFD_REAP_SYS_H
#define PIDFD_REAP_SYS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
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
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define REAP_DYING_SYSFS "/sys/kernel/mm/reap_dying"
/* try_reap_dying_process() flag, <linux/oom.h> of the v3 series */
#ifndef TRY_REAP_KILL
#define TRY_REAP_KILL 0x1u
#endif

/* CLOCK_MONOTONIC in ns: the clock of Node's process.hrtime(). */
static inline uint64_t reap_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Reads a small file into buf (NUL-terminated); its length, or -1. */
static inline int reap_read_text(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = 0;
	return (int)n;
}

/* A file holding one number (sysfs counters), or -1. */
static inline long long reap_read_number(const char *path)
{
	char buf[64];

	return reap_read_text(path, buf, sizeof(buf)) > 0 ? strtoll(buf, NULL, 10) : -1;
}

/* try_reap_dying_process()'s number on this kernel, or -1 without the series. */
static inline long reap_syscall_nr(void)
{
	return (long)reap_read_number(REAP_DYING_SYSFS "/syscall_nr");
}

/* The number after `key` in `text` (e.g. "\nvoluntary_ctxt_switches:"), or -1. */
static inline long long reap_field_after(const char *text, const char *key)
{
	const char *p = strstr(text, key);

	return p ? strtoll(p + strlen(key), NULL, 10) : -1;
}

/* Resident pages of a process (/proc/PID/statm), -1 once it is gone. */
static inline long long reap_rss_pages(int pid)
{
	char path[64], buf[256];
	long long size, resident;

	snprintf(path, sizeof(path), "/proc/%d/statm", pid);
	if (reap_read_text(path, buf, sizeof(buf)) <= 0 || sscanf(buf, "%lld %lld", &size, &resident) != 2)
		return -1;
	return resident;
}

/*
 * What shows whether a process ran: its CPU time (utime, stime in clock
 * ticks), its voluntary and involuntary context switches and, when the
 * kernel has schedstats, se.sum_exec_runtime in ns. A killed victim that
 * ran its exit changes at least one of them.
 */
struct reap_ran {
	long long utime, stime, nvcsw, nivcsw, sum_exec_ns;
	char state;
};

static inline struct reap_ran reap_read_ran(int pid)
{
	static char buf[16384];
	char path[64];
	struct reap_ran r = { -1, -1, -1, -1, -1, '?' };

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (reap_read_text(path, buf, sizeof(buf)) > 0) {
		char *p = strrchr(buf, ')');
		/* after ") ": state(3) ppid ... utime(14) stime(15) */
		if (!p || sscanf(p + 2, "%c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld", &r.state, &r.utime,
				 &r.stime) != 3)
			r.state = '?';
	}
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	if (reap_read_text(path, buf, sizeof(buf)) > 0) {
		r.nvcsw = reap_field_after(buf, "\nvoluntary_ctxt_switches:");
		r.nivcsw = reap_field_after(buf, "\nnonvoluntary_ctxt_switches:");
	}
	snprintf(path, sizeof(path), "/proc/%d/sched", pid);
	if (reap_read_text(path, buf, sizeof(buf)) > 0) {
		/* "se.sum_exec_runtime   :   1234.567890" (ms with ns decimals) */
		char *p = strstr(buf, "se.sum_exec_runtime");
		long long ms = 0, frac = 0;

		if (p && (p = strchr(p, ':')) && sscanf(p + 1, " %lld.%lld", &ms, &frac) >= 1)
			r.sum_exec_ns = ms * 1000000 + frac;
	}
	return r;
}

/* Nothing changed: the process did not run between the two looks. */
static inline int reap_same_ran(struct reap_ran a, struct reap_ran b)
{
	return a.utime == b.utime && a.stime == b.stime && a.nvcsw == b.nvcsw && a.nivcsw == b.nivcsw &&
	       a.sum_exec_ns == b.sum_exec_ns;
}

/* The two looks as JSON: {"state":"S","utime":..,"stime":..,"nvcsw":..,"nivcsw":..,"sumExecNs":..} */
static inline void reap_print_ran(FILE *out, struct reap_ran r)
{
	fprintf(out, "{\"state\":\"%c\",\"utime\":%lld,\"stime\":%lld,\"nvcsw\":%lld,\"nivcsw\":%lld,\"sumExecNs\":%lld}",
		r.state, r.utime, r.stime, r.nvcsw, r.nivcsw, r.sum_exec_ns);
}

#endif /* PIDFD_REAP_SYS_H */
