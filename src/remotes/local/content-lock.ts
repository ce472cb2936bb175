// Locking content against removal (spec §1.5 LOCKCONTENT; Annex/Content.hs
// lockContentShared, checkRetentionTimestamp).
//
// git-annex holds an fcntl shared lock on `<object>.lck` and, for P2P locks, also
// writes a retention timestamp `<object>.rtm` (now + 600 s) so that the content stays
// undroppable even if the locking process dies. Node has no fcntl locks, so within this
// process a counter stands in for the shared lock, and the .rtm file is what other
// git-annex processes in the same repository see and honour.
import { randomBytes } from 'node:crypto'
import { lstat, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { UnsafePathError } from '../../errors.js'
import { freezeDirOf, thawDirOf } from './layout.js'
import { lstatRegular, openRegularForReading } from './safe-fs.js'

/** How long a lock holds content, like git-annex's p2pDefaultLockContentRetentionDuration. */
export const LOCK_RETENTION_SECONDS = 600

/** Runs functions for the same id one at a time, in call order. */
export class KeyMutex {
  private readonly tails = new Map<string, Promise<unknown>>()

  run<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(id) ?? Promise.resolve()
    const run = prev.then(fn, fn)
    const tail = run.catch(() => undefined)
    this.tails.set(id, tail)
    // Forget the id once nothing queued behind this call, so the map stays small.
    void tail.then(() => {
      if (this.tails.get(id) === tail) this.tails.delete(id)
    })
    return run
  }
}

/** In-process shared locks: a count per key. */
export class SharedLocks {
  private readonly held = new Map<string, number>()

  isLocked(id: string): boolean {
    return (this.held.get(id) ?? 0) > 0
  }
  acquire(id: string): void {
    this.held.set(id, (this.held.get(id) ?? 0) + 1)
  }
  release(id: string): void {
    const n = (this.held.get(id) ?? 0) - 1
    if (n > 0) this.held.set(id, n)
    else this.held.delete(id)
  }
}

/** A POSIX time as git-annex shows it: whole seconds, then up to 9 decimals without trailing zeros, then `s`. */
export function formatPosixTime(ns: bigint): string {
  const sec = ns / 1_000_000_000n
  const frac = (ns % 1_000_000_000n).toString().padStart(9, '0').replace(/0+$/, '')
  return frac ? `${sec}.${frac}s` : `${sec}s`
}

/** Utility/TimeStamp.hs parsePOSIXTime: `123`, `123.45`, `123.45s`; nothing else (not even a newline). */
export function parsePosixTime(text: string): number | undefined {
  const m = /^(-?\d+)(?:\.(\d*))?s?$/.exec(text)
  if (!m) return undefined
  const frac = m[2] ? Number(`0.${m[2]}`) : 0
  return m[1]!.startsWith('-') ? Number(m[1]) - frac : Number(m[1]) + frac
}

let lastStamp = 0n

/**
 * now + `seconds` as a retention timestamp, strictly later than any this process
 * wrote before: release() deletes the file only if it still holds its own value, so
 * two locks must never write the same one.
 */
export function nextRetentionStamp(seconds: number = LOCK_RETENTION_SECONDS): string {
  let ns = BigInt(Date.now()) * 1_000_000n + BigInt(seconds) * 1_000_000_000n
  if (ns <= lastStamp) ns = lastStamp + 1n
  lastStamp = ns
  return formatPosixTime(ns)
}

export const retentionPath = (object: string) => `${object}.rtm`
const retentionLockPath = (object: string) => `${object}.rtl`

/**
 * The .rtm file's time in POSIX seconds, and its raw text; undefined when absent or
 * unparseable (git-annex ignores those too). One that is not a regular file (a planted
 * symlink or FIFO) is refused with UnsafePathError: never followed, never waited on.
 */
export async function readRetention(object: string): Promise<{ text: string; time: number } | undefined> {
  const path = retentionPath(object)
  if (!(await lstatRegular(path))) return undefined
  const fh = await openRegularForReading(path).catch((e: unknown) => {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw e
  })
  if (!fh) return undefined
  const text = await fh.readFile('utf8').catch(() => undefined).finally(() => fh.close())
  if (text === undefined) return undefined
  const time = parsePosixTime(text)
  return time === undefined ? undefined : { text, time }
}

/**
 * Writes `stamp` to the .rtm unless it already holds a later time (another locker
 * wants the content kept longer). The object directory is frozen, so it is thawed
 * around the atomic replace, as git-annex's modifyContentDirWhenExists does.
 *
 * The temp file is written beside the .rtm, in the thawed object directory, not in
 * .git/annex/othertmp: git-annex deletes what is there whenever one of its processes can
 * lock othertmp.lck exclusively (Annex/Tmp.hs: files there "may be cleaned up by another
 * process at any time"); only a shared fcntl lock, which Node cannot take, keeps them. Each
 * `git annex` the location log runs could delete ours before its rename: locks failed at random.
 */
export async function writeRetention(object: string, stamp: string): Promise<void> {
  const have = await readRetention(object)
  const want = parsePosixTime(stamp)!
  if (have && have.time >= want) return
  const tmp = `${retentionPath(object)}.${randomBytes(8).toString('hex')}.tmp`
  await thawDirOf(object)
  try {
    // Exclusive: never onto something already there (a planted link).
    await writeFile(tmp, stamp, { flag: 'wx' })
    await rename(tmp, retentionPath(object))
  } finally {
    await rm(tmp, { force: true })
    await freezeDirOf(object)
  }
}

/**
 * Deletes the .rtm when it holds `stamp`; with no stamp (an expired one), deletes it
 * and git-annex's .rtl lock file too, as removeRetentionTimeStamp does. A release
 * leaves .rtl alone: a git-annex process may be holding it right now.
 */
export async function removeRetention(object: string, stamp?: string): Promise<void> {
  if (stamp !== undefined) {
    const have = await readRetention(object)
    if (have?.text !== stamp) return
  }
  await thawDirOf(object).catch(() => undefined)
  try {
    await rm(retentionPath(object), { force: true })
    if (stamp === undefined) await rm(retentionLockPath(object), { force: true })
  } finally {
    await freezeDirOf(object).catch(() => undefined)
  }
}

/**
 * checkRetentionTimestamp: true while the .rtm is in the future. An expired one is
 * deleted on the way, as git-annex does lazily.
 */
export async function retentionHolds(object: string): Promise<boolean> {
  const have = await readRetention(object)
  if (!have) return false
  if (Date.now() / 1000 <= have.time) return true
  await removeRetention(object)
  return false
}

/**
 * The fcntl lock another git-annex process holds on `<object>.lck`, read from Linux's
 * /proc/locks (Node cannot take or test fcntl locks). A shared lock means the content
 * is some git-annex's proof of a copy (a drop elsewhere relies on it, possibly with no
 * .rtm: local-path remotes lock without retention); an exclusive one means git-annex
 * is removing it. This is a check, not a lock: git-annex could take its lock just
 * after we looked, so it narrows the race rather than closing it.
 */
export async function gitAnnexLockOn(object: string): Promise<'shared' | 'exclusive' | undefined> {
  // Not followed: a planted link would name another file's lock.
  const s = await lstat(`${object}.lck`, { bigint: true }).catch(() => undefined)
  if (!s) return undefined
  if (!s.isFile()) throw new UnsafePathError(`refusing ${object}.lck: it is not a regular file (planted in the repository?)`)
  const table = await readFile('/proc/locks', 'utf8').catch(() => '')
  // glibc's dev_t encoding, as the kernel prints it: major:minor:inode, in hex, hex, decimal.
  const major = ((s.dev >> 8n) & 0xfffn) | ((s.dev >> 32n) & ~0xfffn)
  const minor = (s.dev & 0xffn) | ((s.dev >> 12n) & ~0xffn)
  const id = `${major.toString(16).padStart(2, '0')}:${minor.toString(16).padStart(2, '0')}:${s.ino}`
  let found: 'shared' | 'exclusive' | undefined
  for (const line of table.split('\n')) {
    // "N: POSIX  ADVISORY  READ 4771 fe:00:2146508 0 EOF"; waiters ("N: -> …") hold nothing.
    const f = line.trim().split(/\s+/)
    if (f[1] === '->' || f[5] !== id) continue
    if (f[3] === 'WRITE') return 'exclusive'
    found = 'shared'
  }
  return found
}
