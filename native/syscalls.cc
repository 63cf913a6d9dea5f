// The kernel interface: see syscalls.h.
#include "syscalls.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <set>
#include <string>
#include <vector>

// Since Linux 5.1 new syscalls share one number on every architecture.
#ifndef __NR_pidfd_send_signal
#define __NR_pidfd_send_signal 424
#endif
#ifndef __NR_pidfd_open
#define __NR_pidfd_open 434
#endif
#ifndef __NR_process_mrelease
#define __NR_process_mrelease 448
#endif

namespace pidfd_reap {

namespace {

// Generic syscall numbers are currently below 500; 1023 leaves room for growth
// while rejecting garbage (and the x32 bit, 0x40000000).
constexpr long kMaxSaneSyscallNr = 1023;

long Result(long rc) { return rc < 0 ? -errno : rc; }

}  // namespace

long ParseSyscallNr(const char* text, size_t length) {
  if (length > 0 && text[length - 1] == '\n') length--;
  if (length == 0 || length > 4 || text[0] == '0') return -EINVAL;
  long value = 0;
  for (size_t i = 0; i < length; i++) {
    if (text[i] < '0' || text[i] > '9') return -EINVAL;
    value = value * 10 + (text[i] - '0');
  }
  return value <= kMaxSaneSyscallNr ? value : -EINVAL;
}

long ReadSyscallNr() {
  int fd = open(kSyscallNrPath, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  char buffer[16];
  ssize_t length;
  do {
    length = read(fd, buffer, sizeof buffer);
  } while (length < 0 && errno == EINTR);
  int read_errno = errno;
  close(fd);
  if (length < 0) return -read_errno;
  // A full buffer means the file holds more than any valid number.
  if (static_cast<size_t>(length) == sizeof buffer) return -EINVAL;
  return ParseSyscallNr(buffer, static_cast<size_t>(length));
}

long PidfdOpen(int32_t pid, uint32_t flags) {
  return Result(syscall(__NR_pidfd_open, pid, flags));
}

long PidfdSendSignal(int32_t pidfd, int32_t signal) {
  return Result(syscall(__NR_pidfd_send_signal, pidfd, signal, nullptr, 0));
}

long ProcessMrelease(int32_t pidfd) {
  return Result(syscall(__NR_process_mrelease, pidfd, 0));
}

#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 0x01
#endif

int64_t LockMappedCode(bool on_fault) {
  struct Mapping {
    uintptr_t start, end;
    char perms[5];
    std::string path;
  };
  FILE* maps = std::fopen("/proc/self/maps", "re");
  if (!maps) return -errno;
  std::vector<Mapping> mappings;
  std::set<std::string> code_files;
  char line[4096 + 128];
  while (std::fgets(line, sizeof line, maps)) {
    Mapping m{};
    int path_at = 0;
    if (std::sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %4s %*s %*s %*s %n", &m.start, &m.end, m.perms, &path_at) < 3) continue;
    if (path_at <= 0 || line[path_at] != '/') continue;  // anonymous, [heap], [vdso], ...
    m.path.assign(line + path_at);
    if (!m.path.empty() && m.path.back() == '\n') m.path.pop_back();
    if (m.perms[2] == 'x') code_files.insert(m.path);
    mappings.push_back(std::move(m));
  }
  std::fclose(maps);
  // This addon's own file (the mapping holding this function's code) is
  // always locked whole: the kill path runs through it.
  const uintptr_t self = reinterpret_cast<uintptr_t>(&LockMappedCode);
  std::string own;
  for (const Mapping& m : mappings) {
    if (m.start <= self && self < m.end) own = m.path;
  }
  int64_t locked = 0;
  for (size_t i = 0; i < mappings.size(); i++) {
    const Mapping& m = mappings[i];
    if (m.perms[0] != 'r' || !code_files.count(m.path)) continue;
    void* start = reinterpret_cast<void*>(m.start);
    // MLOCK_ONFAULT: what is resident now, and each page once it is faulted
    // in, stays; pages never used are neither read in nor locked.
    long rc = on_fault && m.path != own ? syscall(__NR_mlock2, start, m.end - m.start, MLOCK_ONFAULT) : mlock(start, m.end - m.start);
    if (rc != 0) {
      // All or nothing: a caller told "failed" must not be left holding
      // (under RLIMIT_MEMLOCK) megabytes it believes unlocked.
      int error = errno;
      for (size_t j = 0; j < i; j++) {
        const Mapping& done = mappings[j];
        if (done.perms[0] == 'r' && code_files.count(done.path)) {
          munlock(reinterpret_cast<void*>(done.start), done.end - done.start);
        }
      }
      return -error;
    }
    locked += static_cast<int64_t>(m.end - m.start);
  }
  return locked;
}

long TryReapDyingProcess(long nr, int32_t pidfd, uint64_t max_bytes, uint32_t flags) {
  if (nr < 0) return -ENOSYS;
  return Result(syscall(nr, pidfd, flags, static_cast<size_t>(max_bytes)));
}

bool HasProcessMrelease() {
  return syscall(__NR_process_mrelease, -1, 0) < 0 && errno == EBADF;
}

bool HasTryReapKill(long syscall_nr) {
  return TryReapDyingProcess(syscall_nr, -1, 0, kTryReapKill) == -EBADF;
}

int PollNow(int fd, short events) {
  struct pollfd entry = {fd, events, 0};
  int rc;
  do {
    rc = poll(&entry, 1, 0);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) return -errno;
  return rc == 0 ? 0 : entry.revents;
}

long PollReadable(int32_t fd) {
  int revents = PollNow(fd, POLLIN);
  if (revents < 0) return revents;
  if (revents & POLLNVAL) return -EBADF;
  return (revents & (POLLIN | POLLHUP | POLLERR)) ? 1 : 0;
}

bool ReadStatm(int32_t pid, Statm* statm) {
  char path[48];
  snprintf(path, sizeof path, "/proc/%d/statm", static_cast<int>(pid));
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char text[128];
  ssize_t length;
  do {
    length = read(fd, text, sizeof text - 1);
  } while (length < 0 && errno == EINTR);
  close(fd);
  if (length <= 0) return false;
  text[length] = '\0';
  unsigned long long size = 0, resident = 0;
  if (sscanf(text, "%llu %llu", &size, &resident) != 2) return false;
  int64_t page = sysconf(_SC_PAGESIZE);
  statm->size_bytes = static_cast<int64_t>(size) * page;
  statm->rss_bytes = static_cast<int64_t>(resident) * page;
  return true;
}

int64_t ReadRssBytes(int32_t pid) {
  Statm statm;
  return ReadStatm(pid, &statm) ? statm.rss_bytes : -1;
}

long SyscallNrCache::Get() {
  if (syscall_nr_ > 0 || syscall_nr_ == -ENOENT || syscall_nr_ == -EINVAL) {
    return syscall_nr_;
  }
  syscall_nr_ = ReadSyscallNr();
  return syscall_nr_;
}

}  // namespace pidfd_reap
