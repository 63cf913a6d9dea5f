// Pidfd: an owned pidfd with safe close semantics. The fd stays open while an
// async call uses it, so a close() during a thread-pool syscall can never let
// the kernel act on a reused fd number.
import { ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { native } from './binding'
import { closedError, errno, invalidArgType, invalidArgValue, systemError } from './errors'
import { check, constants } from './syscalls'
import { validateFd, validateFlags, validateFunction, validateMaxBytes, validatePid, validateSignal } from './validate'

interface ExitWait {
  promise: Promise<void>
  watchId: number
  /** The wait's own pidfd, polled instead of the user's fd. */
  watchFd: number
  reject: (error: Error) => void
}

export class Pidfd {
  readonly pid: number
  #fd: number
  /** PIDFD_THREAD if the pidfd was opened for a thread, else 0. */
  #threadFlag: number
  #closing = false
  #inFlight = 0
  #exitWait: ExitWait | undefined
  /** Whether a pending exited() keeps the event loop alive (ref()/unref()). */
  #refed = true

  private constructor(pid: number, fd: number, threadFlag: number) {
    this.pid = pid
    this.#fd = fd
    this.#threadFlag = threadFlag
  }

  /** pidfd_open(pid, flags): refers to that process for as long as it is open. */
  static open(pid: number, flags?: number): Pidfd {
    const validPid = validatePid(pid)
    const validFlags = validateFlags(flags)
    const fd = check(native.pidfdOpen(validPid, validFlags), 'pidfd_open', validPid)
    native.adoptFd(fd)
    return new Pidfd(validPid, fd, validFlags & constants.PIDFD_THREAD)
  }

  /**
   * Takes over a pidfd opened elsewhere (received over a unix socket, or
   * from systemd): the Pidfd owns it from now on and closes it. Throws
   * ERR_INVALID_ARG_VALUE for an fd that is not an open pidfd, or is the
   * pidfd of a process already waited for (its pid may name another one).
   */
  static fromFd(fd: number): Pidfd {
    const validFd = validateFd(fd, 'fd')
    let fdinfo = ''
    try {
      fdinfo = readFileSync(`/proc/self/fdinfo/${validFd}`, 'utf8')
    } catch {
      // Not open: no fdinfo.
    }
    const pidLine = /^Pid:\s*(-?\d+)$/m.exec(fdinfo)
    if (!pidLine) throw invalidArgValue('fd', fd, 'is not an open pidfd')
    const pid = Number(pidLine[1])
    // -1: the process was waited for; 0: it is in a pid namespace this one cannot see.
    if (pid <= 0) throw invalidArgValue('fd', fd, 'is the pidfd of a process that is gone or has no pid here')
    // pidfd_open(PIDFD_THREAD) is O_EXCL in the file's flags (octal in fdinfo).
    const flags = parseInt(/^flags:\s*([0-7]+)$/m.exec(fdinfo)![1], 8)
    native.adoptFd(validFd)
    return new Pidfd(pid, validFd, flags & constants.PIDFD_THREAD)
  }

  /**
   * Opens a pidfd for a child_process child. Race-free while the child's
   * exitCode and signalCode are both null: Node reaps its children on this
   * thread, so until it does (and sets one of them) the pid still names the
   * child. Throws ESRCH once the child has exited, and
   * ERR_INVALID_ARG_VALUE for a child that never got a pid.
   */
  static fromChildProcess(child: ChildProcess): Pidfd {
    if (!(child instanceof ChildProcess)) throw invalidArgType('child', 'an instance of ChildProcess', child)
    if (child.pid === undefined) throw invalidArgValue('child', '<ChildProcess>', 'has no pid (it did not spawn)')
    if (child.exitCode !== null || child.signalCode !== null) throw systemError(-errno.ESRCH, 'pidfd_open', child.pid)
    return Pidfd.open(child.pid)
  }

  /** Opened with PIDFD_THREAD: it refers to one thread, and becomes readable when that thread exits. */
  get thread(): boolean {
    return this.#threadFlag !== 0
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
      if (this.#closing && this.#inFlight === 0) this.#releaseDeferred()
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
   * is closed first. Repeated calls share one wait. Never changes the flags of
   * this.fd.
   */
  exited(): Promise<void> {
    if (this.#closing) return Promise.reject(closedError())
    if (this.#exitWait) return this.#exitWait.promise
    try {
      return this.#waitForExit()
    } catch (error) {
      return Promise.reject(error)
    }
  }

  #waitForExit(): Promise<void> {
    if (this.hasExited()) return Promise.resolve()
    // uv_poll sets O_NONBLOCK on the open file it polls and never clears it,
    // so the wait polls a pidfd of its own, never the user's.
    const watchFd = native.pidfdOpen(this.pid, this.#threadFlag)
    // Still not readable: the process had not exited when watchFd was opened,
    // so the pid still named it (a pid is reused only after its process exited
    // and was reaped) and watchFd refers to the same process.
    if (this.hasExited()) {
      if (watchFd >= 0) native.closeFd(watchFd)
      return Promise.resolve()
    }
    check(watchFd, 'pidfd_open', this.pid)
    native.adoptFd(watchFd) // closed with the environment if a worker ends mid-wait
    let settle!: { resolve: () => void; reject: (error: Error) => void }
    const promise = new Promise<void>((resolve, reject) => {
      settle = { resolve, reject }
    })
    const watchId = native.watchReadable(watchFd, (status) => {
      this.#exitWait = undefined
      // The addon closes the poll handle when this callback returns; the fd
      // may only be closed after that (libuv rule).
      setImmediate(() => native.closeFd(watchFd))
      if (status < 0) settle.reject(systemError(status, 'uv_poll', this.pid))
      else settle.resolve()
    })
    if (watchId < 0) {
      native.closeFd(watchFd)
      throw systemError(watchId, 'uv_poll_init', this.pid)
    }
    if (!this.#refed) native.refWatch(watchId, false)
    this.#exitWait = { promise, watchId, watchFd, reject: settle.reject }
    return promise
  }

  /**
   * A pending exited() keeps the event loop alive (the default), as an active
   * timer or socket does. Returns this.
   */
  ref(): this {
    this.#refed = true
    if (this.#exitWait) native.refWatch(this.#exitWait.watchId, true)
    return this
  }

  /** A pending exited() no longer keeps the event loop alive: the process may exit first. Returns this. */
  unref(): this {
    this.#refed = false
    if (this.#exitWait) native.refWatch(this.#exitWait.watchId, false)
    return this
  }

  /** Closes the pidfd (deferred while an async call uses it). Safe to call twice. */
  close(): void {
    if (this.#closing) return
    this.#closing = true
    const wait = this.#exitWait
    if (wait) {
      // The poll handle must be gone before its fd is closed (libuv rule).
      native.unwatch(wait.watchId)
      native.closeFd(wait.watchFd)
      this.#exitWait = undefined
      wait.reject(closedError())
    }
    if (this.#inFlight === 0) check(this.#release(), 'close', this.pid)
  }

  [Symbol.dispose](): void {
    this.close()
  }

  /** Closes the fd: 0 or -errno. */
  #release(): number {
    const result = native.closeFd(this.#fd)
    this.#fd = -1
    return result
  }

  // The close() that waited for the last async call: a failure (EBADF if the
  // fd was closed behind this object's back) has no caller left to throw to,
  // and must not replace that call's own result or error, so it is a warning.
  #releaseDeferred(): void {
    const result = this.#release()
    if (result < 0) process.emitWarning(systemError(result, 'close', this.pid))
  }
}
