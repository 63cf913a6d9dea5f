'use strict'
// `npm install` hook: build (or pick a prebuild of) the addon on Linux only, so
// installing on another OS never fails; there, require('pidfd-reap') throws
// ERR_PIDFD_REAP_UNSUPPORTED_PLATFORM instead.
if (process.platform === 'linux') {
  require('node-gyp-build/bin.js')
} else {
  console.warn(`pidfd-reap: not building the native addon: pidfds need Linux (this is ${process.platform})`)
}
