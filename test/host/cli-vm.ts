// `pidfd-reap vm`: argument handling, host checks and the hand-over to
// scripts/vm, against a fake package whose scripts/vm records what it was
// given (the real guest run is test/host/cli-vm-e2e.ts), plus the real
// scripts' own refusals, which need no guest.
import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { EventEmitter } from 'node:events'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import { main, USAGE } from '../../src/cli'
import { UsageError } from '../../src/cli-usage'
import {
  findProject,
  KERNEL_BASE,
  parseVmArgs,
  QEMU,
  realVmHost,
  runVm,
  vmHostProblem,
  vmScriptArgs,
  type VmCommand,
  type VmHost,
} from '../../src/vm'

const ROOT = join(__dirname, '..', '..')
const run = promisify(execFile)

function fakeIo() {
  const io = { out: '', err: '', stdout: { write: (s: string) => (io.out += s) }, stderr: { write: (s: string) => (io.err += s) } }
  return io
}

function tempDir(t: Test, prefix: string): string {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), prefix)))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

function writeExecutable(path: string, text: string): void {
  writeFileSync(path, text)
  chmodSync(path, 0o755)
}

/**
 * A host that passes every check: root, a stand-in qemu on PATH, an existing
 * kernel source tarball, and a project dir with a package.json; its package
 * has a scripts/vm made of `script` (bash).
 */
function fakeHost(t: Test, script: string, overrides: Partial<VmHost> = {}) {
  const dir = tempDir(t, 'pidfd-reap-vm-host-')
  const bin = join(dir, 'bin')
  const packageRoot = join(dir, 'package')
  const project = join(dir, 'project')
  mkdirSync(bin)
  mkdirSync(join(packageRoot, 'scripts'), { recursive: true })
  mkdirSync(join(project, 'test'), { recursive: true })
  writeExecutable(join(bin, QEMU), '#!/bin/sh\nexit 1\n')
  writeFileSync(join(dir, 'linux-source.tar.xz'), '')
  writeFileSync(join(project, 'package.json'), '{}')
  writeExecutable(join(packageRoot, 'scripts', 'vm'), `#!/bin/bash\n${script}\n`)
  const signals = new EventEmitter()
  const host: VmHost = {
    packageRoot,
    cwd: join(project, 'test'),
    euid: 0,
    env: { PATH: `${bin}:/usr/bin:/bin`, RECORD: join(dir, 'record') },
    kernelSourceTarball: join(dir, 'linux-source.tar.xz'),
    signals,
    stdio: 'ignore',
    ...overrides,
  }
  return { host, dir, bin, project, signals, record: join(dir, 'record') }
}

const command = (argv: string[], extra: Partial<VmCommand> = {}): VmCommand => ({ command: 'vm', debug: false, env: [], argv, ...extra })

t.test('parseVmArgs', async (t) => {
  t.same(parseVmArgs(['--', 'node', '--test']), command(['node', '--test'], { memMiB: undefined, cpus: undefined, timeoutSeconds: undefined }))
  t.same(parseVmArgs(['--debug', '--mem', '1.5G', '--cpus', '1', '--timeout', '90s', '--env', 'A_1=x y', '--env', 'B', '--', 'npm', 'test', '--', '-x']), {
    command: 'vm', debug: true, memMiB: 1536, cpus: 1, timeoutSeconds: 90, env: ['A_1=x y', 'B'], argv: ['npm', 'test', '--', '-x'],
  })
  t.match(parseVmArgs(['--mem=256M', '--timeout', '1500', '--', 'true']), { memMiB: 256, timeoutSeconds: 2 }, 'timeouts round up to seconds')
  t.same(parseVmArgs(['--help']), { command: 'help' })
  t.same(parseVmArgs(['-h', '--', 'true']), { command: 'help' })
  const usage: [string[], RegExp][] = [
    [[], /^vm needs '--' before the command/],
    [['node', '--test'], /^Unexpected argument 'node'/],
    [['--'], /^vm needs a command after '--'$/],
    [['--mem', '100M', '--', 'true'], /^--mem must be a whole number of MiB, at least 256M; got '100M'$/],
    [['--mem', '1000000K', '--', 'true'], /^--mem must be a whole number of MiB/],
    [['--mem', 'lots', '--', 'true'], /--mem' must be like/],
    [['--cpus', '0', '--', 'true'], /^--cpus must be a whole number from 1 to 8 .*; got '0'$/],
    [['--cpus', '9', '--', 'true'], /^--cpus must be .*; got '9'$/],
    [['--cpus', '1.5', '--', 'true'], /^--cpus must be .*; got '1.5'$/],
    [['--cpus', 'NaN', '--', 'true'], /^--cpus must be .*; got 'NaN'$/],
    [['--timeout', '0', '--', 'true'], /^--timeout must be more than 0; got '0'$/],
    [['--timeout', 'soon', '--', 'true'], /--timeout' must be like/],
    [['--json', '--', 'true'], /Unknown option '--json'/],
    [['--env', '1X=2', '--', 'true'], /^--env takes NAME or NAME=VALUE, .*; got '1X=2'$/],
    [['--env', '=x', '--', 'true'], /^--env takes .*; got '=x'$/],
    [['--env', 'A-B', '--', 'true'], /^--env takes .*; got 'A-B'$/],
    [['--mem', '--', 'true'], /argument missing|ambiguous/],
  ]
  for (const [argv, message] of usage) t.throws(() => parseVmArgs(argv), { constructor: UsageError, message }, argv.join(' '))
})

t.test('main: vm usage errors are one line and exit 2; vm --help is the help', async (t) => {
  let io = fakeIo()
  t.equal(await main(['vm', '--cpus', '9', '--', 'true'], io), 2)
  t.equal(io.err, "pidfd-reap: --cpus must be a whole number from 1 to 8 (the guest kernel's limit); got '9' (see pidfd-reap --help)\n")
  io = fakeIo()
  t.equal(await main(['vm', '--help'], io), 0)
  t.equal(io.out, USAGE)
  t.match(USAGE, /pidfd-reap vm \[--debug\] \[--mem SIZE\] \[--cpus N\]/)
})

t.test('the kernel base is the one the scripts build', async (t) => {
  const common = readFileSync(join(ROOT, 'scripts', 'lib', 'common.sh'), 'utf8')
  t.equal(/^PIDFD_REAP_DEFAULT_BASE=(\S+)$/m.exec(common)?.[1], KERNEL_BASE)
})

t.test('findProject: the nearest package.json at or above, else the directory itself', async (t) => {
  const dir = tempDir(t, 'pidfd-reap-vm-project-')
  mkdirSync(join(dir, 'app', 'test', 'unit'), { recursive: true })
  t.equal(findProject(join(dir, 'app', 'test', 'unit')), join(dir, 'app', 'test', 'unit'), 'no package.json above a temp dir')
  writeFileSync(join(dir, 'app', 'package.json'), '{}')
  t.equal(findProject(join(dir, 'app', 'test', 'unit')), join(dir, 'app'))
  t.equal(findProject(join(dir, 'app')), join(dir, 'app'))
  t.equal(findProject(ROOT), ROOT)
})

t.test('vmHostProblem: root, QEMU, the kernel source, not /', async (t) => {
  const { host, bin } = fakeHost(t, 'exit 0')
  t.equal(vmHostProblem(host), undefined)
  t.match(vmHostProblem({ ...host, euid: 1000 }), /^must run as root: /)
  const empty = join(bin, '..', 'empty')
  mkdirSync(empty)
  const noQemu = /^qemu-system-x86_64 not found: install the Debian package qemu-system-x86$/
  t.match(vmHostProblem({ ...host, env: { PATH: `${empty}::/nonexistent` } }), noQemu)
  t.match(vmHostProblem({ ...host, env: {} }), noQemu, 'no PATH at all')
  // An empty PATH entry means the current directory: that is not a QEMU we run.
  t.match(vmHostProblem({ ...host, cwd: bin, env: { PATH: ':' } }), noQemu)
  chmodSync(join(bin, QEMU), 0o644)
  t.match(vmHostProblem({ ...host, env: { PATH: bin } }), noQemu, 'not executable')
  chmodSync(join(bin, QEMU), 0o755)
  t.equal(
    vmHostProblem({ ...host, kernelSourceTarball: '/nonexistent/linux-source-6.12.tar.xz' }),
    '/nonexistent/linux-source-6.12.tar.xz not found: install the Debian package linux-source-6.12 (the guest kernel is built from it)',
  )
  t.equal(vmHostProblem({ ...host, cwd: '/' }), 'will not share / with the guest: run it inside your project directory')
})

t.test('vmScriptArgs', async (t) => {
  t.same(vmScriptArgs(command(['true']), '/p'), ['--project', '/p', '--', 'true'])
  t.same(vmScriptArgs(command(['npm', 'test'], { debug: true, memMiB: 512, cpus: 1, timeoutSeconds: 60, env: ['A=1', 'B'] }), '/p'), [
    '--project', '/p', '--debug', '--mem', '512M', '--cpus', '1', '--timeout', '60', '--env', 'A=1', '--env', 'B', '--', 'npm', 'test',
  ])
})

t.test('runVm hands over to scripts/vm and passes its exit status on', async (t) => {
  const { host, project, record } = fakeHost(
    t,
    'printf "%s\\n" "$PWD" "${PIDFD_REAP_NO_INSTALL-unset}" "$@" >"$RECORD"; exit 7',
  )
  const io = fakeIo()
  t.equal(await runVm(command(['node', '--test'], { cpus: 1 }), io.stderr, host), 7)
  t.equal(io.err, '')
  t.same(readFileSync(record, 'utf8').split('\n'), [
    join(project, 'test'), // the caller's working directory
    '1', // never installs Debian packages itself
    '--project', project, '--cpus', '1', '--', 'node', '--test', '',
  ])
})

t.test('runVm: a refused host runs nothing and exits 1', async (t) => {
  const { host, record } = fakeHost(t, 'touch "$RECORD"')
  const io = fakeIo()
  t.equal(await runVm(command(['true']), io.stderr, { ...host, euid: 1000 }), 1)
  t.match(io.err, /^pidfd-reap vm: must run as root: .*\n$/)
  t.notOk(existsSync(record))
})

t.test('runVm forwards SIGINT, SIGTERM and SIGHUP to scripts/vm and waits for it', async (t) => {
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const { host, signals, record } = fakeHost(
      t,
      `trap 'exit 42' ${signal.slice(3)}; touch "$RECORD"; while :; do sleep 0.05; done`,
    )
    const status = runVm(command(['true']), fakeIo().stderr, host)
    while (!existsSync(record)) await sleep(10)
    t.equal(signals.listenerCount(signal), 1)
    signals.emit(signal, signal)
    t.equal(await status, 42, signal)
    t.equal(signals.listenerCount(signal), 0, 'stops listening')
  }
})

t.test('runVm: scripts/vm killed by a signal is 128 + its number; a script that cannot run is 1', async (t) => {
  const killed = fakeHost(t, 'kill -KILL $$')
  t.equal(await runVm(command(['true']), fakeIo().stderr, killed.host), 137)
  const broken = fakeHost(t, 'exit 0')
  chmodSync(join(broken.host.packageRoot, 'scripts', 'vm'), 0o644)
  const io = fakeIo()
  t.equal(await runVm(command(['true']), io.stderr, broken.host), 1)
  t.match(io.err, /^pidfd-reap vm: cannot run .*\/scripts\/vm: spawn .* EACCES\n$/)
})

t.test('the real host: this package, this process', async (t) => {
  const host = realVmHost()
  t.equal(host.packageRoot, ROOT)
  t.equal(host.cwd, process.cwd())
  t.equal(host.env, process.env)
  t.equal(host.signals, process)
  t.equal(host.kernelSourceTarball, `/usr/src/linux-source-${KERNEL_BASE}.tar.xz`)
  // Through main, with no QEMU on PATH: refused before anything runs.
  const path = process.env.PATH
  process.env.PATH = '/nonexistent'
  t.teardown(() => {
    process.env.PATH = path
  })
  const io = fakeIo()
  t.equal(await main(['vm', '--', 'true'], io), 1)
  t.match(io.err, process.geteuid!() === 0 ? /^pidfd-reap vm: qemu-system-x86_64 not found/ : /^pidfd-reap vm: must run as root/)
})

t.test('the real scripts refuse clearly before any guest runs', async (t) => {
  const vm = join(ROOT, 'scripts', 'vm')
  const notDir = await run(vm, ['--project', '/nonexistent', '--', 'true']).catch((e) => e)
  t.equal(notDir.code, 1)
  t.equal(notDir.stderr, "vm: error: --project: '/nonexistent' is not a directory\n")
  const slash = await run(vm, ['--project', '/', '--', 'true']).catch((e) => e)
  t.equal(slash.stderr, 'vm: error: --project: will not share / with the guest\n')
  // A PATH with what scripts/vm needs up to its QEMU check, but no QEMU.
  const bin = tempDir(t, 'pidfd-reap-vm-path-')
  for (const tool of ['bash', 'dirname', 'basename', 'dpkg-query']) symlinkSync(`/usr/bin/${tool}`, join(bin, tool))
  const noQemu = await run(vm, ['--', 'true'], { env: { ...process.env, PATH: bin, PIDFD_REAP_NO_INSTALL: '1' } }).catch((e) => e)
  t.equal(noQemu.code, 1)
  // Installed (dpkg says so) but not in PATH, or not installed at all.
  t.match(noQemu.stderr, /^vm: error: (qemu-system-x86_64 not found in PATH \(Debian package qemu-system-x86\)|missing Debian package\(s\): qemu-system-x86 .*)\n$/)
  const missing = await run('bash', ['-c', `source ${join(ROOT, 'scripts', 'lib', 'common.sh')}; ensure_packages pidfd-reap-no-such-package bash`], {
    env: { ...process.env, PIDFD_REAP_NO_INSTALL: '1' },
  }).catch((e) => e)
  t.equal(missing.code, 1)
  t.equal(
    missing.stderr,
    'bash: error: missing Debian package(s): pidfd-reap-no-such-package (install them: apt-get install pidfd-reap-no-such-package)\n',
  )
})

t.test('scripts/vm --icount: one vCPU, single-threaded TCG and an instruction-count clock; refused with other CPU counts', async (t) => {
  const vm = join(ROOT, 'scripts', 'vm')
  const kernel = join(tempDir(t, 'pidfd-reap-vm-icount-'), 'bzImage')
  writeFileSync(kernel, '')
  const words = async (args: string[]): Promise<string[]> => (await run(vm, ['--kernel', kernel, ...args, '--dry-run', '--', 'true'])).stdout.trim().split('\n')
  const after = (argv: string[], flag: string): string | undefined => argv[argv.indexOf(flag) + 1]

  const icount = await words(['--icount'])
  t.equal(after(icount, '-smp'), '1')
  t.equal(after(icount, '-accel'), 'tcg,thread=single')
  t.equal(after(icount, '-icount'), 'shift=0,sleep=off')
  const shift3 = await words(['--icount=3', '--cpus', '1'])
  t.equal(after(shift3, '-icount'), 'shift=3,sleep=off')
  t.equal(after(shift3, '-smp'), '1')
  // Without it: the usual two vCPUs, multi-threaded TCG, no -icount.
  const plain = await words([])
  t.equal(after(plain, '-smp'), '2')
  t.equal(after(plain, '-accel'), 'tcg,thread=multi')
  t.notOk(plain.includes('-icount'))

  const refused = async (args: string[], env: NodeJS.ProcessEnv = process.env) =>
    (await run(vm, ['--kernel', kernel, ...args, '--', 'true'], { env }).then(
      () => t.fail(`scripts/vm ${args.join(' ')} was accepted`),
      (e) => e,
    )) as { code: number; stderr: string }
  const twoCpus = await refused(['--icount', '--cpus', '2'])
  t.equal(twoCpus.code, 1)
  t.equal(twoCpus.stderr, 'vm: error: --icount needs --cpus 1 (with several vCPUs the virtual clock advances with whichever runs), not --cpus 2\n')
  t.equal((await refused(['--cpus', '4', '--icount=2'])).stderr, 'vm: error: --icount needs --cpus 1 (with several vCPUs the virtual clock advances with whichever runs), not --cpus 4\n')
  for (const bad of ['x', '11', '-1', '']) {
    t.equal((await refused([`--icount=${bad}`])).stderr, `vm: error: --icount=N: N must be 0..10 (the shift: 2^N ns of guest time per instruction), not '${bad}'\n`)
  }
  t.equal((await refused(['--icount'], { ...process.env, PIDFD_REAP_ACCEL: 'kvm' })).stderr, 'vm: error: --icount needs TCG, not PIDFD_REAP_ACCEL=kvm\n')
})
