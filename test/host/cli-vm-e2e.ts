// `npx pidfd-reap vm -- node --test`, for real, as a downstream project runs
// it: a project outside this checkout, with the package as npm would ship it
// (the files `npm pack` lists) installed read-only under node_modules. The
// guest must see the patched kernel, write to the project, and hand back the
// command's exit status. Runs when the guest kernel is cached (a build takes
// many minutes); about 15 s a guest run. scripts/test runs it once more
// right after its guest stage built the kernel, and has the host suite's
// run skip it (PIDFD_REAP_E2E_AFTER_BUILD=1), so that it runs exactly once
// and never skips for want of a kernel.
import t from 'tap'
import { execFileSync, spawnSync, type SpawnSyncReturns } from 'node:child_process'
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { KERNEL_SOURCE_PACKAGE, QEMU } from '../../src/vm'

const ROOT = join(__dirname, '..', '..')
t.setTimeout(300_000)

// A plain shell's environment: tap's NODE_OPTIONS (coverage hooks writing
// into this checkout) must not reach the guest's node.
// A test installs no Debian packages.
const env: NodeJS.ProcessEnv = { LANG: 'C.UTF-8', PIDFD_REAP_NO_INSTALL: '1' }
for (const name of ['PATH', 'HOME', 'TMPDIR', 'PIDFD_REAP_CACHE']) if (process.env[name] !== undefined) env[name] = process.env[name]

// tap's process tracking adds its own --import to NODE_OPTIONS in every child's
// environment, whatever env is passed; env(1) drops it again, since the guest
// cannot see this checkout's node_modules when it lives under a private /root.
function run(command: string, args: string[], cwd: string): SpawnSyncReturns<string> {
  return spawnSync('env', ['-u', 'NODE_OPTIONS', command, ...args], { cwd, env, encoding: 'utf8', maxBuffer: 64 << 20 })
}

const tarball = `/usr/src/${KERNEL_SOURCE_PACKAGE}.tar.xz`
// Why this host cannot run it (checked in this order), or undefined.
function missing(): string | undefined {
  if (process.env.PIDFD_REAP_E2E_AFTER_BUILD === '1') return 'scripts/test runs it after its kernel build (PIDFD_REAP_E2E_AFTER_BUILD=1)'
  if (process.geteuid!() !== 0) return 'needs root'
  if (run('sh', ['-c', `command -v ${QEMU}`], ROOT).status !== 0) return `needs ${QEMU}`
  if (!existsSync(tarball)) return `needs ${tarball}`
  // The installed copy has the same series, so the same cache key.
  const cached = run(join(ROOT, 'scripts', 'kernel-build'), ['--cached-only', '--quiet'], ROOT)
  if (cached.status === 3) return 'the guest kernel is not built yet: scripts/kernel-build (npm test builds it in its guest stage)'
  return undefined
}

t.test("npx pidfd-reap vm runs a project's node --test on the patched kernel", { skip: missing() ?? false }, async (t) => {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'pidfd-reap-vm-e2e-')))
  t.teardown(() => {
    execFileSync('chmod', ['-R', 'u+w', dir])
    rmSync(dir, { recursive: true, force: true })
  })
  const project = join(dir, 'downstream')
  const installed = join(project, 'node_modules', 'pidfd-reap')
  mkdirSync(join(project, 'test'), { recursive: true })
  mkdirSync(join(project, 'node_modules', '.bin'), { recursive: true })
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'downstream', version: '1.0.0', private: true }))
  writeFileSync(
    join(project, 'test', 'kernel.test.js'),
    [
      "const { test } = require('node:test')",
      "const assert = require('node:assert')",
      "const fs = require('node:fs')",
      "test('the patched kernel', () => {",
      "  assert.match(fs.readFileSync('/sys/kernel/mm/reap_dying/syscall_nr', 'utf8'), /^\\d+\\n$/)",
      "  assert.equal(process.env.DOWNSTREAM_SETTING, 'from --env')",
      "  fs.writeFileSync('../written-in-guest', fs.readFileSync('/proc/sys/kernel/osrelease'))",
      '})',
    ].join('\n'),
  )

  // What npm would ship, with the modes it would ship them with.
  const packed = JSON.parse(run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], ROOT).stdout) as [
    { files: { path: string; mode: number }[] },
  ]
  for (const { path, mode } of packed[0].files) {
    mkdirSync(dirname(join(installed, path)), { recursive: true })
    cpSync(join(ROOT, path), join(installed, path))
    chmodSync(join(installed, path), mode)
  }
  // The addon as `npm install` builds it when there is no prebuild, and the dependency that loads it.
  cpSync(join(ROOT, 'build', 'Release'), join(installed, 'build', 'Release'), { recursive: true })
  cpSync(join(ROOT, 'node_modules', 'node-gyp-build'), join(project, 'node_modules', 'node-gyp-build'), { recursive: true })
  symlinkSync('../pidfd-reap/bin/pidfd-reap', join(project, 'node_modules', '.bin', 'pidfd-reap'))
  // Read-only, as a package may be: the kernel is built into the cache.
  execFileSync('chmod', ['-R', 'a-w', installed])

  const unshipped = ['scripts/vm', 'scripts/kernel-build', 'scripts/lib/common.sh', 'scripts/guest/init', 'kernel-patch/config'].filter(
    (path) => !existsSync(join(installed, path)),
  )
  t.same(unshipped, [], 'npm pack ships what vm runs (package.json "files")')
  if (unshipped.length > 0) return
  const cached = run(join(installed, 'scripts', 'kernel-build'), ['--cached-only', '--quiet'], project)
  t.equal(cached.status, 0, 'the installed copy finds the same cached kernel', { stderr: cached.stderr })

  const tests = run('npx', ['--no-install', 'pidfd-reap', 'vm', '--cpus', '1', '--mem', '1G', '--env', 'DOWNSTREAM_SETTING=from --env', '--', 'node', '--test'], join(project, 'test'))
  t.equal(tests.status, 0, 'node --test passed in the guest', { stdout: tests.stdout, stderr: tests.stderr })
  t.match(tests.stdout, /^# pass 1$/m, "the guest's stdout comes out on ours")
  t.match(readFileSync(join(project, 'written-in-guest'), 'utf8'), /^\d+\.\d+\S*\n$/, 'the guest wrote to the project')

  const failing = run('npx', ['--no-install', 'pidfd-reap', 'vm', '--cpus', '1', '--mem', '1G', '--', 'node', '-e', 'process.exit(7)'], project)
  t.equal(failing.status, 7, "the command's exit status", { stderr: failing.stderr })
})
