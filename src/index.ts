// pidfd-reap: kill a Linux process through a pidfd and reap its memory at once.
export { Pidfd } from './pidfd'
export {
  Reaper,
  killAndReap,
  DEFAULT_CHUNK_BYTES,
  type KillAndReapOptions,
  type KillAndReapCallOptions,
  type KillPath,
  type Mechanism,
  type ReapProgress,
  type ReapRefusal,
  type ReapReport,
  type StopReason,
} from './reaper'
export {
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
  type Features,
  type LockMemoryOptions,
  type ReapDyingFeature,
  type ReapDyingStats,
  type ShrinkerFeature,
} from './syscalls'
export { parseSize, parseDuration, formatBytes, formatDuration } from './units'
// PSI triggers and the example memory-pressure daemon (docs/daemon.md).
export {
  watchPressure,
  PressureWatcher,
  readPressure,
  parsePressure,
  pressurePath,
  type WatchPressureOptions,
  type PressureEvent,
  type PressureReading,
  type PressureAverages,
  type PressureKind,
  type PressureResource,
} from './psi'
export {
  runPressureDaemon,
  nextCheckMs,
  pickVictim,
  listCandidates,
  type DaemonOptions,
  type DaemonLogLine,
  type DaemonSummary,
  type Decision,
  type PickedVictim,
  type VictimCandidate,
  type VictimOptions,
} from './daemon'
export {
  ERR_PIDFD_CLOSED,
  ERR_PIDFD_REAP_UNAVAILABLE,
  ERR_PIDFD_REAP_UNSUPPORTED_PLATFORM,
  type SystemError,
} from './errors'
