// The kernel interface of pidfd-reap: raw system calls that return a result
// or -errno (never throw), the detection of try_reap_dying_process (its
// number differs between kernels and is read from sysfs) and of
// process_mrelease, and small /proc reads. No JS here.
#ifndef PIDFD_REAP_SYSCALLS_H_
#define PIDFD_REAP_SYSCALLS_H_

#include <cstddef>
#include <cstdint>

namespace pidfd_reap {

constexpr const char kSyscallNrPath[] = "/sys/kernel/mm/reap_dying/syscall_nr";

// try_reap_dying_process flag (series v3, <linux/oom.h>): send SIGKILL to the
// process and every other process sharing its mm, then reap, in one call.
constexpr uint32_t kTryReapKill = 0x1;

// Parses the sysfs text: a decimal number without sign or leading zeros,
// optionally followed by one newline. Returns the number or -EINVAL.
long ParseSyscallNr(const char* text, size_t length);

// Reads the syscall number published by the patched kernel. Returns it, or
// -errno (-ENOENT on kernels without the patch, -EINVAL for bad content).
long ReadSyscallNr();

long PidfdOpen(int32_t pid, uint32_t flags);
long PidfdSendSignal(int32_t pidfd, int32_t signal);
long ProcessMrelease(int32_t pidfd);
// mlock()s every mapping of the ELF files this process runs (the files with
// an executable mapping: node, its libraries, this addon), so that the
// pressure a memory killer acts on cannot page its code out and stall it.
// Anonymous memory is left alone: mlockall() would make V8's
// madvise(MADV_DONTNEED) of its heap fail, which V8 treats as fatal.
// With on_fault, mlock2(MLOCK_ONFAULT) instead, except for this addon's own
// file: only the pages resident now and those faulted in later are locked,
// not all of node's code. Returns the bytes of the mappings locked (as VmLck
// counts them), or -errno of the first call that failed, after unlocking
// what it had locked.
int64_t LockMappedCode(bool on_fault);

// -ENOSYS when the kernel did not confirm a syscall number (nr < 0): the
// unpatched kernel may use any unconfirmed number for something else entirely.
long TryReapDyingProcess(long nr, int32_t pidfd, uint64_t max_bytes, uint32_t flags);

// process_mrelease exists iff it gets as far as rejecting fd -1.
bool HasProcessMrelease();

// try_reap_dying_process knows TRY_REAP_KILL iff, given it and fd -1, it gets
// as far as rejecting the fd (EBADF; a kernel before the flag says EINVAL).
bool HasTryReapKill(long syscall_nr);

// poll(2) of one fd without waiting (EINTR retried): its revents (0 when
// nothing is ready), or -errno.
int PollNow(int fd, short events);

// 1 when fd is readable (a pidfd: the process exited), 0 if not, or -errno.
long PollReadable(int32_t fd);

// The sizes of pid's address space from /proc/<pid>/statm.
struct Statm {
  int64_t size_bytes = -1;  // mapped (VmSize)
  int64_t rss_bytes = -1;   // resident
};
// False when unreadable (the process is gone).
bool ReadStatm(int32_t pid, Statm* statm);

// Resident bytes of pid from /proc/<pid>/statm, or -1 when unreadable (gone).
int64_t ReadRssBytes(int32_t pid);

// The try_reap_dying_process number as one addon instance (one environment:
// the main thread or a worker) knows it: the running kernel cannot change, so
// the kernel's answer (a number, no file, bad content) is kept, and only the
// number it confirmed is ever called; a failure to read the file (EMFILE,
// ENOMEM...) is tried again next time. (Probes by a call, such as
// HasProcessMrelease, are made each time: a seccomp filter installed later
// changes their answer.)
class SyscallNrCache {
 public:
  // The confirmed number, or -errno.
  long Get();

 private:
  long syscall_nr_ = 0;  // 0: not read yet
};

}  // namespace pidfd_reap

#endif  // PIDFD_REAP_SYSCALLS_H_
