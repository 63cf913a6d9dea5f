// See sd_notify.h. The protocol (sd_notify(3)): the state is one datagram,
// "KEY=VALUE" lines, sent to the AF_UNIX socket named in $NOTIFY_SOCKET: a
// path, or an abstract name written with a leading '@'.

#include "sd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>

#include "js_args.h"

namespace pidfd_reap {
namespace {

long SdNotify(const std::string& socket_path, const std::string& state) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  // systemd also names vsock sockets ("vsock:..."): not for a node service.
  if (socket_path.size() < 2 || (socket_path[0] != '/' && socket_path[0] != '@')) return -EAFNOSUPPORT;
  if (socket_path.size() > sizeof(address.sun_path)) return -ENAMETOOLONG;
  if (socket_path.find('\0') != std::string::npos) return -EINVAL;
  std::memcpy(address.sun_path, socket_path.data(), socket_path.size());
  if (socket_path[0] == '@') address.sun_path[0] = '\0';  // an abstract name
  const socklen_t length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket_path.size());
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  const ssize_t sent =
      sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&address), length);
  const int error = errno;
  close(fd);
  return sent < 0 ? -error : static_cast<long>(sent);
}

std::string StringArg(const Napi::CallbackInfo& info, size_t index) {
  Napi::Value value = Arg(info, index);
  if (!value.IsString()) throw Napi::TypeError::New(info.Env(), "pidfd-reap: expected a string");
  return value.As<Napi::String>().Utf8Value();
}

Napi::Value SdNotifyJs(const Napi::CallbackInfo& info) {
  return NumberResult(info.Env(), SdNotify(StringArg(info, 0), StringArg(info, 1)));
}

}  // namespace

void RegisterSdNotify(Napi::Env env, Napi::Object exports) {
  exports.Set("sdNotify", Napi::Function::New(env, SdNotifyJs, "sdNotify"));
}

}  // namespace pidfd_reap
