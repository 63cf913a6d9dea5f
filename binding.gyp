{
  "targets": [
    {
      "target_name": "pidfd_reap",
      "conditions": [
        ["OS=='linux'", {
          "sources": ["native/pidfd_reap.cc"],
          "dependencies": [
            "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"
          ],
          "defines": ["NAPI_VERSION=8"],
          "cflags_cc": ["-std=c++17", "-Wall", "-Wextra"]
        }, {
          # pidfds are Linux-only: elsewhere build nothing, so installing never
          # fails; requiring the package throws ERR_PIDFD_REAP_UNSUPPORTED_PLATFORM.
          "type": "none"
        }]
      ]
    }
  ]
}
