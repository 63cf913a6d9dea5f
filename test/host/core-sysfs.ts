// A failure to read the sysfs file that publishes try_reap's number (EMFILE,
// ENOMEM) passes, so it is reported for what it is and never cached: the next
// call reads the file again. A file of its own, because the binding reads the
// file at its first use in a process, and this test must be that first use.
import t from 'tap'
import * as api from '../../src/index'
import { native } from '../../src/binding'
import { withFdTableFull } from '../fixtures/fds'
import { kernelFeatures, SYSCALL_NR_FILE } from '../fixtures/kernel-features'
import { killQuietly, startSleeper } from '../../victims'

t.test('EMFILE while reading the syscall number is reported and not cached', async (t) => {
  const sleeper = startSleeper()
  t.teardown(() => killQuietly(sleeper))
  using pidfd = api.Pidfd.open(sleeper.pid)
  const during = withFdTableFull(() => {
    let error: unknown
    try {
      pidfd.tryReap(0)
    } catch (caught) {
      error = caught
    }
    return { error, features: api.features(), syscallNr: native.features().syscallNr }
  })
  t.match(during.error, {
    code: 'ERR_PIDFD_REAP_UNAVAILABLE',
    errno: -38,
    syscall: 'try_reap_dying_process',
    pid: sleeper.pid,
    message: `try_reap_dying_process is not available: ${SYSCALL_NR_FILE} could not be read (EMFILE: too many open files)`,
  })
  t.equal(during.syscallNr, -24, 'the binding saw EMFILE')
  t.equal(during.features.tryReap, null, 'no number confirmed meanwhile')

  // With fds free again, the file is read again and gives the kernel's answer.
  const kernel = kernelFeatures()
  if (kernel.tryReapNr === null) {
    t.equal(native.features().syscallNr, -2, 'ENOENT: a kernel without the patch')
    t.throws(() => pidfd.tryReap(0), { code: 'ERR_PIDFD_REAP_UNAVAILABLE', message: /syscall_nr missing/ })
  } else {
    t.same(api.features().tryReap, { syscallNr: kernel.tryReapNr })
    t.throws(() => pidfd.tryReap(0), { code: 'EPERM', pid: sleeper.pid }, 'called now: a live process is not dying')
  }
})
