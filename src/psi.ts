// PSI (pressure stall information) triggers, watched through the event loop:
// the kernel wakes a uv_poll handle (POLLPRI) when tasks stalled on a
// resource for more than `stallUs` within a `windowUs` window. No timers, no
// thread: see native/psi.cc. Used by the pressure daemon (daemon.ts).
import { EventEmitter } from 'node:events'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { native } from './binding'
import { invalidArgType, invalidArgValue, pathError } from './errors'
import { validateAbortSignal, validateCgroup, validateFunction, validateInteger, validateOptions, validateResource } from './validate'

export { pathError }

/** The native half (native/psi.cc), registered on the same addon object. */
interface PsiNative {
  /** A watcher id (> 0), or what failed: open, write (the trigger), uv_poll_init, uv_poll_start. */
  psiWatch(path: string, trigger: string, callback: (status: number) => void): number | { errno: number; syscall: string }
  psiClose(id: number): boolean
  psiRef(id: number, ref: boolean): boolean
}

export type PressureResource = 'memory' | 'cpu' | 'io'
export type PressureKind = 'some' | 'full'

export interface WatchPressureOptions {
  /** The resource (default 'memory'): /proc/pressure/<resource> or <cgroup>/<resource>.pressure. */
  resource?: PressureResource
  /** 'some' (default): at least one task stalled; 'full': all non-idle tasks stalled at once. */
  kind?: PressureKind
  /** The threshold: microseconds of stall within one window, 1 to windowUs. */
  stallUs: number
  /**
   * The window in microseconds, 500000 to 10000000 (the kernel's limits).
   * Without CAP_SYS_RESOURCE the kernel only takes multiples of 2 s.
   */
  windowUs: number
  /** A cgroup v2 directory: watch its <resource>.pressure instead of the system's. */
  cgroup?: string
  /** Aborting it closes the watcher. */
  signal?: AbortSignal
}

/** One line of a pressure file: averages in percent, total stall in microseconds. */
export interface PressureAverages {
  avg10: number
  avg60: number
  avg300: number
  total: number
}

export interface PressureReading {
  some: PressureAverages
  /** Absent from the system's cpu file before Linux 5.13. */
  full: PressureAverages | null
}

export interface PressureEvent {
  /** When the event reached JS (Date.now()). */
  time: number
  path: string
  resource: PressureResource
  kind: PressureKind
  stallUs: number
  windowUs: number
  /** The file read right after the event, or null if it could no longer be read. */
  pressure: PressureReading | null
}

export const PSI_WINDOW_MIN_US = 500_000
export const PSI_WINDOW_MAX_US = 10_000_000
const KINDS: readonly PressureKind[] = ['some', 'full']

/** The pressure file of a resource: the system's, or a cgroup v2 group's. */
export function pressurePath(resource: PressureResource = 'memory', cgroup?: string): string {
  const valid = validateResource(resource)
  if (cgroup === undefined) return `/proc/pressure/${valid}`
  return join(validateCgroup(cgroup), `${valid}.pressure`)
}

/** Parses the text of a pressure file ("some avg10=0.00 avg60=... total=N" lines). */
export function parsePressure(text: string): PressureReading {
  const line = (kind: PressureKind): PressureAverages | null => {
    const match = new RegExp(`^${kind} avg10=([\\d.]+) avg60=([\\d.]+) avg300=([\\d.]+) total=(\\d+)$`, 'm').exec(text)
    return match ? { avg10: Number(match[1]), avg60: Number(match[2]), avg300: Number(match[3]), total: Number(match[4]) } : null
  }
  const some = line('some')
  if (!some) throw invalidArgValue('text', text, 'is not the text of a pressure file')
  return { some, full: line('full') }
}

/** Reads a pressure file now: /proc/pressure/<resource>, or the cgroup's. */
export function readPressure(resource: PressureResource = 'memory', cgroup?: string): PressureReading {
  return parsePressure(readFileSync(pressurePath(resource, cgroup), 'utf8'))
}

/** @internal A pressure file's reading now, or null if it cannot be read. */
export function readPressureQuietly(path: string): PressureReading | null {
  try {
    return parsePressure(readFileSync(path, 'utf8'))
  } catch {
    return null
  }
}

type WatcherSettings = Required<Omit<WatchPressureOptions, 'cgroup' | 'signal'>> & { path: string; signal?: AbortSignal }

/**
 * An armed PSI trigger. Emits 'pressure' (PressureEvent) each time the kernel
 * reports one (at most once per window), 'error' if the watch fails (ENODEV:
 * the file went away, its cgroup was removed), then 'close'. Also an async iterable of
 * its events; leaving a `for await` loop closes it.
 */
export class PressureWatcher
  extends EventEmitter<{ pressure: [PressureEvent]; error: [Error]; close: [] }>
  implements AsyncIterable<PressureEvent>
{
  readonly path: string
  readonly resource: PressureResource
  readonly kind: PressureKind
  readonly stallUs: number
  readonly windowUs: number
  readonly #psi: PsiNative
  #id = 0
  #closed = false
  readonly #signal: AbortSignal | undefined
  readonly #onAbort = (): void => this.close()

  /** @internal Use watchPressure(). `psi` is the native half (a test seam). */
  static create(settings: WatcherSettings, psi: PsiNative): PressureWatcher {
    return new PressureWatcher(settings, psi)
  }

  // Private, so that the .d.ts (where create() is stripped) offers no constructor.
  private constructor(settings: WatcherSettings, psi: PsiNative) {
    super()
    this.path = settings.path
    this.resource = settings.resource
    this.kind = settings.kind
    this.stallUs = settings.stallUs
    this.windowUs = settings.windowUs
    this.#psi = psi
    const result = psi.psiWatch(this.path, `${this.kind} ${this.stallUs} ${this.windowUs}`, (status) => this.#onStatus(status))
    if (typeof result !== 'number') throw pathError(result.errno, result.syscall, this.path)
    this.#id = result
    this.#signal = settings.signal
    this.#signal?.addEventListener('abort', this.#onAbort, { once: true })
  }

  /** Whether close() was called or the watch failed. */
  get closed(): boolean {
    return this.#closed
  }

  #onStatus(status: number): void {
    if (status < 0) {
      // The native watch has ended: ENODEV when the file went away (its
      // cgroup was removed), EBADF for a bare POLLERR.
      this.#finish()
      this.emit('error', pathError(status, 'poll', this.path))
      this.emit('close')
      return
    }
    const { path, resource, kind, stallUs, windowUs } = this
    this.emit('pressure', { time: Date.now(), path, resource, kind, stallUs, windowUs, pressure: readPressureQuietly(path) })
  }

  #finish(): void {
    this.#closed = true
    this.#signal?.removeEventListener('abort', this.#onAbort)
  }

  /** Disarms the trigger and closes its file; emits 'close'. Safe to call twice. */
  close(): void {
    if (this.#closed) return
    this.#psi.psiClose(this.#id)
    this.#finish()
    this.emit('close')
  }

  /** The watcher keeps the event loop alive (the default). */
  ref(): this {
    if (!this.#closed) this.#psi.psiRef(this.#id, true)
    return this
  }

  /** The watcher no longer keeps the event loop alive. */
  unref(): this {
    if (!this.#closed) this.#psi.psiRef(this.#id, false)
    return this
  }

  [Symbol.dispose](): void {
    this.close()
  }

  /**
   * The events from now on, in order. Ends when the watcher closes; throws
   * the watcher's error if it fails; `break` (return()) closes the watcher.
   */
  [Symbol.asyncIterator](): AsyncIterableIterator<PressureEvent> {
    const queue: PressureEvent[] = []
    const waiting: { resolve: (result: IteratorResult<PressureEvent>) => void; reject: (error: Error) => void }[] = []
    let failure: Error | undefined
    let ended = this.#closed
    const done = (): IteratorResult<PressureEvent> => ({ value: undefined, done: true })
    const onPressure = (event: PressureEvent): void => {
      const next = waiting.shift()
      if (next) next.resolve({ value: event, done: false })
      else queue.push(event)
    }
    const onError = (error: Error): void => {
      // For a waiting next(), or else for the next one.
      if (waiting.length === 0) failure = error
      for (const next of waiting.splice(0)) next.reject(error)
    }
    const onClose = (): void => {
      ended = true
      this.off('pressure', onPressure)
      this.off('error', onError)
      for (const next of waiting.splice(0)) next.resolve(done())
    }
    if (!ended) {
      this.on('pressure', onPressure)
      this.on('error', onError)
      this.once('close', onClose)
    }
    const iterator: AsyncIterableIterator<PressureEvent> = {
      next: () => {
        if (queue.length > 0) return Promise.resolve({ value: queue.shift()!, done: false })
        if (failure) {
          const error = failure
          failure = undefined
          return Promise.reject(error)
        }
        if (ended) return Promise.resolve(done())
        return new Promise((resolve, reject) => waiting.push({ resolve, reject }))
      },
      return: () => {
        queue.length = 0
        this.close()
        return Promise.resolve(done())
      },
      [Symbol.asyncIterator]: () => iterator,
    }
    return iterator
  }
}

/**
 * Arms a PSI trigger: "<kind> <stallUs> <windowUs>" on /proc/pressure/<resource>
 * (or <cgroup>/<resource>.pressure) and watches it through the event loop.
 * `listener` is added for 'pressure'. Throws a SystemError with `path` when
 * the file cannot be opened (ENOENT: no PSI, or no such cgroup; EACCES) or
 * the kernel refuses the trigger (EINVAL; EPERM before Linux 6.5 without
 * CAP_SYS_RESOURCE), and argument errors before touching anything.
 */
export function watchPressure(options: WatchPressureOptions, listener?: (event: PressureEvent) => void): PressureWatcher {
  return watchWith(native as unknown as PsiNative, options, listener)
}

/** @internal watchPressure with another native half (tests). */
export function watchWith(psi: PsiNative, options: WatchPressureOptions, listener?: (event: PressureEvent) => void): PressureWatcher {
  if (options === undefined) throw invalidArgType('options', 'of type object', options)
  const raw = validateOptions<WatchPressureOptions>(options)
  const resource = raw.resource === undefined ? 'memory' : validateResource(raw.resource, 'options.resource')
  const kind = raw.kind === undefined ? 'some' : raw.kind
  if (!KINDS.includes(kind)) throw invalidArgValue('options.kind', kind, "must be 'some' or 'full'")
  const windowUs = validateInteger(raw.windowUs, 'options.windowUs', PSI_WINDOW_MIN_US, PSI_WINDOW_MAX_US)
  const stallUs = validateInteger(raw.stallUs, 'options.stallUs', 1, windowUs)
  const path = pressurePath(resource, raw.cgroup === undefined ? undefined : validateCgroup(raw.cgroup, 'options.cgroup'))
  const signal = raw.signal === undefined ? undefined : validateAbortSignal(raw.signal)
  if (listener !== undefined) validateFunction(listener, 'listener')
  signal?.throwIfAborted()
  const watcher = PressureWatcher.create({ path, resource, kind, stallUs, windowUs, signal }, psi)
  if (listener) watcher.on('pressure', listener)
  return watcher
}
