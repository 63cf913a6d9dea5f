// Loads the native addon. The platform check comes first and is a function of
// the platform name, so the non-Linux path is testable on Linux.
import { join } from 'node:path'
import { unsupportedPlatformError } from './errors'

/**
 * The raw addon. Syscall wrappers return a number: >= 0 on success, -errno on
 * failure (the async ones resolve with it and never reject).
 */
export interface NativeBinding {
  pidfdOpen(pid: number, flags: number): number
  pidfdSendSignal(pidfd: number, signal: number): number
  tryReap(pidfd: number, maxBytes: bigint, flags: number): number
  tryReapAsync(pidfd: number, maxBytes: bigint, flags: number): Promise<number>
  processMrelease(pidfd: number): number
  processMreleaseAsync(pidfd: number): Promise<number>
  /** 1 when readable (pidfd: the process exited), 0 if not, or -errno. */
  pollReadable(fd: number): number
  /** Calls back once when fd becomes readable; returns a watcher id (> 0) or -errno. */
  watchReadable(fd: number, callback: (status: number) => void): number
  unwatch(id: number): boolean
  /** Registers an fd owned by a Pidfd: closed at environment exit if still open. */
  adoptFd(fd: number): void
  /** Closes (and forgets) an adopted fd; 0 or -errno. */
  closeFd(fd: number): number
  /** syscallNr: the confirmed number, or -errno (-ENOENT: no patched kernel). */
  features(): { syscallNr: number; processMrelease: boolean }
  /** The strict parser used for the sysfs file; -EINVAL for bad text. */
  parseSyscallNr(text: string): number
  readonly pageSize: number
  readonly syscallNrPath: string
}

const packageRoot = join(__dirname, '..')

function loadBuiltAddon(): NativeBinding {
  // node-gyp-build picks prebuilds/ or build/Release for this Node and platform.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const nodeGypBuild = require('node-gyp-build') as (dir: string) => NativeBinding
  return nodeGypBuild(packageRoot)
}

export function loadNative(platform: string, load: () => NativeBinding = loadBuiltAddon): NativeBinding {
  if (platform !== 'linux') throw unsupportedPlatformError(platform)
  return load()
}

export const native: NativeBinding = loadNative(process.platform)
