// How the addon is built where no prebuild fits (node-gyp from source), and
// what scripts/prebuild (npm pack's prepack) refuses to ship.
import t from 'tap'
import { execFileSync, spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'

const ROOT = join(__dirname, '..', '..')
const NODE_GYP = join(ROOT, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js')

// A compile of the whole addon on a busy machine.
t.setTimeout(600_000)

const work = mkdtempSync(join(tmpdir(), 'pidfd-reap-build-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))

// The files node-gyp builds from, as a clone has them, plus this tree's
// node_modules (node-addon-api): the tree's own build/ is left alone.
function copyOfSources(name: string): string {
  const copy = join(work, name)
  const listed = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard', 'native', 'binding.gyp', 'package.json'], {
    cwd: ROOT,
    encoding: 'utf8',
  })
  for (const file of listed.split('\0')) {
    if (file === '' || !existsSync(join(ROOT, file))) continue
    mkdirSync(dirname(join(copy, file)), { recursive: true })
    copyFileSync(join(ROOT, file), join(copy, file))
  }
  symlinkSync(join(ROOT, 'node_modules'), join(copy, 'node_modules'))
  return copy
}

// The environment of a user's `npm install`: not prebuildify's.
function sourceBuildEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env }
  for (const name of Object.keys(env)) if (name.startsWith('PREBUILD_')) delete env[name]
  return env
}

t.test('a source build leaves the glibc shim and static libstdc++ out', async (t) => {
  const copy = copyOfSources('source')
  // As on armv7l, ppc64le, s390x or riscv64, where the shim cannot compile:
  // a build that compiled it fails here.
  writeFileSync(join(copy, 'native', 'glibc_compat.c'), '#error "a source build compiled the prebuild-only glibc shim"\n')
  const built = spawnSync(process.execPath, [NODE_GYP, 'rebuild'], { cwd: copy, env: sourceBuildEnv(), encoding: 'utf8', maxBuffer: 64 << 20 })
  t.equal(built.status, 0, 'node-gyp rebuild succeeds', { stderr: built.stderr.slice(-4000) })
  if (built.status !== 0) return
  const addon = join(copy, 'build', 'Release', 'pidfd_reap.node')
  const loaded = spawnSync(process.execPath, ['-p', `typeof require(${JSON.stringify(addon)}).features().processMrelease`], { encoding: 'utf8' })
  t.equal(loaded.stdout, 'boolean\n', 'the addon loads and answers', { stderr: loaded.stderr })
  // Built as a user's npm install builds it (no test/ beside native/): the
  // scripted kernel of the policy tests is not in it, and asking for it fails.
  const scripted = `const a = require(${JSON.stringify(addon)}); console.log(a.testHooks);
    try { a.startReap(-1, 1, 1n, 1n, 0, () => {}, { results: [0] }) } catch (e) { console.log(e.message) }`
  const hooks = spawnSync(process.execPath, ['-e', scripted], { encoding: 'utf8' })
  t.equal(hooks.stdout, 'false\npidfd-reap: this build has no test hooks (a scripted kernel needs the test build: binding.gyp test_hooks)\n', 'no test hooks in it', { stderr: hooks.stderr })
  // Linked as any C++ addon: against the system's libstdc++, which every
  // machine that compiles has, rather than libstdc++.a, which many lack.
  const needed = execFileSync('objdump', ['-p', addon], { encoding: 'utf8' })
  t.match(needed, /NEEDED\s+libstdc\+\+\.so/, 'needs the shared libstdc++')
})

t.test('a glibc prebuild (prebuildify sets PREBUILD_LIBC) takes the shim', async (t) => {
  const copy = copyOfSources('prebuild')
  // Only configure: the packed-tarball test builds and checks the prebuild.
  for (const [libc, shim] of [
    ['glibc', true],
    ['musl', false],
  ] as const) {
    const configured = spawnSync(process.execPath, [NODE_GYP, 'configure'], {
      cwd: copy,
      env: { ...sourceBuildEnv(), PREBUILD_LIBC: libc },
      encoding: 'utf8',
    })
    t.equal(configured.status, 0, `node-gyp configure (${libc})`, { stderr: configured.stderr.slice(-4000) })
    const makefile = readFileSync(join(copy, 'build', 'pidfd_reap.target.mk'), 'utf8')
    t.equal(makefile.includes('glibc_compat.o'), shim, `${libc}: the shim is ${shim ? '' : 'not '}compiled`)
    t.equal(makefile.includes('-static-libstdc++'), shim, `${libc}: libstdc++ is ${shim ? 'static' : 'shared'}`)
  }
})

t.test('scripts/prebuild fails before building when a promised prebuild cannot be built', async (t) => {
  // A PATH with dirname (the script finds its root with it) and no cross compiler.
  const bin = join(work, 'bin')
  mkdirSync(bin)
  symlinkSync(execFileSync('sh', ['-c', 'command -v dirname'], { encoding: 'utf8' }).trim(), join(bin, 'dirname'))
  const copy = join(work, 'promise')
  mkdirSync(join(copy, 'prebuilds', 'linux-x64'), { recursive: true })
  writeFileSync(join(copy, 'prebuilds', 'linux-x64', 'kept'), '')
  mkdirSync(join(copy, 'scripts'))
  copyFileSync(join(ROOT, 'scripts', 'prebuild'), join(copy, 'scripts', 'prebuild'))
  const run = (env: NodeJS.ProcessEnv) =>
    spawnSync('/bin/bash', [join(copy, 'scripts', 'prebuild')], { env: { PATH: bin, ...env }, encoding: 'utf8' })

  const missing = run({})
  t.equal(missing.status, 1, 'no linux-arm64 cross compiler: fails')
  t.match(missing.stderr, /linux-arm64: no aarch64-linux-gnu-g\+\+ .*PIDFD_REAP_PREBUILD_ARCHES=x64/, 'says what is missing and how to pack without it')
  t.ok(existsSync(join(copy, 'prebuilds', 'linux-x64', 'kept')), 'before touching prebuilds/')

  const unknown = run({ PIDFD_REAP_PREBUILD_ARCHES: 'x64 riscv64' })
  t.equal(unknown.status, 1, 'an arch it cannot build: fails')
  t.match(unknown.stderr, /unknown arch 'riscv64'/)
})
