{
  "targets": [
    {
      "target_name": "pidfd_reap",
      "conditions": [
        ["OS=='linux'", {
          "sources": [
            "native/pidfd_reap.cc",
            "native/syscalls.cc",
            "native/watchers.cc",
            "native/thread_job.cc",
            "native/async_calls.cc",
            "native/reap_job.cc",
            "native/psi.cc",
            "native/sd_notify.cc",
            "native/glibc_compat.c"
          ],
          "dependencies": [
            "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"
          ],
          "defines": ["NAPI_VERSION=8"],
          "cflags_cc": ["-std=c++17", "-Wall", "-Wextra"],
          "cflags_c": ["-std=gnu11", "-Wall", "-Wextra"],
          # Static libstdc++, its symbols kept inside the addon: the addon then
          # loads whatever libstdc++ the system has (or none); with
          # native/glibc_compat.c it needs nothing newer than glibc 2.28.
          # libgcc_s stays shared: every glibc system has it, and the static
          # unwinder of a newer GCC would need glibc 2.35's _dl_find_object.
          "ldflags": ["-static-libstdc++", "-Wl,--exclude-libs,ALL"]
        }, {
          # pidfds are Linux-only: elsewhere build nothing, so installing never
          # fails; requiring the package throws ERR_PIDFD_REAP_UNSUPPORTED_PLATFORM.
          "type": "none"
        }]
      ]
    }
  ]
}
