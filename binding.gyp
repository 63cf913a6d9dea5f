{
  "variables": {
    # prebuildify (scripts/prebuild) sets PREBUILD_LIBC for the libc it tags
    # the prebuild with; a source build (npm install without a matching
    # prebuild, npm ci) leaves it unset.
    "glibc_prebuild%": "<!(node -p \"process.env.PREBUILD_LIBC === 'glibc' ? 1 : 0\")",
    # The test hooks (a scripted kernel for killAndReap's policy tests,
    # native/reap_job.cc) are built only where the tests are: in a source
    # tree that has test/host. A prebuild (built from a copy of native/ and
    # binding.gyp) and an npm install (the package ships no test/) leave them
    # out. PIDFD_REAP_TEST_HOOKS=0 or 1 decides instead.
    "test_hooks%": "<!(node -p \"process.env.PIDFD_REAP_TEST_HOOKS ? (process.env.PIDFD_REAP_TEST_HOOKS === '1' ? 1 : 0) : (require('fs').existsSync('test/host') ? 1 : 0)\")"
  },
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
            "native/sd_notify.cc"
          ],
          "dependencies": [
            # _all: a C++ exception that is not a Napi::Error (std::bad_alloc
            # from an allocation that fails under memory pressure, say)
            # becomes a JS Error too, instead of std::terminate.
            "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except_all"
          ],
          "defines": ["NAPI_VERSION=8"],
          "cflags_cc": ["-std=c++17", "-Wall", "-Wextra"],
          "cflags_c": ["-std=gnu11", "-Wall", "-Wextra"],
          "conditions": [
            ["test_hooks==1", {
              "defines": ["PIDFD_REAP_TEST_HOOKS"]
            }],
            # Only a glibc prebuild for an arch the shim knows must load on
            # every glibc from 2.28 on: static libstdc++, its symbols kept
            # inside the addon, so that the addon loads whatever libstdc++ the
            # system has (or none), and native/glibc_compat.c so that it
            # needs nothing newer than glibc 2.28. libgcc_s stays shared:
            # every glibc system has it, and the static unwinder of a newer
            # GCC would need glibc 2.35's _dl_find_object. A source build
            # needs neither (it runs where it was built), and must not: the
            # shim knows only these arches, and libstdc++.a is not installed
            # everywhere.
            ["glibc_prebuild==1 and target_arch in ('x64', 'arm64')", {
              "sources": ["native/glibc_compat.c"],
              "ldflags": ["-static-libstdc++", "-Wl,--exclude-libs,ALL"]
            }]
          ]
        }, {
          # pidfds are Linux-only: elsewhere build nothing, so installing never
          # fails; requiring the package throws ERR_PIDFD_REAP_UNSUPPORTED_PLATFORM.
          "type": "none"
        }]
      ]
    }
  ]
}
