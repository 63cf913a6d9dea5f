// At least 10,000 random calls with arbitrary arguments, to the public API and
// straight to the raw native binding (which validates nothing itself), must
// never crash the process, and must leave no fd open. Runs in a child process;
// the seed is printed for reproducing (PIDFD_REAP_FUZZ_SEED=<seed> npm run test:host).
import t from 'tap'
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'

const FUZZ = join(__dirname, '..', 'fixtures', 'fuzz.cjs')
const CALLS = 12_000

t.test('random calls never crash and leak no fd', async (t) => {
  const seed = Number(process.env.PIDFD_REAP_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31))
  t.comment(`fuzz seed ${seed}`)
  const { stdout } = await promisify(execFile)(process.execPath, [FUZZ, String(seed), String(CALLS)], {
    encoding: 'utf8',
    timeout: 150_000,
    maxBuffer: 16 * 1024 * 1024,
  })
  const summary = JSON.parse(stdout)
  t.equal(summary.seed, seed)
  t.equal(summary.calls, CALLS)
  t.same(summary.unexpected, [], "every failure is an Error with a code, or the binding's own TypeError or RangeError")
  t.ok(summary.ok > 0, `${summary.ok} public calls succeeded`)
  t.ok(Object.keys(summary.errors).some((key) => key.endsWith(':ERR_INVALID_ARG_TYPE')))
  t.ok(Object.keys(summary.errors).some((key) => key.endsWith(':ESRCH') || key.endsWith(':EBADF')))
  // The raw binding: every function, called often, with good and bad arguments.
  t.same(summary.unfuzzed, [], 'every function of the binding has a fuzz entry')
  t.ok(summary.rawCalls > CALLS / 3, `${summary.rawCalls} raw calls`)
  for (const name of ['pidfdOpen', 'pidfdSendSignal', 'tryReap', 'processMreleaseAsync', 'watchReadable', 'closeFd', 'startReap']) {
    t.ok(summary.errors[`raw.${name}:ok`] > 0, `raw ${name} returned results`)
    t.ok(summary.errors[`raw.${name}:TypeError`] > 0, `raw ${name} rejected bad arguments`)
  }
  t.same(summary.leakedFds, [], `no fd left open (${summary.fds.before} before, ${summary.fds.after} after)`)
  t.same(summary.closedFds, [], "no fd of Node's closed")
  t.comment(JSON.stringify(summary.errors))
})
