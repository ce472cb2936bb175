// A git-annex repository on local disk as a Remote: what `git annex p2phttp` /
// git-annex-shell p2pstdio do when they serve their own repository (spec §1.5), on the
// same files real git-annex uses, so git-annex commands run in the repository (fsck,
// whereis, drop, get) see exactly what they would have seen after the reference server.
//
// Upload: bytes are appended to .git/annex/tmp/<keyFile> through a verifier; only once
// the whole content verified is the file renamed into the object store, frozen and
// logged. A dropped connection keeps the partial tmp file (its size is the next
// resume offset); bad content deletes it.
import { untilAborted } from './until-aborted.js'
import { constants, createReadStream } from 'node:fs'
import { lstat, mkdir, open, rename, rm, type FileHandle } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { finished, Readable, Transform, type TransformCallback } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import {
  AbortedError,
  BadKeyError,
  BadRequestError,
  ConfigError,
  DiskFullError,
  HashMismatchError,
  LengthMismatchError,
  LockedError,
  ProxyError,
  TransferInProgressError,
} from '../errors.js'
import type { Key } from '../keys/key.js'
import { keyFile } from '../keys/object-path.js'
import { DEFAULT_DISK_RESERVE, DiskReserve, type Reservation } from '../streams/disk-reserve.js'
import { readSize } from '../annex/data-units.js'
import { createVerifier, type HasherKind } from '../streams/verify.js'
import { monotonicSeconds } from '../annex/clock.js'
import {
  gitAnnexLockOn,
  KeyMutex,
  LOCK_RETENTION_SECONDS,
  nextRetentionStamp,
  removeRetention,
  retentionHolds,
  SharedLocks,
  writeRetention,
} from './local/content-lock.js'
import {
  cleanObjectDirs,
  freezeDirOf,
  freezeFile,
  locateObject,
  objectCandidates,
  objectDirLevels,
  thawDirOf,
  tmpPath,
  type Layout,
} from './local/layout.js'
import { runGit } from '../annex/git.js'
import { lastValue, parseGitConfigList } from '../annex/git-config-file.js'
import { LocationLog, loggable, type Settle } from '../annex/location-log.js'
import { TmpFileSink } from './local/tmp-sink.js'
import { FileRangeReadable } from '../streams/file-range.js'
import { claimStore } from './local/store-claim.js'
import { assertRealDirs, lstatRegular, openRegular, openRegularForReading } from './local/safe-fs.js'
import {
  ALL_CAPABILITIES,
  asUuid,
  RemoteBase,
  type Capability,
  type Lock,
  type Logger,
  type Op,
  type Removed,
  type Retrieved,
  type Stored,
  type StoreOp,
  type StoreStart,
  type Uuid,
} from './remote.js'

// Chunks of 32 KiB, the size of the reference's (Warp's) writes, read 1 MiB at a time. 1 MiB
// chunks cost less server CPU and were faster for curl, but the real git-annex client, on a
// busy machine, got whole objects at 0.4-0.8x the reference's rate: a megabyte written per
// wakeup kept the client's TCP receive window from growing (ss: rcv_ssthresh stuck at 93-186
// KiB, the server's MSS clamped to half of it, 3-4% spurious retransmits; with 32 KiB chunks
// the window grew to 0.5-1.4 MiB). Measured side by side: bench/HISTORY.md,
// "cluster-get-read-size". Reading 32 KiB at a time, though, cost a thread-pool round trip per
// chunk, most of the server's CPU on a GET (bench/HISTORY.md, "get-read-blocks"); reading
// 1 MiB blocks keeps the chunks and drops that. Memory per retrieve: about two blocks.
const CHUNK_BYTES = 32 * 1024
const READ_BLOCK_BYTES = 1024 * 1024

export interface LocalRepoOptions {
  hasher?: HasherKind
  /** Bytes to keep free; overrides annex.diskreserve. */
  diskReserve?: number
  log?: Logger
  /** Idle time before the location log's batch child stops (default 1 s). */
  logIdleMs?: number
  /**
   * The repository's location-log writer, when its owner records in it too (a gateway
   * records its nodes' locations): one writer per repository. Committed, not closed, on close().
   */
  locationLog?: LocationLog
  /** When a store or remove settles: its location log line committed (default) or journalled (LocationLog). */
  logSettle?: Settle
}

const silent: Logger = { info() {}, warn() {}, error() {}, debug() {} }

const NOTHING: readonly Uuid[] = Object.freeze([])

/** git-annex's message for a second transfer of the same key (P2P/Annex.hs). */
const IN_PROGRESS = 'transfer already in progress, or unable to take transfer lock'

const isTrue = (v: string | undefined) => v !== undefined && ['true', 'yes', 'on', '1'].includes(v.toLowerCase())

/** Opens the git-annex repository at `dir` (work tree or bare repository). */
export async function openLocalRepo(dir: string, opts: LocalRepoOptions = {}): Promise<LocalRepo> {
  let gitDir: string
  let bare: boolean
  try {
    const stdout = await runGit(dir, ['rev-parse', '--absolute-git-dir', '--is-bare-repository'])
    const [g, b] = stdout.trim().split('\n')
    gitDir = g!
    bare = b === 'true'
  } catch (e) {
    throw new ConfigError(`${dir} is not a git repository`, { cause: e })
  }
  const config = parseGitConfigList(await runGit(dir, ['config', '--list', '-z']))
  const cfg = { get: (key: string) => lastValue(config, key) }
  const uuid = cfg.get('annex.uuid')
  if (!uuid) throw new ConfigError(`${dir} is not a git-annex repository (no annex.uuid; run git annex init)`)
  const shared = cfg.get('core.sharedrepository')
  if (shared !== undefined && !['false', 'umask', '0', 'no', 'off', ''].includes(shared.toLowerCase())) {
    // Shared repositories get group/world permissions on objects and setgid
    // directories; writing them with unshared modes would lock other users out.
    throw new ConfigError(`core.sharedRepository=${shared} is not supported in ${dir}`)
  }
  const crippled = isTrue(cfg.get('annex.crippledfilesystem'))
  const symlinks = cfg.get('core.symlinks') === undefined || isTrue(cfg.get('core.symlinks'))
  const layout: Layout = {
    gitDir,
    bare,
    lowerFirst: bare || (crippled && !symlinks),
    lowerOnly: isTrue(cfg.get('annex.tune.objecthashlower')),
    oneLevel: isTrue(cfg.get('annex.tune.objecthash1')),
  }
  const configured = cfg.get('annex.diskreserve')
  const reserve = opts.diskReserve ?? (configured !== undefined ? readSize(configured) : undefined) ?? DEFAULT_DISK_RESERVE
  await mkdir(`${gitDir}/annex`, { recursive: true })
  return new LocalRepo(asUuid(uuid), dir, layout, reserve, opts)
}

/** Measures bytes arriving from the sender, before verification can swallow any. */
class Counter extends Transform {
  bytes = 0
  constructor(private readonly reservation: Reservation) {
    super()
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length
    this.reservation.consumed(chunk.length)
    cb(null, chunk)
  }
}

function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code
}


class HeldLock implements Lock {
  private released = false
  private readonly timer: NodeJS.Timeout

  constructor(
    private readonly repo: LocalRepo,
    readonly id: string,
    readonly object: string,
    readonly stamp: string,
  ) {
    // git-annex's retention file expires by itself after 600 s; the in-process lock
    // must not outlive it, or a client that vanished would pin content forever.
    this.timer = setTimeout(() => void this.release(), LOCK_RETENTION_SECONDS * 1000)
    this.timer.unref()
  }

  release(): Promise<void> {
    if (this.released) return Promise.resolve()
    this.drop()
    return this.repo.releaseRetention(this)
  }

  /** Ends the in-process lock; the .rtm stays, as when git-annex's process dies. */
  drop(): void {
    if (this.released) return
    this.released = true
    clearTimeout(this.timer)
    this.repo.forgetLock(this)
  }
}

export class LocalRepo extends RemoteBase {
  readonly capabilities: ReadonlySet<Capability> = new Set(ALL_CAPABILITIES)
  private readonly reserve: DiskReserve
  private readonly locationLog: LocationLog
  private readonly ownsLocationLog: boolean
  private readonly hasher: HasherKind | undefined
  private readonly log: Logger
  // Per-key critical sections: lock, remove and committing into the object store
  // each look at the object and then change it.
  private readonly mutex = new KeyMutex()
  private readonly shared = new SharedLocks()
  private readonly locks = new Set<HeldLock>()
  private readonly storing = new Set<string>()

  constructor(
    readonly uuid: Uuid,
    /** The repository as given: work tree, or the bare repository. */
    readonly dir: string,
    readonly layout: Layout,
    /** annex.diskreserve in bytes. */
    readonly diskReserve: number,
    opts: LocalRepoOptions = {},
  ) {
    super()
    this.hasher = opts.hasher
    this.log = opts.log ?? silent
    this.reserve = new DiskReserve(`${layout.gitDir}/annex`, diskReserve)
    this.ownsLocationLog = opts.locationLog === undefined
    this.locationLog = opts.locationLog ?? new LocationLog(dir, { idleMs: opts.logIdleMs ?? 1000, log: this.log, ...(opts.logSettle ? { settle: opts.logSettle } : {}) })
  }

  /** Where the key's content is (or would be put), and its partial upload. */
  paths(key: Key): { object: string; tmp: string } {
    return { object: objectCandidates(this.layout, key)[0]!, tmp: tmpPath(this.layout, key) }
  }

  protected override describe(): string {
    return `repository ${this.dir}`
  }

  protected async doCheckPresent(key: Key, _op: Op): Promise<boolean> {
    return (await locateObject(this.layout, key)) !== undefined
  }

  protected async doRetrieve(key: Key, offset: number, _op: Op): Promise<Retrieved> {
    checkOffset(offset)
    const absent = (): Retrieved => ({ length: 0, body: emptyBody(), valid: Promise.resolve(false) })
    const path = await locateObject(this.layout, key)
    if (!path) return absent()
    let fh: FileHandle
    try {
      fh = await openRegularForReading(path)
    } catch (e) {
      // Removed between the lookup and the open.
      if (errno(e) === 'ENOENT') return absent()
      throw e
    }
    const before = await fh.stat().catch(async (e: unknown) => {
      await fh.close()
      throw e
    })
    const length = Math.max(0, before.size - offset)
    // The file changed while being read (spec §1.5 GET → INVALID): in place (size or
    // mtime) or replaced (inode). Content in an unlocked or thin repository can change.
    const unchanged = async () => {
      const after = await lstat(path).catch(() => undefined)
      return after !== undefined && after.ino === before.ino && after.size === before.size && after.mtimeMs === before.mtimeMs
    }
    if (length === 0) {
      await fh.close()
      return { length: 0, body: emptyBody(), valid: unchanged() }
    }
    // `end` pins the length we announced even if the file grows meanwhile. An abort
    // destroys the body (RemoteBase).
    const body = new FileRangeReadable(fh, { start: offset, end: before.size, readBytes: READ_BLOCK_BYTES, chunkBytes: CHUNK_BYTES })
    const valid = new Promise<boolean>((resolve) => {
      const cleanup = finished(body, (err) => {
        cleanup()
        if (err || body.bytesRead !== length) resolve(false)
        else unchanged().then(resolve, () => resolve(false))
      })
    })
    return { length, body, valid }
  }

  /** A tmp file that is not a regular file (a planted symlink or FIFO) is refused, its size never told. */
  protected async doStartStore(key: Key, _op: Op): Promise<StoreStart> {
    if (await locateObject(this.layout, key)) return { kind: 'present', plusUuids: NOTHING }
    const tmp = tmpPath(this.layout, key)
    await assertRealDirs(this.layout.gitDir, dirname(tmp))
    return { kind: 'offset', offset: (await lstatRegular(tmp))?.size ?? 0 }
  }

  /**
   * Stores the key's bytes from `offset` on. A refusal before any byte is read (transfer
   * in progress, bad offset, disk reserve) leaves `body` to RemoteBase, which drains it;
   * once reading started, a failure destroys it, as `pipeline` does.
   */
  protected doStore(key: Key, body: Readable, offset: number, op: StoreOp): Promise<Stored> {
    try {
      checkOffset(offset)
      assertLoggable(key)
    } catch (e) {
      return Promise.reject(e)
    }
    const id = keyFile(key)
    // Checked and claimed synchronously: two stores of one key must never both pass.
    if (this.storing.has(id)) return Promise.reject(new TransferInProgressError(IN_PROGRESS))
    this.storing.add(id)
    // The claim ends before the caller sees the result, so a store issued right after
    // this one settled is never mistaken for a concurrent one.
    return this.storeClaimedHere(key, id, body, offset, op).finally(() => this.storing.delete(id))
  }

  private async storeClaimedHere(key: Key, id: string, body: Readable, offset: number, op: StoreOp): Promise<Stored> {
    // Already here: the bytes are not needed; RemoteBase drains them so the sender can finish.
    if (await locateObject(this.layout, key)) return { stored: true, plusUuids: NOTHING }
    if (key.size !== undefined && offset > key.size) {
      throw new LengthMismatchError(`offset ${offset} is beyond the key's ${key.size} bytes`)
    }
    // Other processes may serve this repository too (p2pstdio sessions beside the HTTP server).
    const claim = await claimStore(join(this.layout.gitDir, 'annex', 'annex-proxy', 'claims'), id)
    if (!claim) throw new TransferInProgressError(IN_PROGRESS)
    try {
      return await this.storeClaimed(key, id, body, offset, op)
    } finally {
      await claim.release()
    }
  }

  private async storeClaimed(key: Key, id: string, body: Readable, offset: number, op: StoreOp): Promise<Stored> {
    const tmp = tmpPath(this.layout, key)
    await assertRealDirs(this.layout.gitDir, dirname(tmp))
    const have = (await lstatRegular(tmp))?.size ?? 0
    if (have < offset) throw new LengthMismatchError(`cannot resume at ${offset}: only ${have} bytes of the key are kept`)
    // Annex/Content.hs checkDiskSpace: the key's size (1 when unknown) minus what
    // the tmp file already holds.
    const reservation = await this.reserve.reserve(key.size !== undefined ? key.size - offset : 1)
    let fh: FileHandle | undefined
    let sink: TmpFileSink | undefined
    const counter = new Counter(reservation)
    const signal = op.signal
    try {
      await mkdir(dirname(tmp), { recursive: true })
      // Never through a symlink or into a FIFO planted there (safe-fs).
      fh = await openRegular(tmp, offset === 0 ? constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC : constants.O_RDWR, 0o666)
      if (offset > 0) await fh.truncate(offset)
      // Resume: the kept prefix is re-hashed so the verifier sees the whole content. A whole
      // upload verified at the gateway (a cluster's verifiedTee) is counted, not re-hashed.
      const prefix = offset > 0 ? createReadStream(tmp, { start: 0, end: offset - 1, signal }) : undefined
      const verifier = await createVerifier(key, {
        ...(this.hasher ? { hasher: this.hasher } : {}),
        ...(prefix ? { prefix } : {}),
        upstream: { vouched: op.vouched, body, offset },
      })
      sink = new TmpFileSink(fh, offset, verifier)
      await pipeline(body, counter, sink, { signal })
      if (op.senderValid && !(await untilAborted(op.senderValid, signal))) {
        // The sender's copy changed while it was read (VALID/INVALID). git-annex would
        // still commit content that verifies; our contract is not to commit at all.
        // The prefix is kept: if it is good, a resume only has to confirm it.
        throw new AbortedError('the sender reported that the content changed while it was sent')
      }
      await fh.close()
      fh = undefined
      await this.commit(key, id, tmp)
    } catch (e) {
      await fh?.close().catch(() => undefined)
      // Refused upstream (a verifiedTee): its verdict says whether the content was bad.
      const up = op.vouched?.covers(key, body, offset) ? op.vouched.decided : undefined
      throw await this.storeFailed(key, tmp, offset, counter.bytes, up && !up.ok && up.bad ? up.error : e, sink?.ioError, signal)
    } finally {
      reservation.release()
    }
    await this.locationLog.record(key, this.uuid, true)
    return { stored: true, plusUuids: NOTHING }
  }

  /** Decides what a failed store leaves behind and which error it reports. */
  private async storeFailed(key: Key, tmp: string, offset: number, received: number, e: unknown, writeError: Error | undefined, signal: AbortSignal): Promise<unknown> {
    if (e === writeError && e !== undefined) {
      // The disk failed us: keep the prefix, like git-annex does on any exception.
      if (errno(e) === 'ENOSPC' || errno(e) === 'EDQUOT') return new DiskFullError('no space left on device', { cause: e })
      return e
    }
    const total = offset + received
    const tooLong = key.size !== undefined && total > key.size
    const short = key.size !== undefined && total < key.size
    if (e instanceof HashMismatchError || (e instanceof LengthMismatchError && !short) || tooLong) {
      // Bad data is never worth resuming from (Annex/Content.hs verificationOfContentFailed).
      await rm(tmp, { force: true })
      return e instanceof ProxyError ? e : new LengthMismatchError(`received more than the key's ${key.size} bytes`, { cause: e })
    }
    if (e instanceof ProxyError && !(e instanceof LengthMismatchError)) return e
    // A short body or a dropped connection: the prefix stays for resume.
    if (signal.aborted) return new AbortedError('store aborted', { cause: e })
    if (e instanceof LengthMismatchError) return e
    return new AbortedError('upload interrupted', { cause: e })
  }

  /** moveAnnex: rename the verified tmp file into the object store and freeze it. */
  private commit(key: Key, id: string, tmp: string): Promise<void> {
    return this.mutex.run(id, async () => {
      if (await locateObject(this.layout, key)) {
        // Arrived by another way meanwhile (e.g. git annex get): keep the original.
        await rm(tmp, { force: true })
        return
      }
      const dest = objectCandidates(this.layout, key)[0]!
      const keyDir = dirname(dest)
      // A directory planted as a symlink would send the object (and our chmods) elsewhere.
      await assertRealDirs(this.layout.gitDir, keyDir)
      await mkdir(keyDir, { recursive: true })
      await assertRealDirs(this.layout.gitDir, keyDir)
      await thawDirOf(dest)
      try {
        await rename(tmp, dest)
        await freezeFile(dest)
        const d = await open(keyDir, 'r')
        await d.sync().finally(() => d.close())
      } finally {
        await freezeDirOf(dest)
      }
    })
  }

  protected async doStorePresent(key: Key, _op: Op): Promise<Stored> {
    assertLoggable(key)
    if (!(await locateObject(this.layout, key))) return { stored: false, plusUuids: NOTHING }
    await this.locationLog.record(key, this.uuid, true)
    return { stored: true, plusUuids: NOTHING }
  }

  protected doRemove(key: Key, _op: Op): Promise<Removed> {
    return this.removeUnless(key, undefined)
  }

  protected doRemoveBefore(key: Key, deadline: number, _op: Op): Promise<Removed> {
    return this.removeUnless(key, deadline)
  }

  private async removeUnless(key: Key, deadline: number | undefined): Promise<Removed> {
    assertLoggable(key)
    const id = keyFile(key)
    return this.mutex.run(id, async () => {
      const obj = await locateObject(this.layout, key)
      // P2P/Annex.hs RemoveContent: absent content is a success and logs nothing.
      if (!obj) return { removed: true, plusUuids: NOTHING }
      if (this.shared.isLocked(id) || (await gitAnnexLockOn(obj)) || (await retentionHolds(obj))) throw new LockedError('content is locked')
      // Checked after locking, as git-annex does: the lock may have taken a while.
      if (deadline !== undefined && !(monotonicSeconds() < deadline)) return { removed: false, plusUuids: NOTHING }
      // cleanObjectLoc: thaw, delete, then prune empty directories (a directory that
      // is not empty stays thawed, as with git-annex).
      await thawDirOf(obj)
      await rm(obj, { force: true })
      await cleanObjectDirs(obj, objectDirLevels(this.layout))
      await this.locationLog.record(key, this.uuid, false)
      return { removed: true, plusUuids: NOTHING }
    })
  }

  protected async doTimestamp(_op: Op): Promise<number> {
    return monotonicSeconds()
  }

  protected async doLock(key: Key, op: Op): Promise<Lock | undefined> {
    const id = keyFile(key)
    return this.mutex.run(id, async () => {
      const obj = await locateObject(this.layout, key)
      if (!obj) return undefined
      // git-annex holds it exclusively only while dropping it.
      if ((await gitAnnexLockOn(obj)) === 'exclusive') return undefined
      const stamp = nextRetentionStamp()
      try {
        await writeRetention(obj, stamp)
      } catch (e) {
        // lockContentShared drops the lock when it cannot write the retention file:
        // a lock other git-annex processes cannot see would be a false promise.
        op.log.warn({ err: e, key: id }, 'cannot write retention timestamp; not locking')
        return undefined
      }
      this.shared.acquire(id)
      const held = new HeldLock(this, id, obj, stamp)
      this.locks.add(held)
      return held
    })
  }

  /** @internal HeldLock bookkeeping. */
  forgetLock(l: HeldLock): void {
    if (this.locks.delete(l)) this.shared.release(l.id)
  }

  /** @internal Deletes a released lock's .rtm if no later lock replaced it. */
  releaseRetention(l: HeldLock): Promise<void> {
    return this.mutex.run(l.id, () => removeRetention(l.object, l.stamp)).catch((e: unknown) => {
      this.log.warn({ err: e, key: l.id }, 'cannot remove retention timestamp')
    })
  }

  /**
   * Once nothing is in flight (RemoteBase): drops in-process locks and commits the
   * location log. Retention files of unreleased locks stay until they expire: clients
   * were promised the content for that long.
   */
  protected async doClose(): Promise<void> {
    for (const l of [...this.locks]) l.drop()
    await (this.ownsLocationLog ? this.locationLog.close() : this.locationLog.flush())
  }
}

/** A byte stream (not object mode) that ends at once. */
function emptyBody(): Readable {
  return new Readable({
    read() {
      this.push(null)
    },
  })
}

/** Content we could not record in the location log must not come or go (spec §7.3). */
function assertLoggable(key: Key): void {
  if (!loggable(key)) throw new BadKeyError('keys containing whitespace cannot be recorded in the location log')
}

function checkOffset(offset: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0) throw new BadRequestError(`invalid offset ${offset}`)
}
