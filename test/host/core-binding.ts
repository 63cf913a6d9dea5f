// The raw binding under misuse that once ended the process: closeFd on an fd
// that still had a poll handle made libuv abort at the next loop turn.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'

const BINDING = join(__dirname, '..', '..', 'dist', 'binding.js')

t.test(
  'closing a watched fd through the binding does not abort the process',
  async (t) => {
    const script = `
      const { native } = require(${JSON.stringify(BINDING)})
      const { spawn } = require('node:child_process')
      const child = spawn('sleep', ['10'], { stdio: 'ignore' }) // outlives an abort by seconds only
      const fd = native.pidfdOpen(child.pid, 0)
      native.watchReadable(fd, () => {})
      native.closeFd(fd)
      setTimeout(() => { console.log('alive'); child.kill('SIGKILL') }, 50)
    `
    const result = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 })
    t.equal(result.signal, null, 'not killed by a signal (SIGABRT)')
    t.equal(result.stdout, 'alive\n')
  },
)

t.test('a C++ exception in the addon (std::bad_alloc) becomes a JS error, not an abort', async (t) => {
  // The test build's testAllocate asks operator new for 2^62 bytes: malloc
  // fails for real and operator new throws std::bad_alloc. In a child, so
  // that std::terminate (the behaviour without node_addon_api_except_all)
  // would show as SIGABRT instead of ending this test file.
  const script = `
    const { native } = require(${JSON.stringify(BINDING)})
    if (!native.testHooks) throw new Error('not the test build')
    try {
      native.testAllocate(2n ** 62n)
      console.log('allocated?')
    } catch (error) {
      console.log(error instanceof Error, error.message)
    }
    native.testAllocate(4096n) // and the addon still works
    console.log('alive', typeof native.features().processMrelease)
  `
  const result = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 })
  t.equal(result.signal, null, 'not killed by a signal (SIGABRT)', { stderr: result.stderr })
  t.equal(result.stdout, 'true std::bad_alloc\nalive boolean\n')
})
