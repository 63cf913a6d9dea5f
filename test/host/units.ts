import t from 'tap'
import { formatBytes, formatDuration, parseDuration, parseSize } from '../../src/index'

t.test('parseSize', async (t) => {
  const cases: [string, number][] = [
    ['4096', 4096], ['0', 0], ['16M', 16 * 2 ** 20], ['16m', 16 * 2 ** 20], ['512K', 512 * 1024],
    ['512KiB', 512 * 1024], ['1G', 2 ** 30], ['1.5GiB', 1.5 * 2 ** 30], ['2 MB', 2 * 2 ** 20],
    ['1t', 2 ** 40], ['10b', 10], [' 3 MiB ', 3 * 2 ** 20], ['1.0', 1],
    // With a unit, rounded down to whole bytes.
    ['1.0001K', 1024], ['0.0001K', 0],
  ]
  for (const [text, bytes] of cases) t.equal(parseSize(text), bytes, text)
  for (const bad of ['', 'M', '-1', '1X', '1.M', 'abc', '1e3', '9999999999T', 'toString']) {
    t.throws(() => parseSize(bad, '--chunk'), { code: 'ERR_INVALID_ARG_VALUE', message: /--chunk.*must be like/ }, bad)
  }
  for (const fraction of ['1.5', '0.5', '1.9b']) {
    t.throws(() => parseSize(fraction, '--chunk'), { code: 'ERR_INVALID_ARG_VALUE', message: /--chunk' must be a whole number of bytes/ }, fraction)
  }
  t.throws(() => parseSize(5 as unknown as string), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' })
})

t.test('parseDuration', async (t) => {
  const cases: [string, number][] = [['500ms', 500], ['2s', 2000], ['250', 250], ['1.5s', 1500], ['1m', 60000], ['2min', 120000]]
  for (const [text, ms] of cases) t.equal(parseDuration(text), ms, text)
  for (const bad of ['', 'ms', '-5ms', '5h', '5 sec']) {
    t.throws(() => parseDuration(bad), { code: 'ERR_INVALID_ARG_VALUE' }, bad)
  }
})

t.test('formatBytes and formatDuration', async (t) => {
  t.equal(formatBytes(0), '0 B')
  t.equal(formatBytes(1023), '1023 B')
  t.equal(formatBytes(1536), '1.5 KiB')
  t.equal(formatBytes(16 * 2 ** 20), '16.0 MiB')
  t.equal(formatBytes(3 * 2 ** 30), '3.0 GiB')
  t.equal(formatBytes(2 ** 50), '1024.0 TiB')
  t.equal(formatDuration(12.4), '12 ms')
  t.equal(formatDuration(1500), '1.50 s')
})
