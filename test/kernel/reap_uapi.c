/* SPDX-License-Identifier: MIT */
/*
 * The pidfd_open() flags of the uapi headers the tests are built against
 * (scripts/stress-in-guest passes the patched tree's). Alone in this file
 * because <linux/pidfd.h> pulls in <linux/fcntl.h>, which clashes with
 * glibc's <fcntl.h>. PIDFD_THREAD is 0 when the headers lack it (before
 * 6.9): reap_fuzz.c then skips its thread-pidfd targets.
 */
#include <linux/pidfd.h>

#ifdef PIDFD_THREAD
const int reap_pidfd_thread = PIDFD_THREAD;
#else
const int reap_pidfd_thread;
#endif
