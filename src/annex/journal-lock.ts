// git-annex's journal lock: every change to a file of the git-annex branch is a
// read-modify-write of its journal file, done under an exclusive fcntl lock on
// `.git/annex/journal.lck` (Annex/Journal.hs lockJournal → withExclusiveLock
// gitAnnexJournalLock), and git-annex takes the same lock to commit the journal. A writer
// that skips it can lose a line another git-annex process wrote at the same moment.
//
// Node cannot take fcntl locks, so a perl process (perl-base is in every Debian/Ubuntu
// install git-annex runs on) takes it for us, holds it while we work, and drops it when
// told or when we go away: the kernel releases an fcntl lock with its holder, so a killed
// gateway never leaves the journal locked. Within this process, users of the same lock file
// queue here rather than each parking a perl process on the kernel lock.
import { spawn } from 'node:child_process'
import { mkdir } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { JournalLockError } from '../errors.js'

// struct flock on 64-bit Linux: short l_type, short l_whence, (pad), off_t l_start, off_t
// l_len, pid_t l_pid, (pad).
const HOLDER = `
use strict; use Fcntl qw(O_RDWR O_CREAT F_SETLKW F_WRLCK);
$| = 1;
my $path = shift;
sysopen(my $fh, $path, O_RDWR | O_CREAT, 0666) or die "cannot open $path: $!\\n";
my $fl = pack('s s x4 q q i x4', F_WRLCK, 0, 0, 0, 0);
fcntl($fh, F_SETLKW, $fl) or die "cannot lock $path: $!\\n";
print "locked\\n";
while (<STDIN>) {}
`

/** 64-bit Linux: where the struct above is the kernel's. */
const SUPPORTED = process.platform === 'linux' && ['x64', 'arm64', 'ppc64', 's390x', 'riscv64', 'loong64'].includes(process.arch)

const queues = new Map<string, Promise<unknown>>()

/** Runs `fn` while holding git-annex's journal lock of the repository whose git dir is `gitDir`. */
export function withJournalLock<T>(gitDir: string, fn: () => Promise<T>, opts: { readonly timeoutMs?: number } = {}): Promise<T> {
  const lockFile = join(gitDir, 'annex', 'journal.lck')
  const prev = queues.get(lockFile) ?? Promise.resolve()
  const run = prev.then(
    () => held(lockFile, fn, opts.timeoutMs ?? 120_000),
    () => held(lockFile, fn, opts.timeoutMs ?? 120_000),
  )
  const tail = run.catch(() => undefined)
  queues.set(lockFile, tail)
  void tail.then(() => {
    if (queues.get(lockFile) === tail) queues.delete(lockFile)
  })
  return run
}

async function held<T>(lockFile: string, fn: () => Promise<T>, timeoutMs: number): Promise<T> {
  if (!SUPPORTED) throw new JournalLockError(`taking git-annex's journal lock needs 64-bit Linux (this is ${process.platform}/${process.arch})`)
  await mkdir(dirname(lockFile), { recursive: true })
  const child = spawn('perl', ['-e', HOLDER, lockFile], { stdio: ['pipe', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')))
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()))
  const release = async () => {
    child.stdin.end()
    await exited
  }
  try {
    await new Promise<void>((resolve, reject) => {
      const lines = createInterface({ input: child.stdout })
      const timer = setTimeout(() => {
        child.kill('SIGKILL')
        reject(new JournalLockError(`git-annex's journal lock ${lockFile} was not free within ${timeoutMs / 1000} s (a git-annex process holds it)`))
      }, timeoutMs)
      const done = (err?: Error) => {
        clearTimeout(timer)
        lines.close()
        child.off('error', onError)
        child.off('close', onClose)
        if (err) reject(err)
        else resolve()
      }
      const onError = (e: Error) => done(new JournalLockError(`cannot run perl to take git-annex's journal lock: ${e.message}`))
      const onClose = () => done(new JournalLockError(`cannot take git-annex's journal lock ${lockFile}: ${stderr.trim() || 'the lock holder exited'}`))
      lines.once('line', (l) => done(l === 'locked' ? undefined : new JournalLockError(`unexpected answer from the journal lock holder: ${l}`)))
      child.once('error', onError)
      child.once('close', onClose)
    })
  } catch (e) {
    await release()
    throw e
  }
  try {
    return await fn()
  } finally {
    await release()
  }
}
