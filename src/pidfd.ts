// Pidfd: an owned pidfd with safe close semantics. The fd stays open while an
// async call uses it, so a close() during a thread-pool syscall can never let
// the kernel act on a reused fd number.
import { native } from './binding'
import { closedError, systemError } from './errors'
import { check } from './syscalls'
import { validateFlags, validateFunction, validateMaxBytes, validatePid, validateSignal } from './validate'

interface ExitWait {
  promise: Promise<void>
  watchId: number
  reject: (error: Error) => void
}

export class Pidfd {
  readonly pid: number
  #fd: number
  #closing = false
  #inFlight = 0
  #exitWait: ExitWait | undefined

  private constructor(pid: number, fd: number) {
    this.pid = pid
    this.#fd = fd
  }

  /** pidfd_open(pid, flags): refers to that process for as long as it is open. */
  static open(pid: number, flags?: number): Pidfd {
    const validPid = validatePid(pid)
    const fd = check(native.pidfdOpen(validPid, validateFlags(flags)), 'pidfd_open', validPid)
    native.adoptFd(fd)
    return new Pidfd(validPid, fd)
  }

  get closed(): boolean {
    return this.#closing
  }

  /** The fd number; throws ERR_PIDFD_CLOSED after close(). */
  get fd(): number {
    if (this.#closing) throw closedError()
    return this.#fd
  }

  /**
   * Runs fn with the fd and keeps the fd open until fn's promise settles, even
   * if close() is called meanwhile (the close then happens afterwards).
   */
  async withFd<T>(fn: (fd: number) => Promise<T>): Promise<T> {
    const fd = this.fd
    validateFunction(fn, 'fn')
    this.#inFlight++
    try {
      return await fn(fd)
    } finally {
      this.#inFlight--
      if (this.#closing && this.#inFlight === 0) this.#release()
    }
  }

  sendSignal(signal: string | number): void {
    check(native.pidfdSendSignal(this.fd, validateSignal(signal)), 'pidfd_send_signal', this.pid)
  }

  tryReap(maxBytes: number | bigint, flags?: number): number {
    const result = native.tryReap(this.fd, validateMaxBytes(maxBytes), validateFlags(flags))
    return check(result, 'try_reap_dying_process', this.pid)
  }

  async tryReapAsync(maxBytes: number | bigint, flags?: number): Promise<number> {
    const max = validateMaxBytes(maxBytes)
    const validFlags = validateFlags(flags)
    const result = await this.withFd((fd) => native.tryReapAsync(fd, max, validFlags))
    return check(result, 'try_reap_dying_process', this.pid)
  }

  mrelease(): void {
    check(native.processMrelease(this.fd), 'process_mrelease', this.pid)
  }

  async mreleaseAsync(): Promise<void> {
    check(await this.withFd((fd) => native.processMreleaseAsync(fd)), 'process_mrelease', this.pid)
  }

  /** True once the process has exited (the pidfd is readable). Never blocks. */
  hasExited(): boolean {
    return check(native.pollReadable(this.fd), 'poll', this.pid) === 1
  }

  /**
   * Resolves when the process exits, through pidfd readiness on the event loop
   * (no thread, no /proc polling). Rejects with ERR_PIDFD_CLOSED if the pidfd
   * is closed first. Repeated calls share one wait.
   */
  exited(): Promise<void> {
    if (this.#closing) return Promise.reject(closedError())
    if (this.#exitWait) return this.#exitWait.promise
    if (this.hasExited()) return Promise.resolve()
    let settle!: { resolve: () => void; reject: (error: Error) => void }
    const promise = new Promise<void>((resolve, reject) => {
      settle = { resolve, reject }
    })
    const watchId = check(
      native.watchReadable(this.#fd, (status) => {
        this.#exitWait = undefined
        if (status < 0) settle.reject(systemError(status, 'uv_poll', this.pid))
        else settle.resolve()
      }),
      'uv_poll_init',
      this.pid,
    )
    this.#exitWait = { promise, watchId, reject: settle.reject }
    return promise
  }

  /** Closes the pidfd (deferred while an async call uses it). Safe to call twice. */
  close(): void {
    if (this.#closing) return
    this.#closing = true
    const wait = this.#exitWait
    if (wait) {
      // The poll handle must be gone before the fd is closed (libuv rule).
      native.unwatch(wait.watchId)
      this.#exitWait = undefined
      wait.reject(closedError())
    }
    if (this.#inFlight === 0) this.#release()
  }

  [Symbol.dispose](): void {
    this.close()
  }

  #release(): void {
    check(native.closeFd(this.#fd), 'close', this.pid)
    this.#fd = -1
  }
}
