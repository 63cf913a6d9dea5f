// Refusals for real, inside the QEMU guest on the patched kernel (scripts/vm
// -- scripts/guest-suite): what try_reap_dying_process and TRY_REAP_KILL do
// with an mm shared by another live process, and what killAndReap reports
// then. The host suite tests the same policy against a scripted kernel; here
// the kernel decides, and each report field is checked against what the
// kernel did (pending signals in /proc/<pid>/status, the RSS, vmstat).
//
// The victim is the CLONE_VM child of test/fixtures/sharer.c, frozen in a
// cgroup v1 freezer (a killed task stays frozen there), so that it cannot
// exit between the kill and the reap and every answer is the kernel's about
// a dying process, not about one already gone. Its parent, the sharer, is
// not frozen and stays root.
import t, { type Test } from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import * as api from '../../src/index'
import { Freezer, MiB, compileC, projectRoot, procView } from '../../victims'
import { guestOnly as skip } from '../fixtures/kernel-features'

const SHARER = join(projectRoot(), 'test', 'fixtures', 'sharer.c')
const NOBODY = 65534
const MEMORY_MIB = 64

interface Sharers {
  /** The root parent: a live process on the victim's mm. */
  parent: number
  /** The CLONE_VM child, the victim (frozen once setup resolves). */
  child: number
  bytes: number
  proc: ChildProcess
  /** Resolves with the sharer's exit: [code, signal]. */
  gone: Promise<[number | null, NodeJS.Signals | null]>
  freezer: Freezer
}

/** Starts the sharer with its child running as `uid`, and freezes the child. */
async function startSharers(t: Test, uid: number): Promise<Sharers> {
  const proc = spawn(compileC(SHARER), [String(MEMORY_MIB), String(uid)], { stdio: ['ignore', 'pipe', 'inherit'] })
  const gone = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => proc.once('exit', (code, signal) => resolve([code, signal])))
  const [parent, child, bytes] = await new Promise<number[]>((resolve, reject) => {
    proc.once('error', reject)
    proc.once('exit', (code, signal) => reject(new Error(`sharer exited early: ${code ?? signal}`)))
    createInterface({ input: proc.stdout! }).once('line', (line) => {
      const ready = /^ready (\d+) (\d+) (\d+)$/.exec(line)
      if (ready) resolve(ready.slice(1).map(Number))
      else reject(new Error(`unexpected sharer output: ${line}`))
    })
  })
  const freezer = Freezer.create(`pidfd-reap-refusals-${process.pid}`)
  // Both are ours: the child would otherwise outlive a failed test.
  t.teardown(async () => {
    proc.kill('SIGKILL')
    await gone
    try {
      process.kill(child, 'SIGKILL')
    } catch {
      // already gone
    }
    await freezer.destroy()
  })
  freezer.add(child)
  await freezer.freeze()
  return { parent, child, bytes, proc, gone, freezer }
}

/** The signals pending for the process (its thread's and its shared set), from /proc/<pid>/status. */
function pendingSignals(pid: number): bigint {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const mask = (field: string): bigint => BigInt(`0x${new RegExp(`^${field}:\\s*([0-9a-f]+)$`, 'm').exec(status)![1]}`)
  return mask('SigPnd') | mask('ShdPnd')
}
const killPending = (pid: number): boolean => ((pendingSignals(pid) >> 8n) & 1n) === 1n // SIGKILL is 9: bit 8

const vmstat = (name: string): number => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(readFileSync('/proc/vmstat', 'utf8'))![1])

/** Calls tryReap until it answers 0 (EAGAIN: again), at most `limit` times; returns the sum. */
function reapAll(pidfd: api.Pidfd, limit = 10_000): number {
  let total = 0
  for (let call = 0; call < limit; call++) {
    try {
      const bytes = pidfd.tryReap(16 * MiB)
      if (bytes === 0) return total
      total += bytes
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') throw error
    }
  }
  throw new Error(`no 0 after ${limit} calls (${total} bytes reaped)`)
}

t.test('a CLONE_VM sibling: tryReap answers EPERM while another process lives on the mm', { skip }, async (t) => {
  const s = await startSharers(t, 0)
  using pidfd = api.Pidfd.open(s.child)
  pidfd.sendSignal('SIGKILL')
  t.equal(killPending(s.child), true, 'the victim has SIGKILL pending (frozen, it cannot act on it)')
  t.equal(killPending(s.parent), false, 'its sharer has not')
  const pagesBefore = vmstat('reap_dying_pages')
  t.throws(() => pidfd.tryReap(16 * MiB), { code: 'EPERM', errno: -1, syscall: 'try_reap_dying_process' }, 'refused: the mm is shared with a live process')
  t.throws(() => pidfd.tryReap(0), { code: 'EPERM' }, 'the probe is refused alike')
  t.equal(vmstat('reap_dying_pages'), pagesBefore, 'reap_dying_pages did not move')
  t.ok(procView(s.parent).rssBytes >= s.bytes, `the sharer still holds its ${s.bytes / MiB} MiB`)
  t.equal(pidfd.hasExited(), false, 'the victim has not exited')

  // The same victim once its sharer is gone: then it can be reaped.
  s.proc.kill('SIGKILL')
  t.same(await s.gone, [null, 'SIGKILL'], 'the sharer is killed (by this test)')
  const reaped = reapAll(pidfd)
  t.ok(reaped >= 0.9 * s.bytes && reaped <= s.bytes + 2 * MiB, `with the sharer gone, the same calls reap ${reaped / MiB} MiB`)
  t.equal(pidfd.hasExited(), false, 'still frozen, not exited')
})

t.test('TRY_REAP_KILL (killAndReap as root) kills every process on the mm and reaps', { skip }, async (t) => {
  const s = await startSharers(t, 0)
  const pagesBefore = vmstat('reap_dying_pages')
  const report = await api.killAndReap(s.child, { chunkBytes: 16 * MiB })
  t.match(report, { pid: s.child, mechanism: 'try_reap', killPath: 'try_reap_kill', stopReason: 'done', exited: false, exitedAtMs: null })
  t.equal(report.refusal, undefined, 'no refusal')
  t.ok(report.bytesReaped >= 0.9 * s.bytes && report.bytesReaped <= s.bytes + 2 * MiB, `${report.bytesReaped / MiB} MiB reaped`)
  t.ok((vmstat('reap_dying_pages') - pagesBefore) * 4096 >= report.bytesReaped, 'reap_dying_pages moved by as much')
  t.same(await s.gone, [null, 'SIGKILL'], 'the sharer (never signalled by this test) was killed by the same call')
  t.equal(killPending(s.child), true, 'the frozen victim has SIGKILL pending')
})

/** killAndReap(pid) run by a node process as `uid`; resolves with its JSON report (or error). */
function killAndReapAs(uid: number, pid: number): Promise<Record<string, unknown>> {
  const script = `
    require(process.argv[1]).killAndReap(Number(process.argv[2]), { chunkBytes: 16 * 1024 * 1024 }).then(
      (report) => console.log(JSON.stringify({ report })),
      (error) => console.log(JSON.stringify({ error: { code: error.code, message: error.message } })))`
  const child = spawn(process.execPath, ['-e', script, join(projectRoot(), 'dist', 'index.js'), String(pid)], {
    uid,
    gid: uid,
    cwd: '/',
    // Not tap's NODE_OPTIONS: its process-info hook would write into the
    // project as this user.
    env: { PATH: process.env.PATH },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  let out = ''
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()))
  return new Promise((resolve, reject) => {
    child.once('error', reject)
    child.once('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`the caller as uid ${uid} exited ${code}: ${out}`))))
  })
}

t.test('unprivileged TRY_REAP_KILL with a root sharer falls back; the refusal is reported as the kernel gave it', { skip }, async (t) => {
  const s = await startSharers(t, NOBODY)
  t.equal(procView(s.child).exists, true)
  t.match(readFileSync(`/proc/${s.child}/status`, 'utf8'), new RegExp(`^Uid:\\s+${NOBODY}\\s+${NOBODY}\\s+${NOBODY}\\s`, 'm'), `the victim runs as uid ${NOBODY}`)
  t.match(readFileSync(`/proc/${s.parent}/status`, 'utf8'), /^Uid:\s+0\s+0\s+0\s/m, 'its sharer as root')
  const parentRss = procView(s.parent).rssBytes
  const pagesBefore = vmstat('reap_dying_pages')
  const callsBefore = vmstat('reap_dying_calls')

  const { report, error } = (await killAndReapAs(NOBODY, s.child)) as { report?: api.ReapReport; error?: unknown }
  t.equal(error, undefined, 'killAndReap resolves: the kill itself succeeded')
  t.comment(JSON.stringify(report))
  // What the kernel did: TRY_REAP_KILL killed nobody (the sharer may not be
  // killed by this uid); pidfd_send_signal killed the victim; try_reap
  // refused to reap an mm a live process uses.
  t.equal(killPending(s.parent), false, 'the root sharer was not signalled')
  t.same([s.proc.exitCode, s.proc.signalCode], [null, null], 'and lives')
  t.ok(procView(s.parent).rssBytes >= parentRss - MiB, 'with its memory')
  t.equal(killPending(s.child), true, 'the victim was killed (SIGKILL pending, frozen)')
  t.equal(vmstat('reap_dying_pages'), pagesBefore, 'no page was reaped (reap_dying_pages)')
  const kernelCalls = vmstat('reap_dying_calls') - callsBefore
  t.ok(kernelCalls >= 2, `the kernel counted ${kernelCalls} calls: the refused kill, then the refused reaps`)

  // ... and the report says exactly that.
  t.match(report, {
    pid: s.child,
    mechanism: 'try_reap',
    killPath: 'pidfd_send_signal',
    stopReason: 'refused',
    refusal: { code: 'EPERM', errno: -1, syscall: 'try_reap_dying_process', message: /EPERM/ },
    bytesReaped: 0,
    busyRetries: 0,
    exited: false,
    exitedAtMs: null,
  })
  const r = report!
  t.ok(r.calls >= 2 && r.calls <= kernelCalls, `${r.calls} calls: the TRY_REAP_KILL one and at least one reap, none the kernel did not count`)
  t.ok(r.killedAtMs !== null && r.killedAtMs >= 0 && r.killedAtMs <= r.elapsedMs, `killed at ${r.killedAtMs} ms of ${r.elapsedMs} ms`)
  t.ok(r.rssBeforeBytes !== null && r.rssBeforeBytes >= s.bytes, `rssBeforeBytes ${r.rssBeforeBytes} (the shared mm's ${s.bytes} bytes and more)`)
  t.ok(r.rssDropBytes !== null && Math.abs(r.rssDropBytes) <= MiB, `rssDropBytes ${r.rssDropBytes}: nothing came back`)
  t.equal(procView(s.child).hasMm, true, 'the victim still has its mm')
})
