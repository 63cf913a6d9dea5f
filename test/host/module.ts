// The package as users load it: CommonJS and ESM entry points from dist/
// (built by `pretest:host`), and the non-Linux behaviour.
import t from 'tap'
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadNative } from '../../src/binding'
import { kernelFeatures } from '../fixtures/kernel-features'
import { writeUserTsconfig } from '../fixtures/user-tsconfig'

const ROOT = join(__dirname, '..', '..')
const node = (args: string[], env: NodeJS.ProcessEnv = {}): string =>
  execFileSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8', env: { ...process.env, ...env } })

t.test('CommonJS require and ESM import by package name', async (t) => {
  const cjs = node(['-e', "const m = require('pidfd-reap'); console.log(typeof m.killAndReap, typeof m.Pidfd.open, m.features().processMrelease)"])
  // The last field is what this kernel offers: the same through every entry point.
  const mrelease = kernelFeatures().processMrelease
  t.equal(cjs, `function function ${mrelease}\n`)
  const esm = node([
    '--input-type=module',
    '-e',
    "import { killAndReap, Pidfd, features } from 'pidfd-reap'; import * as all from 'pidfd-reap'; import { createRequire } from 'node:module';" +
      "const cjs = createRequire(import.meta.url)('pidfd-reap');" +
      'console.log(typeof killAndReap, typeof Pidfd, features().processMrelease, all.Pidfd === cjs.Pidfd, Object.keys(cjs).every((k) => k in all))',
  ])
  t.equal(esm, `function function ${mrelease} true true\n`)
})

t.test('type declarations are shipped', async (t) => {
  const pkg = JSON.parse(node(['-p', "JSON.stringify(require('./package.json'))"]))
  t.equal(pkg.types, './dist/index.d.ts')
  t.match(pkg.exports['.'], { require: { types: './dist/index.d.ts' }, import: { types: './dist/esm.d.mts' } })
  t.ok(existsSync(join(ROOT, 'dist', 'index.d.ts')))
})

t.test('on another OS, loading fails with a clear error', async (t) => {
  for (const platform of ['darwin', 'win32', 'freebsd']) {
    t.throws(() => loadNative(platform), {
      code: 'ERR_PIDFD_REAP_UNSUPPORTED_PLATFORM',
      message: `pidfd-reap needs Linux (pidfds are a Linux feature); this platform is ${platform}`,
    })
  }
  let loaded = false
  t.equal(loadNative('linux', () => ((loaded = true), 'addon' as never)), 'addon')
  t.ok(loaded)
  const script = "try { require('pidfd-reap') } catch (e) { console.log(e.code + ' ' + e.message) }"
  t.equal(
    node(['-r', join(ROOT, 'test', 'fixtures', 'fake-platform.cjs'), '-e', script], { FAKE_PLATFORM: 'darwin' }),
    'ERR_PIDFD_REAP_UNSUPPORTED_PLATFORM pidfd-reap needs Linux (pidfds are a Linux feature); this platform is darwin\n',
  )
  // npm install there must not fail: the install hook skips the build.
  const install = execFileSync(process.execPath, ['-r', join(ROOT, 'test', 'fixtures', 'fake-platform.cjs'), join(ROOT, 'native', 'install.cjs')], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, FAKE_PLATFORM: 'win32' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  t.equal(install, '')
  // On Linux it is node-gyp-build: the built addon loads, so nothing is rebuilt.
  const linux = execFileSync(process.execPath, [join(ROOT, 'native', 'install.cjs')], { cwd: ROOT, encoding: 'utf8' })
  t.equal(linux, '')
})

t.test('the ESM namespace has exactly the CommonJS exports, without __esModule', async (t) => {
  const keys = node([
    '--input-type=module',
    '-e',
    "import * as all from 'pidfd-reap'; import { createRequire } from 'node:module';" +
      "const cjs = createRequire(import.meta.url)('pidfd-reap');" +
      'console.log(JSON.stringify({ esm: Object.keys(all).sort(), cjs: Object.keys(cjs).sort() }))',
  ])
  const { esm, cjs } = JSON.parse(keys) as { esm: string[]; cjs: string[] }
  t.notOk(esm.includes('__esModule'), 'no __esModule')
  t.same(esm, cjs, 'src/esm.mts names every export of src/index.ts')
})

t.test('the public types have no test seams', async (t) => {
  const project = mkdtempSync(join(tmpdir(), 'pidfd-reap-types-'))
  t.teardown(() => rmSync(project, { recursive: true, force: true }))
  mkdirSync(join(project, 'node_modules'))
  symlinkSync(ROOT, join(project, 'node_modules', 'pidfd-reap'))
  writeUserTsconfig(project, ['uses.mts'])
  // Each @ts-expect-error fails the check if the seam were still declared.
  writeFileSync(
    join(project, 'uses.mts'),
    [
      "import { Reaper, PressureWatcher, runPressureDaemon } from 'pidfd-reap'",
      'new Reaper({ deadlineMs: 1 })',
      '// @ts-expect-error the scripted-kernel seam is internal',
      'new Reaper({}, { results: [0], processMrelease: false })',
      '// @ts-expect-error watchPressure() makes watchers',
      'new PressureWatcher()',
      '// @ts-expect-error the daemon\'s hooks are internal',
      "void runPressureDaemon({ cgroup: '/sys/fs/cgroup' }, {})",
    ].join('\n'),
  )
  const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', project], { encoding: 'utf8' })
  t.equal(tsc.status, 0, 'tsc finds exactly the expected errors', { stdout: tsc.stdout })
})
