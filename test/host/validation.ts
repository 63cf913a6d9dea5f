// Every public function rejects bad arguments with Node-style errors before
// making any syscall.
import t from 'tap'
import { inspect } from 'node:util'
import * as api from '../../src/index'
import { invalidArgType, invalidArgValue, outOfRange, reapUnavailableError, systemError } from '../../src/errors'
import { validateAbortSignal, validateFunction, validateOptions } from '../../src/validate'

const TYPE = { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' }
const RANGE = { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' }

// Values of the wrong type for a number parameter, and numbers out of range.
const notNumbers: unknown[] = ['3', {}, null, undefined, Symbol('x'), 3n, [], () => 1, true, new Number(3)]
const badFds: unknown[] = [NaN, -1, 1.5, 2 ** 31, 2 ** 53, Infinity, -Infinity, -0.5]

t.test('fd arguments', async (t) => {
  const takingFd: [string, (fd: unknown) => unknown][] = [
    ['pidfdSendSignal', (fd) => api.pidfdSendSignal(fd as number, 'SIGKILL')],
    ['tryReapDyingProcess', (fd) => api.tryReapDyingProcess(fd as number, 0)],
    ['processMrelease', (fd) => api.processMrelease(fd as number)],
  ]
  for (const [name, call] of takingFd) {
    for (const value of notNumbers) t.throws(() => call(value), TYPE, `${name}(${String(value)})`)
    for (const value of badFds) t.throws(() => call(value), RANGE, `${name}(${String(value)})`)
  }
  const asyncTakingFd: [string, (fd: unknown) => Promise<unknown>][] = [
    ['tryReapDyingProcessAsync', (fd) => api.tryReapDyingProcessAsync(fd as number, 0)],
    ['processMreleaseAsync', (fd) => api.processMreleaseAsync(fd as number)],
  ]
  for (const [name, call] of asyncTakingFd) {
    for (const value of notNumbers) await t.rejects(call(value), TYPE, `${name}(${String(value)})`)
    for (const value of badFds) await t.rejects(call(value), RANGE, `${name}(${String(value)})`)
  }
})

t.test('pid arguments', async (t) => {
  for (const open of [api.pidfdOpen, api.Pidfd.open, api.readRssBytes]) {
    for (const value of notNumbers) t.throws(() => open(value as number), TYPE)
    for (const value of [0, ...badFds]) t.throws(() => open(value as number), RANGE)
  }
  for (const value of notNumbers.filter((v) => v !== undefined)) {
    t.throws(() => api.pidfdOpen(1, value as number), TYPE, 'flags')
  }
  t.throws(() => api.pidfdOpen(1, -1), RANGE)
  t.throws(() => api.pidfdOpen(1, 2 ** 32), RANGE)
  t.throws(() => api.tryReapDyingProcess(0, 0, 1.5), RANGE)
  for (const value of [...notNumbers.filter((v) => typeof v !== 'bigint' && v !== undefined), { valueOf: () => 1 }]) {
    await t.rejects(api.killAndReap(value as number), TYPE, `killAndReap(${String(value)})`)
  }
  await t.rejects(api.killAndReap(0), RANGE)
  await t.rejects(api.killAndReap(undefined as unknown as number), TYPE)
})

t.test('maxBytes', async (t) => {
  for (const value of ['1', {}, null, undefined, Symbol('x'), [], true]) {
    t.throws(() => api.tryReapDyingProcess(0, value as number), { ...TYPE, message: /must be of type number or bigint/ })
    await t.rejects(api.tryReapDyingProcessAsync(0, value as number), TYPE)
  }
  for (const value of [NaN, -1, 1.5, 2 ** 53, -Infinity, -1n, 2n ** 64n, -(2n ** 64n)]) {
    t.throws(() => api.tryReapDyingProcess(0, value as number), RANGE, String(value))
  }
  t.throws(() => api.tryReapDyingProcess(0, 2n ** 64n), { message: /Received 18446744073709551616n/ })
})

t.test('signals', async (t) => {
  for (const value of ['KILL', 'sigkill', 'SIGFOO', '', 'toString', '__proto__']) {
    t.throws(() => api.pidfdSendSignal(0, value), { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE' }, value)
  }
  for (const value of [-1, 65, 1.5, NaN, Infinity]) t.throws(() => api.pidfdSendSignal(0, value), RANGE)
  for (const value of [null, undefined, {}, 9n, Symbol('s')]) {
    t.throws(() => api.pidfdSendSignal(0, value as number), { ...TYPE, message: /string or number/ })
  }
})

t.test('killAndReap options', async (t) => {
  for (const options of [null, 5, 'x', [], Symbol('o'), true]) {
    await t.rejects(api.killAndReap(1, options as object), { ...TYPE, message: /"options" argument must be of type object/ })
  }
  const bad: [object, { name: string; code: string; message?: RegExp }][] = [
    [{ chunkBytes: '16M' }, TYPE],
    [{ chunkBytes: 0 }, RANGE],
    [{ chunkBytes: Infinity }, RANGE],
    [{ chunkBytes: 1.5 }, RANGE],
    [{ budgetBytes: -1 }, RANGE],
    [{ budgetBytes: NaN }, RANGE],
    [{ budgetBytes: 10n }, TYPE],
    [{ deadlineMs: -1 }, RANGE],
    [{ deadlineMs: NaN }, RANGE],
    [{ deadlineMs: '1s' }, TYPE],
    [{ onProgress: 'x' }, TYPE],
    [{ signal: {} }, { ...TYPE, message: /an instance of AbortSignal/ }],
  ]
  for (const [options, error] of bad) {
    await t.rejects(api.killAndReap(1, options), error, inspect(options))
    t.throws(() => new api.Reaper(options), error)
  }
})

t.test('validator helpers', async (t) => {
  t.same(validateOptions(undefined), {})
  t.throws(() => validateFunction(1, 'fn'), TYPE)
  t.throws(() => validateAbortSignal(null), TYPE)
  t.ok(validateAbortSignal(new AbortController().signal))
})

t.test('error shapes', async (t) => {
  const busy = systemError(-16, 'try_reap_dying_process')
  t.ok(busy instanceof Error)
  t.match(busy, { code: 'EBUSY', errno: -16, syscall: 'try_reap_dying_process' })
  // Node's own (libuv) wording, as in fs errors.
  t.equal(busy.message, 'EBUSY: resource busy or locked, try_reap_dying_process')
  t.equal(systemError(-1, 'kill').message, 'EPERM: operation not permitted, kill')
  t.match(systemError(-9999, 'x'), { code: 'E9999', message: 'E9999: unknown system error 9999, x' })
  // The process concerned, when known, as Node's fs errors carry path.
  t.notOk('pid' in busy, 'absent, not undefined, when unknown')
  const gone = systemError(-3, 'pidfd_open', 4242)
  t.match(gone, { code: 'ESRCH', errno: -3, syscall: 'pidfd_open', pid: 4242 })
  t.equal(gone.message, 'ESRCH: no such process, pidfd_open (pid 4242)')
  t.same(Object.keys(gone), ['errno', 'code', 'syscall', 'pid'], "Node's field order")
  t.match(reapUnavailableError('why', 7), { code: 'ERR_PIDFD_REAP_UNAVAILABLE', errno: -38, pid: 7, message: 'try_reap_dying_process is not available: why' })
  t.notOk('pid' in reapUnavailableError('why'))

  t.equal(invalidArgType('pidfd', 'of type number', null).message, 'The "pidfd" argument must be of type number. Received null')
  t.match(invalidArgType('x', 'y', 'a'.repeat(40)).message, /Received type string \('a{24}\.\.\.\)/)
  t.match(invalidArgType('x', 'y', function named() {}).message, /Received function named/)
  t.match(invalidArgType('x', 'y', () => {}).message, /Received function <anonymous>|Received function /)
  t.match(invalidArgType('x', 'y', Object.create(null)).message, /Received \[Object: null prototype\] \{\}/)
  t.match(invalidArgType('x', 'y', new Map()).message, /Received an instance of Map/)
  t.equal(outOfRange('n', '>= 0', -1).message, 'The value of "n" is out of range. It must be >= 0. Received -1')
  t.equal(invalidArgValue('s', 'X').message, "The argument 's' is invalid. Received 'X'")
})

t.test('every export is defined', async (t) => {
  for (const [name, value] of Object.entries(api)) t.not(value, undefined, name)
  t.equal(api.constants.PIDFD_NONBLOCK, 2048)
  t.equal(api.DEFAULT_CHUNK_BYTES, 16 * 1024 * 1024)
})
