// Lets the prebuilt addon load on glibc 2.28, the oldest that Node 20
// supports, although it is built on a newer one (Debian 12 has 2.36).
//
// binding.gyp links libstdc++ statically, so the addon needs no GLIBCXX or
// CXXABI symbol of the system's libstdc++. The libstdc++ code it takes along
// refers to glibc symbols newer than 2.28; the hidden definitions below
// satisfy them inside the addon, so the dynamic linker never looks them up,
// or bind them to the versions that glibc 2.28 has.
// binding.gyp compiles it only into glibc prebuilds for x86-64 and arm64
// (PREBUILD_LIBC=glibc, set by prebuildify); scripts/prebuild checks every
// prebuild's symbol versions.
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#define HIDDEN __attribute__((visibility("hidden")))

// glibc 2.32: libstdc++'s inline code reads it to skip atomic reference
// counts in a single-threaded process. 0 means "may have threads" and takes
// the atomic path, right in every process (Node's always has threads).
HIDDEN char __libc_single_threaded = 0;

// glibc 2.36: called only by std::random_device, which the addon does not
// use but which comes along with libstdc++'s string code. getrandom(2) is in
// every kernel that has pidfds (5.3 and later).
HIDDEN uint32_t arc4random(void)
{
	uint32_t value;

	for (;;) {
		long n = syscall(SYS_getrandom, &value, sizeof(value), 0);

		if (n == (long)sizeof(value))
			return value;
		if (n < 0 && errno != EINTR)
			abort();
	}
}

// glibc 2.32 and 2.34 moved the pthread functions from libpthread into libc
// under new versions, and link new code to those; the old version is still
// exported, and on older glibc libpthread (which Node loads) defines it.
// std::thread and the reaping thread call these: bind them to the old one.
#if defined(__x86_64__)
#define GLIBC_BASE "GLIBC_2.2.5"
#elif defined(__aarch64__)
#define GLIBC_BASE "GLIBC_2.17"
#else
#error "glibc_compat.c: add this architecture's first glibc symbol version (and the arch to binding.gyp)"
#endif

#define OLD_VERSION(name, ret, params, args)                                  \
	ret name##_old params;                                                 \
	__asm__(".symver " #name "_old, " #name "@" GLIBC_BASE);              \
	HIDDEN ret name params { return name##_old args; }

typedef unsigned long pthread_id;	/* pthread_t on Linux */

OLD_VERSION(pthread_create, int,
	    (pthread_id *thread, const void *attr, void *(*start)(void *), void *arg),
	    (thread, attr, start, arg))
OLD_VERSION(pthread_join, int, (pthread_id thread, void **result), (thread, result))
OLD_VERSION(pthread_detach, int, (pthread_id thread), (thread))
OLD_VERSION(pthread_sigmask, int, (int how, const void *set, void *old), (how, set, old))
