// ESM entry point: the same module instance as require('pidfd-reap'). The
// values are named one by one: `export *` from the CommonJS build would also
// export the __esModule marker tsc puts on it. test/host/module.ts checks
// that this list and index.ts's exports are the same.
export {
  Pidfd,
  Reaper,
  killAndReap,
  DEFAULT_CHUNK_BYTES,
  constants,
  features,
  reapDyingFeature,
  stats,
  pidfdOpen,
  pidfdSendSignal,
  tryReapDyingProcess,
  tryReapDyingProcessAsync,
  processMrelease,
  processMreleaseAsync,
  lockMemory,
  readRssBytes,
  parseSize,
  parseDuration,
  formatBytes,
  formatDuration,
  watchPressure,
  PressureWatcher,
  readPressure,
  parsePressure,
  pressurePath,
  runPressureDaemon,
  nextCheckMs,
  pickVictim,
  listCandidates,
  ERR_PIDFD_CLOSED,
  ERR_PIDFD_REAP_UNAVAILABLE,
  ERR_PIDFD_REAP_UNSUPPORTED_PLATFORM,
} from './index.js'
export type * from './index.js'
