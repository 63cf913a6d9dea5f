// The package as users load it: CommonJS and ESM entry points from dist/
// (built by `pretest:host`), and the non-Linux behaviour.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { loadNative } from '../../src/binding'
import { kernelFeatures } from '../fixtures/kernel-features'

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
