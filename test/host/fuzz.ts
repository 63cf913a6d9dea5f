// At least 10,000 random calls with arbitrary arguments must never crash the
// process. Runs in a child process; the seed is printed for reproducing
// (PIDFD_REAP_FUZZ_SEED=<seed> npm run test:host).
import t from 'tap'
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'

const FUZZ = join(__dirname, '..', 'fixtures', 'fuzz.cjs')
const CALLS = 12_000

t.test('random calls never crash', async (t) => {
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
  t.same(summary.unexpected, [], 'every failure is an Error with a code')
  t.ok(summary.ok > 0, `${summary.ok} calls succeeded`)
  t.ok(Object.keys(summary.errors).some((key) => key.endsWith(':ERR_INVALID_ARG_TYPE')))
  t.ok(Object.keys(summary.errors).some((key) => key.endsWith(':ESRCH') || key.endsWith(':EBADF')))
  t.comment(JSON.stringify(summary.errors))
})
