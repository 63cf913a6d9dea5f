// SPDX-License-Identifier: MIT
/*
 * reap_fuzz: random calls of try_reap_dying_process(), each checked against
 * what the v2 ABI (spec-v2, README) allows for that kind of fd in that
 * state. Run by scripts/stress-in-guest inside the scripts/vm guest, as
 * root; see --help.
 *
 * Three callers make the calls: this process (root), a child that drops
 * to uid/gid 65534 (so kill(2) permission fails for root's processes), and
 * one in a pid namespace of its own (if the kernel has them), for which
 * every pidfd it inherited names a process outside: EINVAL, while the
 * pidfds of its own children work.
 * The fds: pidfds of target processes this program starts (owned by root
 * or, after setuid, by 65534) through their life: live, killed (dying),
 * zombie, waited for; PIDFD_THREAD pidfds of a target's second thread and
 * of its leader (if the uapi headers have PIDFD_THREAD); pidfds of the
 * callers themselves, of init, of kthreadd and of its kernel threads; fds
 * that are no pidfd (a regular file, a pipe, /dev/null, an eventfd, a
 * socket, a memfd, an epoll fd, a /proc/PID directory); closed fd numbers
 * and negative ones. Flags are mostly 0, sometimes random bits; caps are 0,
 * 1, a page, odd sizes, around 2 MiB, U32_MAX, SIZE_MAX, huge and random.
 *
 * Every answer must be in the set the spec allows for the fd's kind and
 * the target's states seen before and after the call (once a call returned
 * 0 for a target, no bytes and no EAGAIN any more); bytes must be a page
 * multiple, at most max(PAGE_ALIGN(cap), 2 MiB), and per target sum to at
 * most its RSS (which is stable: targets only sleep once ready). Only
 * processes started here are ever signalled.
 *
 * Prints one summary line "reap_fuzz: PASS|FAIL ..."; exit status 0 only if
 * nothing failed.
 */
#include "reap_common.h"

#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define NOBODY 65534
#define NTARGETS 6
#define NKTHREADS 24

/* Target states, in the order they happen. */
enum { T_FREE, T_STARTING, T_LIVE, T_KILLING, T_KILLED, T_EXITED, T_WAITING, T_WAITED };

/* Outcomes, as bits of an allowed set. */
enum { O_BYTES, O_ZERO, O_EAGAIN, O_EBUSY, O_ESRCH, O_EPERM, O_EINVAL, O_EBADF, O_OTHER, NOUT };
static const char *const out_name[NOUT] = {
	"bytes", "0", "EAGAIN", "EBUSY", "ESRCH", "EPERM", "EINVAL", "EBADF", "other"
};
#define B(o) (1u << (o))

struct target {
	_Atomic unsigned int gen;	/* bumped when the slot gets a new process */
	_Atomic int state;
	_Atomic pid_t pid;
	_Atomic pid_t tid;		/* its second thread */
	_Atomic uid_t owner;
	_Atomic long bound;		/* RSS bytes when ready */
	_Atomic long reaped;		/* positive results of both callers */
	_Atomic bool empty;		/* a call with a cap returned 0: nothing left */
};

/* Shared by the root caller and the uid 65534 caller (MAP_SHARED). */
struct shared {
	_Atomic long failures;
	_Atomic bool stop;
	_Atomic long count[3][NOUT];
	_Atomic long calls[3];
	struct target t[NTARGETS];
};

static struct shared *sh;
static double opt_seconds = 20;
static uint64_t opt_seed;
static int opt_verbose;

/* --- fds of one caller -------------------------------------------------------------- */

/* Kinds of fds a call can get. */
enum { F_TARGET, F_TARGET_THREAD, F_TARGET_LEADER, F_LIVE_OTHER, F_KTHREAD, F_NOT_PIDFD,
       F_CLOSED, F_NEGATIVE, NKINDS };

/* A target of the pid-namespace caller: its own child, in its namespace. */
struct local_target {
	int fd, state;
	pid_t pid;
	double t_next;
};

struct caller {
	int idx;		/* 0 root, 1 uid 65534, 2 root in a pid namespace of its own */
	bool root;
	bool other_ns;		/* every pidfd it inherited names a process outside its namespace */
	struct local_target lt;
	uint64_t rs;
	/* per target slot: this caller's pidfds and the generation they are of */
	int fd[NTARGETS], tfd[NTARGETS], lfd[NTARGETS];
	unsigned int gen[NTARGETS];
	int live_other[4], nlive_other;		/* self, init, parent or child: never dying */
	int kthreadd;
	int kthread[NKTHREADS], nkthread;
	int notpidfd[12], nnotpidfd;
};

static void caller_open_common(struct caller *c)
{
	int sv[2], p[2], fd;
	char path[64];
	FILE *f;

	c->nlive_other = 0;
	c->live_other[c->nlive_other++] = pidfd_open(getpid(), 0);
	c->live_other[c->nlive_other++] = pidfd_open(1, 0);
	c->live_other[c->nlive_other++] = pidfd_open(getppid(), 0);
	c->kthreadd = pidfd_open(2, 0);
	c->nkthread = 0;
	f = fopen("/proc/2/task/2/children", "r");
	if (f) {
		int pid;

		while (c->nkthread < NKTHREADS && fscanf(f, "%d", &pid) == 1) {
			fd = pidfd_open(pid, 0);
			if (fd >= 0)
				c->kthread[c->nkthread++] = fd;
		}
		fclose(f);
	}
	c->nnotpidfd = 0;
	snprintf(path, sizeof(path), "/tmp/reap_fuzz.%d", getpid());
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd >= 0) {
		unlink(path);
		c->notpidfd[c->nnotpidfd++] = fd;
	}
	if (!pipe(p)) {
		c->notpidfd[c->nnotpidfd++] = p[0];
		c->notpidfd[c->nnotpidfd++] = p[1];
	}
	c->notpidfd[c->nnotpidfd++] = open("/dev/null", O_RDWR);
	c->notpidfd[c->nnotpidfd++] = eventfd(0, 0);
	if (!socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		c->notpidfd[c->nnotpidfd++] = sv[0];
	c->notpidfd[c->nnotpidfd++] = memfd_create("reap_fuzz", 0);
	c->notpidfd[c->nnotpidfd++] = epoll_create1(0);
	/* a /proc/PID directory names a process but is no pidfd */
	c->notpidfd[c->nnotpidfd++] = open("/proc/1", O_RDONLY | O_DIRECTORY);
	c->notpidfd[c->nnotpidfd++] = open("/proc/self", O_RDONLY | O_DIRECTORY);
	for (int i = 0; i < NTARGETS; i++)
		c->fd[i] = c->tfd[i] = c->lfd[i] = -1;
}

static void caller_close_target(struct caller *c, int i)
{
	if (c->fd[i] >= 0)
		close(c->fd[i]);
	if (c->tfd[i] >= 0)
		close(c->tfd[i]);
	if (c->lfd[i] >= 0)
		close(c->lfd[i]);
	c->fd[i] = c->tfd[i] = c->lfd[i] = -1;
}

/*
 * State of target i as of generation gen: T_WAITED once the slot moved on
 * to another process (our pidfd then names a process that was waited for).
 */
static int target_state(int i, unsigned int gen)
{
	struct target *t = &sh->t[i];
	unsigned int g1 = atomic_load(&t->gen);
	int s = atomic_load(&t->state);
	unsigned int g2 = atomic_load(&t->gen);

	/* T_FREE after T_WAITED: the slot's process is gone, none started yet */
	return g1 == gen && g2 == gen && s != T_FREE ? s : T_WAITED;
}

/*
 * Make sure the caller has pidfds for the current process of slot i, if it
 * can still get some safely: a process that is not yet waited for (so its
 * pid is not reused). Returns false if it has none.
 */
static bool caller_get_target(struct caller *c, int i)
{
	struct target *t = &sh->t[i];
	unsigned int gen = atomic_load(&t->gen);
	int s = target_state(i, gen), fd, tfd = -1, lfd = -1;
	pid_t pid, tid;

	if (c->fd[i] >= 0 && c->gen[i] == gen)
		return true;
	if (c->fd[i] >= 0 && rnd_below(&c->rs, 4))
		return true;	/* keep calling on the old, waited-for process for a while */
	caller_close_target(c, i);
	if (s < T_LIVE || s >= T_WAITING)
		return false;
	pid = atomic_load(&t->pid);
	tid = atomic_load(&t->tid);
	fd = pidfd_open(pid, 0);
	if (fd < 0)
		return false;
	if (reap_pidfd_thread) {
		lfd = pidfd_open(pid, reap_pidfd_thread);
		if (tid > 0)
			tfd = pidfd_open(tid, reap_pidfd_thread);
	}
	/* Still the same process, not yet waited for: the pidfds name it. */
	s = target_state(i, gen);
	if (s < T_LIVE || s >= T_WAITING) {
		close(fd);
		if (lfd >= 0)
			close(lfd);
		if (tfd >= 0)
			close(tfd);
		return false;
	}
	c->fd[i] = fd;
	c->tfd[i] = tfd;
	c->lfd[i] = lfd;
	c->gen[i] = gen;
	return true;
}

/* --- what the spec allows ------------------------------------------------------------- */

/* Answers for a target's process in state s, for a caller that may (perm) kill it or not. */
static unsigned int allowed_in(int s, bool perm, size_t cap)
{
	unsigned int dying = cap ? B(O_BYTES) | B(O_ZERO) | B(O_EAGAIN) | B(O_EBUSY) | B(O_ESRCH)
				 : B(O_ZERO) | B(O_ESRCH);

	switch (s) {
	case T_STARTING:
	case T_LIVE:
		return B(O_EPERM);
	case T_KILLING:
		return B(O_EPERM) | (perm ? dying : 0);
	case T_KILLED:
		return perm ? dying : B(O_EPERM);
	/*
	 * A zombie: ESRCH, or, with v3, 0 (nothing left) when an earlier call
	 * reached its mm and so kept it reachable until it was torn down.
	 */
	case T_EXITED:
		return perm ? B(O_ESRCH) | B(O_ZERO) : B(O_EPERM);
	case T_WAITING:
		return perm ? B(O_ESRCH) | B(O_ZERO) : B(O_EPERM) | B(O_ESRCH);
	default:
		return B(O_ESRCH);
	}
}

static int outcome(long r, int e)
{
	if (r > 0)
		return O_BYTES;
	if (r == 0)
		return O_ZERO;
	switch (e) {
	case EAGAIN: return O_EAGAIN;
	case EBUSY: return O_EBUSY;
	case ESRCH: return O_ESRCH;
	case EPERM: return O_EPERM;
	case EINVAL: return O_EINVAL;
	case EBADF: return O_EBADF;
	default: return O_OTHER;
	}
}

static size_t pick_cap(uint64_t *rs)
{
	switch (rnd_below(rs, 18)) {
	case 0: case 1: return 0;
	case 2: return 1;
	case 3: return PAGE - 1;
	case 4: return PAGE;
	case 5: return PAGE + 1;
	case 6: return 3 * PAGE + 1234;
	case 7: return 64 * KiB;
	case 8: return MiB;
	case 9: return PMD_BYTES - 1;
	case 10: return PMD_BYTES;
	case 11: return PMD_BYTES + 1;
	case 12: return rnd_below(rs, 64 * MiB);
	case 13: return UINT32_MAX;
	case 14: return (size_t)UINT32_MAX + 1;
	case 15: return SIZE_MAX;
	case 16: return rnd_below(rs, 2) ? SIZE_MAX - 1 : (size_t)1 << 63;
	default: return rnd_next(rs);
	}
}

/*
 * 0 or an invalid set of flags. TRY_REAP_KILL alone (0x1) is left out: it
 * would kill the live processes the fuzzer keeps as refusal targets; the
 * kselftest covers it.
 */
static unsigned int pick_flags(uint64_t *rs)
{
	unsigned int flags;

	if (rnd_below(rs, 8))
		return 0;
	switch (rnd_below(rs, 5)) {
	case 0: flags = 1u << rnd_below(rs, 32); break;
	case 1: flags = 0xffffffffu; break;
	case 2: flags = O_EXCL; break;		/* PIDFD_THREAD's value */
	case 3: flags = O_NONBLOCK; break;
	default: flags = (unsigned int)rnd_next(rs) | 1; break;
	}
	return flags == TRY_REAP_KILL ? flags | 2 : flags;
}

static const char *kind_name[NKINDS] = {
	"target pidfd", "target thread pidfd", "target leader PIDFD_THREAD pidfd",
	"pidfd of a live process", "kernel thread pidfd", "fd that is no pidfd",
	"closed fd", "negative fd"
};

/* One random call by caller c, checked. */
static void fuzz_one(struct caller *c)
{
	int kind = rnd_below(&c->rs, 20), fd = -1, slot = -1, s0 = T_WAITED, s1 = T_WAITED, o;
	bool empty = false;
	unsigned int flags = pick_flags(&c->rs), allowed = 0, gen = 0;
	size_t cap = pick_cap(&c->rs);
	long r;
	int e;

	/* weights: targets 11/20, kernel threads 2/20, the rest 1/20 or so */
	kind = kind < 7 ? F_TARGET : kind < 9 ? F_TARGET_THREAD : kind < 11 ? F_TARGET_LEADER :
	       kind < 13 ? F_LIVE_OTHER : kind < 15 ? F_KTHREAD : kind < 17 ? F_NOT_PIDFD :
	       kind < 19 ? F_CLOSED : F_NEGATIVE;
	if (c->other_ns) {
		/* pidfds from outside: EINVAL (as pidfd_send_signal) before anything else */
		if (kind == F_LIVE_OTHER || kind == F_KTHREAD)
			allowed = B(O_EINVAL);
		if (kind == F_TARGET || kind == F_TARGET_THREAD || kind == F_TARGET_LEADER) {
			/* its own child: a descendant's pidfd is fine */
			if (c->lt.fd < 0)
				return;
			fd = c->lt.fd;
			s0 = c->lt.state;
			kind = F_TARGET;
		} else if (kind == F_LIVE_OTHER) {
			fd = c->live_other[rnd_below(&c->rs, c->nlive_other)];
		} else if (kind == F_KTHREAD) {
			fd = c->nkthread && rnd_below(&c->rs, 2) ?
			     c->kthread[rnd_below(&c->rs, c->nkthread)] : c->kthreadd;
		}
		if (fd >= 0)
			goto picked;
		/* fds that are no pidfd of anyone's: as for every caller, below */
		if (kind == F_NOT_PIDFD && !c->nnotpidfd)
			return;
		if (kind != F_NEGATIVE && kind != F_CLOSED && kind != F_NOT_PIDFD)
			return;
	}
	switch (kind) {
	case F_TARGET:
	case F_TARGET_THREAD:
	case F_TARGET_LEADER:
		slot = rnd_below(&c->rs, NTARGETS);
		/* mostly a dying one, if there is one: their answers vary most */
		for (int i = 0; i < NTARGETS && rnd_below(&c->rs, 4); i++) {
			int st = atomic_load(&sh->t[(slot + i) % NTARGETS].state);

			if (st == T_KILLING || st == T_KILLED) {
				slot = (slot + i) % NTARGETS;
				break;
			}
		}
		if (!caller_get_target(c, slot))
			return;
		fd = kind == F_TARGET ? c->fd[slot] : kind == F_TARGET_THREAD ? c->tfd[slot] : c->lfd[slot];
		if (fd < 0)
			return;
		gen = c->gen[slot];
		empty = atomic_load(&sh->t[slot].empty);
		s0 = target_state(slot, gen);
		if (s0 == T_WAITED)
			empty = false;	/* it may be another process's */
		break;
	case F_LIVE_OTHER:
		fd = c->live_other[rnd_below(&c->rs, c->nlive_other)];
		allowed = B(O_EPERM);
		break;
	case F_KTHREAD:
		if (rnd_below(&c->rs, 4) == 0 || !c->nkthread) {
			fd = c->kthreadd;
			allowed = B(O_EINVAL);
		} else {
			fd = c->kthread[rnd_below(&c->rs, c->nkthread)];
			allowed = B(O_EINVAL) | B(O_ESRCH);	/* kworkers come and go */
		}
		break;
	case F_NOT_PIDFD:
		fd = c->notpidfd[rnd_below(&c->rs, c->nnotpidfd)];
		allowed = B(O_EINVAL);
		break;
	case F_CLOSED:
		switch (rnd_below(&c->rs, 3)) {
		case 0: fd = 300 + rnd_below(&c->rs, 700); break;
		case 1: fd = 1 << 20; break;
		default: fd = INT_MAX; break;
		}
		if (fcntl(fd, F_GETFD) >= 0)
			return;		/* happens to be open */
		allowed = B(O_EBADF);
		break;
	default:
		fd = rnd_below(&c->rs, 2) ? -1 - (int)rnd_below(&c->rs, 1000) : INT_MIN;
		allowed = B(O_EBADF);
		break;
	}
	if (fd < 0 && kind != F_NEGATIVE)
		return;
picked:

	errno = 0;
	r = try_reap(fd, flags, cap);
	e = r < 0 ? errno : 0;
	o = outcome(r, e);

	if (c->other_ns && kind == F_TARGET) {
		for (int s = s0; s <= c->lt.state; s++)
			allowed |= allowed_in(s, true, cap);
	}
	if (slot >= 0) {
		bool perm = c->root || atomic_load(&sh->t[slot].owner) == NOBODY;

		s1 = target_state(slot, gen);
		for (int s = s0; s <= s1; s++)
			allowed |= allowed_in(s, perm, cap);
		if (kind == F_TARGET_THREAD)
			allowed |= B(O_ESRCH);	/* the thread may be gone before its process */
		if (o == O_BYTES && s1 != T_WAITED)
			atomic_fetch_add(&sh->t[slot].reaped, r);
		/* once nothing is left, later calls answer 0 (or EBUSY, ESRCH) */
		if (empty && !flags && (o == O_BYTES || o == O_EAGAIN))
			allowed &= ~(B(O_BYTES) | B(O_EAGAIN));
		if (o == O_ZERO && cap && !flags && s1 != T_WAITED)
			atomic_store(&sh->t[slot].empty, true);
	}
	if (flags)
		allowed = B(O_EINVAL);	/* checked first */

	atomic_fetch_add(&sh->count[c->idx][o], 1);
	atomic_fetch_add(&sh->calls[c->idx], 1);
	if (!(allowed & B(o))) {
		char states[64] = "";

		if (slot >= 0)
			snprintf(states, sizeof(states), ", target %d state %d..%d owner %d", slot,
				 s0, target_state(slot, gen), (int)atomic_load(&sh->t[slot].owner));
		failure("%s caller: %s %d, flags %#x, cap %zu: got %s (%ld, %s)%s%s",
			c->other_ns ? "pid namespace" : c->root ? "root" : "uid 65534",
			c->other_ns && kind == F_TARGET ? "pidfd of its own child" : kind_name[kind],
			fd, flags, cap,
			out_name[o], r, r < 0 ? errname(e) : "-", states,
			empty ? ", after a call had returned 0 (nothing left)" : "");
	} else if (o == O_BYTES && (r % PAGE || (size_t)r > reap_call_bound(cap))) {
		failure("%s caller: %s: %ld bytes for cap %zu (bound max(PAGE_ALIGN(cap), 2 MiB))",
			c->root ? "root" : "uid 65534", kind_name[kind], r, cap);
	}
}

/* --- targets (managed by the root caller) ------------------------------------------------ */

static void *sleeper(void *arg)
{
	struct target *t = arg;

	atomic_store(&t->tid, gettid());
	for (;;)
		pause();
	return NULL;
}

static void __attribute__((noreturn)) target_main(struct target *t, int ready_wr, uid_t owner,
						  size_t len, bool thp)
{
	pthread_t th;
	char *p;

	if (owner == NOBODY && (setgroups(0, NULL) || setgid(NOBODY) || setuid(NOBODY)))
		_exit(3);
	prctl(PR_SET_PDEATHSIG, SIGKILL);	/* after setuid(), which clears it */
	p = mmap(NULL, len + PMD_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		_exit(3);
	if (thp) {
		/* whole aligned THPs only: khugepaged then has nothing to collapse */
		p = (char *)(((uintptr_t)p + PMD_BYTES - 1) & ~(PMD_BYTES - 1));
		len &= ~(PMD_BYTES - 1);
		madvise(p, len, MADV_HUGEPAGE);
	}
	for (size_t off = 0; off < len; off += PAGE)
		p[off] = 1;
	/* read only: zero pages, in no RSS, must not be counted when unmapped */
	p = mmap(NULL, 4 * MiB, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p != MAP_FAILED) {
		volatile char sink = 0;

		if (thp)
			madvise(p, 4 * MiB, MADV_HUGEPAGE);
		for (size_t off = 0; off < 4 * MiB; off += PAGE)
			sink += p[off];
	}
	if (pthread_create(&th, NULL, sleeper, t))
		_exit(3);
	while (!atomic_load(&t->tid))
		sleep_us(1000);
	if (write(ready_wr, "r", 1) != 1)
		_exit(3);
	for (;;)
		pause();
}

struct slot {
	int pidfd;		/* the root caller's own, for killing and waiting */
	int ready_fd;
	double t_next;
};

static long st_targets, st_nobody_targets;

static void spawn_target(struct caller *c, struct slot *sl, int i)
{
	struct target *t = &sh->t[i];
	uid_t owner = rnd_below(&c->rs, 3) == 0 ? NOBODY : 0;
	size_t len = (2 + rnd_below(&c->rs, 30)) * MiB;
	bool thp = rnd_below(&c->rs, 2);
	int p[2];
	pid_t pid;

	if (pipe2(p, O_CLOEXEC))
		return;
	atomic_fetch_add(&t->gen, 1);
	atomic_store(&t->tid, 0);
	atomic_store(&t->reaped, 0);
	atomic_store(&t->empty, false);
	atomic_store(&t->bound, -1);
	atomic_store(&t->owner, owner);
	atomic_store(&t->state, T_STARTING);
	pid = fork();
	if (pid < 0) {
		failure("fork: %s", strerror(errno));
		atomic_store(&t->state, T_FREE);
		close(p[0]);
		close(p[1]);
		return;
	}
	if (!pid) {
		close(p[0]);
		target_main(t, p[1], owner, len, thp);
	}
	close(p[1]);
	atomic_store(&t->pid, pid);
	sl->ready_fd = p[0];
	fcntl(sl->ready_fd, F_SETFL, O_NONBLOCK);
	sl->pidfd = pidfd_open(pid, 0);
	sl->t_next = now_s() + 60;
	st_targets++;
	st_nobody_targets += owner == NOBODY;
}

static bool has_exited(int pidfd)
{
	struct pollfd pfd = { .fd = pidfd, .events = POLLIN };

	return poll(&pfd, 1, 0) == 1;
}

static void kill_target(struct target *t, struct slot *sl)
{
	atomic_store(&t->state, T_KILLING);
	if (pidfd_kill(sl->pidfd, SIGKILL))
		failure("pidfd_send_signal(SIGKILL): %s", strerror(errno));
	atomic_store(&t->state, T_KILLED);
}

/* Advance target i; ending: kill it and see it through. Returns true while it is in use. */
static bool step_target(struct caller *c, struct slot *sl, int i, bool ending)
{
	struct target *t = &sh->t[i];
	double now = now_s();
	siginfo_t si;
	long rss, hwm, reaped;
	char ch;

	switch (atomic_load(&t->state)) {
	case T_FREE:
		if (!ending)
			spawn_target(c, sl, i);
		break;
	case T_STARTING:
		if (read(sl->ready_fd, &ch, 1) == 1) {
			rss = statm_resident(atomic_load(&t->pid));
			hwm = status_kb(atomic_load(&t->pid), "VmHWM");
			atomic_store(&t->bound, rss * (long)PAGE > hwm ? rss * (long)PAGE : hwm);
			atomic_store(&t->state, T_LIVE);
			sl->t_next = now + rnd_below(&c->rs, 300) / 1000.0;
		} else if (has_exited(sl->pidfd) || now > sl->t_next || ending) {
			if (!ending)
				failure("target %d did not get ready", i);
			kill_target(t, sl);
		}
		break;
	case T_LIVE:
		if (ending || now >= sl->t_next)
			kill_target(t, sl);
		break;
	case T_KILLED:
		if (has_exited(sl->pidfd)) {
			atomic_store(&t->state, T_EXITED);
			sl->t_next = now + rnd_below(&c->rs, 40) / 1000.0;
		}
		break;
	case T_EXITED:
		if (now < sl->t_next && !ending)
			break;
		atomic_store(&t->state, T_WAITING);
		memset(&si, 0, sizeof(si));
		if (waitid(P_PIDFD, sl->pidfd, &si, WEXITED))
			failure("waitid: %s", strerror(errno));
		else if (si.si_code != CLD_KILLED || si.si_status != SIGKILL)
			failure("target %d ended with code %d status %d", i, si.si_code, si.si_status);
		atomic_store(&t->state, T_WAITED);
		sl->t_next = now + rnd_below(&c->rs, 40) / 1000.0;
		break;
	case T_WAITED:
		if (now < sl->t_next && !ending)
			break;
		reaped = atomic_load(&t->reaped);
		if (atomic_load(&t->bound) >= 0 && reaped > atomic_load(&t->bound))
			failure("target %d: the callers reaped %ld bytes in all, more than its RSS %ld",
				i, reaped, atomic_load(&t->bound));
		if (opt_verbose)
			fprintf(stderr, "reap_fuzz: target %d pid %d owner %d reaped %ld of %ld\n", i,
				atomic_load(&t->pid), atomic_load(&t->owner), reaped,
				atomic_load(&t->bound));
		close(sl->pidfd);
		close(sl->ready_fd);
		atomic_store(&t->state, T_FREE);
		return !ending;
	}
	return atomic_load(&t->state) != T_FREE;
}

/* --- the caller in a pid namespace of its own ------------------------------------------------ */

/* Its own child's life: live, killed, zombie, waited for, then a new one. */
static void ns_step(struct caller *c)
{
	struct local_target *lt = &c->lt;
	double now = now_s();
	siginfo_t si;
	pid_t pid;

	switch (lt->state) {
	case T_FREE:
		pid = fork();
		if (pid < 0)
			return;
		if (!pid) {
			char *p = mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

			for (size_t off = 0; p != MAP_FAILED && off < 4 * MiB; off += PAGE)
				p[off] = 1;
			for (;;)
				pause();
		}
		lt->pid = pid;
		lt->fd = pidfd_open(pid, 0);
		lt->state = T_LIVE;
		lt->t_next = now + rnd_below(&c->rs, 100) / 1000.0;
		break;
	case T_LIVE:
		if (now >= lt->t_next) {
			lt->state = T_KILLING;
			pidfd_kill(lt->fd, SIGKILL);
			lt->state = T_KILLED;
		}
		break;
	case T_KILLED:
		if (has_exited(lt->fd))
			lt->state = T_EXITED;
		break;
	case T_EXITED:
		lt->state = T_WAITING;
		waitid(P_PIDFD, lt->fd, &si, WEXITED);
		lt->state = T_WAITED;
		lt->t_next = now + rnd_below(&c->rs, 20) / 1000.0;
		break;
	case T_WAITED:
		if (now >= lt->t_next) {
			close(lt->fd);
			lt->fd = -1;
			lt->state = T_FREE;
		}
		break;
	}
}

/*
 * Runs as pid 1 of a new pid namespace, with the root caller's fds, all of
 * which name processes outside it (or are no pidfds).
 */
static void __attribute__((noreturn)) ns_main(struct caller *parent)
{
	struct caller c = *parent;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	c.idx = 2;
	c.other_ns = true;
	c.rs = rnd_seed(opt_seed, 3);
	c.lt.fd = -1;
	c.lt.state = T_FREE;
	while (!atomic_load(&sh->stop)) {
		ns_step(&c);
		for (int i = 0; i < 20; i++)
			fuzz_one(&c);
		sleep_us(1000);
	}
	if (c.lt.fd >= 0)
		pidfd_kill(c.lt.fd, SIGKILL);
	_exit(0);
}

/* Start the pid-namespace caller; returns the pid of its parent, or 0. */
static pid_t start_ns_caller(struct caller *c)
{
	pid_t pid = fork();

	if (pid)
		return pid > 0 ? pid : 0;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (unshare(CLONE_NEWPID))
		_exit(4);	/* no pid namespaces: skipped */
	pid = fork();
	if (pid < 0)
		_exit(1);
	if (!pid)
		ns_main(c);
	int status;

	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

/* --- the uid 65534 caller ----------------------------------------------------------------- */

static void __attribute__((noreturn)) nobody_main(int ready_wr)
{
	struct caller c = { .idx = 1, .root = false, .rs = rnd_seed(opt_seed, 2) };

	if (setgroups(0, NULL) || setgid(NOBODY) || setuid(NOBODY)) {
		failure("cannot become uid %d: %s", NOBODY, strerror(errno));
		_exit(1);
	}
	prctl(PR_SET_PDEATHSIG, SIGKILL);	/* after setuid(), which clears it */
	caller_open_common(&c);
	if (write(ready_wr, "r", 1) != 1)
		_exit(1);
	close(ready_wr);
	while (!atomic_load(&sh->stop)) {
		for (int i = 0; i < 50; i++)
			fuzz_one(&c);
		sleep_us(500);
	}
	_exit(0);
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: reap_fuzz --seconds N [--seed S] [--verbose]\n"
		"Random try_reap_dying_process() calls for N seconds (default 20), by root and\n"
		"by a uid 65534 child, each checked against the answers the v2 ABI allows.\n"
		"Run as root inside the scripts/vm guest. Exit status 0 only if all were.\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "seconds", required_argument, NULL, 's' },
		{ "seed", required_argument, NULL, 'S' },
		{ "verbose", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	struct caller c = { .idx = 0, .root = true };
	struct slot slots[NTARGETS];
	double t0, deadline;
	int opt, p[2], status = 0;
	pid_t nobody, ns;
	bool busy;
	char ch;

	opt_seed = (uint64_t)time(NULL) ^ getpid();
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 's': opt_seconds = atof(optarg); break;
		case 'S': opt_seed = strtoull(optarg, NULL, 0); break;
		case 'V': opt_verbose = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || opt_seconds <= 0) {
		usage(stderr);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (reap_read_syscall_nr()) {
		printf("reap_fuzz: FAIL: no /sys/kernel/mm/reap_dying/syscall_nr (not the patched kernel?)\n");
		return 1;
	}
	if (geteuid()) {
		printf("reap_fuzz: FAIL: must run as root (it also calls as uid %d)\n", NOBODY);
		return 1;
	}
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		return 1;
	reap_failures = &sh->failures;
	c.rs = rnd_seed(opt_seed, 1);

	/* the unprivileged caller; it inherits nothing it needs, it opens its own fds */
	if (pipe(p))
		return 1;
	nobody = fork();
	if (nobody < 0)
		return 1;
	if (!nobody) {
		close(p[0]);
		nobody_main(p[1]);
	}
	close(p[1]);
	if (read(p[0], &ch, 1) != 1)
		failure("the uid %d caller did not start", NOBODY);
	close(p[0]);
	caller_open_common(&c);
	/* a live process of another uid: the unprivileged caller */
	c.live_other[c.nlive_other++] = pidfd_open(nobody, 0);
	ns = start_ns_caller(&c);

	t0 = now_s();
	deadline = t0 + opt_seconds;
	do {
		bool ending = now_s() >= deadline;

		busy = false;
		for (int i = 0; i < NTARGETS; i++)
			busy |= step_target(&c, &slots[i], i, ending);
		for (int i = 0; i < 20; i++)
			fuzz_one(&c);
		sleep_us(500);
		if (now_s() > deadline + 120) {
			failure("targets not gone 120 s after the end");
			break;
		}
	} while (busy || now_s() < deadline);

	atomic_store(&sh->stop, true);
	if (waitpid(nobody, &status, 0) != nobody || !WIFEXITED(status))
		failure("the uid %d caller ended badly (status %#x)", NOBODY, status);
	status = 4;
	if (ns && (waitpid(ns, &status, 0) != ns || !WIFEXITED(status) ||
		   (WEXITSTATUS(status) && WEXITSTATUS(status) != 4)))
		failure("the pid namespace caller ended badly (status %#x)", status);

	printf("reap_fuzz: %s (%.1f s, seed %llu): %ld calls (root %ld, uid %d %ld, "
	       "pid namespace %s%ld) on %ld targets (%ld owned by uid %d), thread pidfds %s:",
	       failures() ? "FAIL" : "PASS", now_s() - t0, (unsigned long long)opt_seed,
	       atomic_load(&sh->calls[0]) + atomic_load(&sh->calls[1]) + atomic_load(&sh->calls[2]),
	       atomic_load(&sh->calls[0]), NOBODY, atomic_load(&sh->calls[1]),
	       WIFEXITED(status) && WEXITSTATUS(status) == 4 ? "none: unshare failed " : "",
	       atomic_load(&sh->calls[2]), st_targets, st_nobody_targets, NOBODY,
	       reap_pidfd_thread ? "yes" : "no (headers lack PIDFD_THREAD)");
	for (int o = 0; o < NOUT; o++)
		printf(" %s %ld", out_name[o], atomic_load(&sh->count[0][o]) +
		       atomic_load(&sh->count[1][o]) + atomic_load(&sh->count[2][o]));
	printf("; %ld failures\n", failures());
	return failures() ? 1 : 0;
}
