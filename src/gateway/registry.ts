// Which repositories this server answers for, by UUID: the repositories given with --repo
// (opened at start, kept open) and every git-annex repository beneath --directory folders,
// which may be a forge's estate of thousands. For those:
// - the server listens at once; a walk that reads config files (no process per
//   repository) finds them in the background. During that first walk a request for a UUID
//   not found yet waits until the walk finds it (then is served at once) or ends — unless
//   the index the last run kept under `stateDir` says where it was and that repository's
//   config, read again, still says so: then it is served at once;
// - a repository is opened on its first request, and at most `maxOpen` are open at once:
//   the least recently used idle one is closed (with its git processes) to make room, and
//   any left idle for `idleMs` is closed too; when all are busy, 503;
// - new and removed repositories are noticed by watching the folders (inotify) and each
//   repository's git dir, by a rescan every `periodicMs`, and by a rescan when an
//   authorized request asks for a UUID nothing here is known to serve — at most one per
//   `rescanMs`. A request that is not authorized never causes a rescan: an unknown UUID
//   is answered 404 from what is known, as the reference answers 404 before 401/403.
import { type FSWatcher, watch } from 'node:fs'
import { realpath, stat } from 'node:fs/promises'
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path'
import { BadRequestError, OverloadedError, RemoteUnavailableError } from '../errors.js'
import type { Lock, Logger, Remote } from '../remotes/remote.js'
import type { IndirectUploadOptions } from '../remotes/s3/indirect-upload.js'
import type { IndirectTarget } from './gateway.js'
import { encodeIndex, type EstateIndex, indexPath, loadIndex, saveIndex } from './estate-index.js'
import { type ConfigCache, type PlainGit, probeAt, probeRepo, type RepoInfo, scanTree, type WalkHooks } from './repo-scan.js'

/** One served repository: its own UUID and, for a gateway, the clusters and remotes it proxies. */
export interface ServedRepo {
  readonly uuid: string
  serves(uuid: string): boolean
  /** `bypass`: gateways already on the request's path (spec §3.3). */
  lookup(uuid: string, bypass?: readonly string[]): Promise<Remote | undefined>
  uuids(): string[]
  /** An S3 remote served here that takes presigned uploads (--indirect-upload); throws why not. */
  indirect?(uuid: string, opts: IndirectUploadOptions): Promise<IndirectTarget>
  close(): Promise<void>
}

/** Opens the repository at `dir`; `gateway`: its config has proxying settings (else a plain repository will do). */
export type OpenRepo = (dir: string, how: { readonly gateway: boolean }) => Promise<ServedRepo>

/** How a lookup may treat an unknown UUID, and how long its answer is in use. */
export interface LookupContext {
  /** The request passed authentication and authorization: it may cause a rescan. */
  readonly authorized?: boolean
  /** The repository stays open (not evicted) until this emits 'close' (the HTTP response). */
  readonly until?: { readonly closed?: boolean; once(event: 'close', fn: () => void): unknown; removeListener?(event: 'close', fn: () => void): unknown }
}

export interface RegistryOptions {
  readonly repos: readonly string[]
  readonly directories: readonly string[]
  readonly open: OpenRepo
  readonly log: Logger
  /** Most --directory repositories open at once (default 64). */
  readonly maxOpen?: number
  /** An open repository unused this long is closed (default 60 s). */
  readonly idleMs?: number
  /** Fewest ms between rescans caused by requests for unknown UUIDs (default 2 s). */
  readonly rescanMs?: number
  /** A full rescan this often, for changes no watch reported (default 60 s; 0: never). */
  readonly periodicMs?: number
  /** Watch folders and git dirs for changes (default true). */
  readonly watch?: boolean
  /** How long a request waits for one of `maxOpen` busy repositories to become idle before 503 (default 30 s). */
  readonly roomWaitMs?: number
  /**
   * Where the index of the --directory repositories is kept between runs (see estate-index.ts);
   * undefined: none, a request after a restart may wait for the first walk to find its repository.
   */
  readonly stateDir?: string | undefined
  /** How a --directory folder is walked (default scanTree); tests hold a walk back with it. */
  readonly walk?: typeof scanTree
}

/** What the registry did, for tests and the bench. */
export interface RegistryStats {
  /** Full walks of the --directory trees (the first one included). */
  scans: number
  /** Of those, the ones a request for an unknown UUID caused. */
  requestedScans: number
  opens: number
  closes: number
  /** Repositories found by the last walks. */
  repositories: number
  /** --directory repositories open right now (opening and closing ones included). */
  open: number
  watches: number
  /** During the first walk: repositories found through the last run's index, their config read again. */
  indexHits: number
  /** Entries of that index that no longer held (gone, moved, another UUID now): not used. */
  indexStale: number
}

interface Entry {
  readonly dir: string
  /** The info it was opened with (for --repo entries: undefined). */
  readonly info: RepoInfo | undefined
  readonly pinned: boolean
  readonly repo: Promise<ServedRepo>
  leases: number
  lastUsed: number
  /** Its repository changed or went away: closed once no request uses it. */
  retired: boolean
  closing: Promise<void> | undefined
}

/** A hold on an entry: while any is out, the repository stays open. */
interface Lease {
  readonly entry: Entry
  release(): void
  /** Another hold on the same entry, released on its own. */
  retain(): Lease
}

const NEGATIVE_MAX = 10_000

export class Registry {
  private readonly opts: Required<Omit<RegistryOptions, 'repos' | 'directories' | 'open' | 'log' | 'stateDir'>> & RegistryOptions
  private readonly pinned = new Map<string, Entry>()
  private readonly pinnedServed: ServedRepo[] = []
  /** --directory repositories by dir, as the walks found them. */
  private readonly infos = new Map<string, RepoInfo>()
  /** Git repositories without annex.uuid beneath --directory, watched for `git annex init`. */
  private readonly plainGit = new Map<string, PlainGit>()
  /** UUID → dirs whose config says they may serve it (own UUIDs and claims). */
  private readonly byUuid = new Map<string, Set<string>>()
  /** UUID → dirs of gateways that were seen serving it once open (their branch said so). */
  private readonly learned = new Map<string, Set<string>>()
  /** Gateways with gateway remotes: the config stamp at which their served UUIDs were learned. */
  private readonly explored = new Map<string, string>()
  /** Open --directory entries, least recently used first. */
  private readonly open = new Map<string, Entry>()
  /** Repositories that failed to open, by dir: the config stamp then (retried when it changes). */
  private readonly failed = new Map<string, string>()
  /** UUIDs looked for in vain, with the generation of what was known then. */
  private readonly negative = new Map<string, number>()
  private generation = 0
  private readonly watchers = new Map<string, FSWatcher>()
  private watchFailed = false
  private readonly pendingRescans = new Map<string, NodeJS.Timeout>()
  /** Config files as last read, so a rescan reads only changed ones. */
  private readonly configs: ConfigCache = new Map()
  /** Requests waiting for an open repository to become idle (or close) so theirs can open. */
  private readonly roomWaiters = new Set<() => void>()
  private initial: Promise<void> | undefined
  private initialDone = false
  /** During the first walk: requests waiting for a UUID it has not found yet. */
  private readonly awaited = new Map<string, Set<() => void>>()
  private scanning: Promise<void> | undefined
  /** A full walk's result has been applied: the walk, not the last run's index, is what is known. */
  private walked = false
  /** The last run's index (until the first walk is over), its file, and the generation last saved. */
  private index: Promise<EstateIndex | undefined> | undefined
  private indexFile: string | undefined
  private savedGeneration = -1
  private saving: Promise<void> = Promise.resolve()
  private realRoots: Promise<Map<string, string | undefined>> | undefined
  private lastScanStart = Number.NEGATIVE_INFINITY
  private timers: NodeJS.Timeout[] = []
  /** Requests using a repository right now (finding, opening or answering from it): walks yield to them more often. */
  private inFlight = 0
  private closed = false
  private readonly scanAbort = new AbortController()
  readonly stats: RegistryStats = { scans: 0, requestedScans: 0, opens: 0, closes: 0, repositories: 0, open: 0, watches: 0, indexHits: 0, indexStale: 0 }

  constructor(opts: RegistryOptions) {
    this.opts = {
      maxOpen: 64,
      idleMs: 60_000,
      rescanMs: 2_000,
      periodicMs: 60_000,
      watch: true,
      roomWaitMs: 30_000,
      walk: scanTree,
      ...opts,
    }
  }

  /**
   * Opens the --repo repositories (failing if one is not a git-annex repository) and starts
   * finding the --directory ones in the background: the server can listen at once.
   */
  async start(): Promise<void> {
    for (const r of this.opts.repos) {
      const dir = resolve(r)
      if (this.pinned.has(dir)) continue
      const p = await probeRepo(dir)
      if (p.kind !== 'annex') throw new Error(`not a git-annex repository: ${r}`)
      // Always a gateway: proxying settings added while it is served take effect (it is one repository).
      const repo = this.opts.open(dir, { gateway: true })
      const e = this.entry(dir, undefined, repo, true)
      this.pinned.set(dir, e)
      const served = await repo
      this.pinnedServed.push(served)
      this.opts.log.info({ repo: dir, uuids: served.uuids() }, 'serving repository')
    }
    if (this.opts.directories.length === 0) return
    const t0 = performance.now()
    if (this.opts.stateDir !== undefined) {
      const roots = this.roots()
      const file = indexPath(this.opts.stateDir, roots)
      this.indexFile = file
      // Read before the server listens: decoding 10 000 entries (and the garbage it leaves)
      // cost the first request tens of ms when it ran after.
      const { index, problem } = await loadIndex(file, roots)
      if (problem) this.opts.log.warn({ file, problem }, 'not using the last run\'s index of --directory')
      this.index = Promise.resolve(index)
    }
    this.initial = this.scan('start')
      .then(() => {
        this.opts.log.info({ directories: this.opts.directories, repositories: this.stats.repositories, ms: Math.round(performance.now() - t0) }, 'repositories found')
      })
      .finally(() => {
        this.initialDone = true
        this.index = undefined
        this.wakeAwaited()
      })
    this.initial.catch((err: unknown) => this.opts.log.error({ err }, 'scanning --directory failed'))
    const sweep = setInterval(() => void this.sweepIdle(), Math.max(1000, Math.min(this.opts.idleMs, 10_000)))
    sweep.unref()
    this.timers.push(sweep)
    if (this.opts.periodicMs > 0) {
      const periodic = setInterval(() => void this.scan('periodic').catch(() => {}), this.opts.periodicMs)
      periodic.unref()
      this.timers.push(periodic)
    }
  }

  /** A walk of the --directory folders is under way. */
  get scanInFlight(): boolean {
    return this.scanning !== undefined
  }

  /** Resolves once the first walk of the --directory folders is over. */
  ready(): Promise<void> {
    return (this.initial ?? Promise.resolve()).catch(() => {})
  }

  /** The UUIDs of the repositories known right now (not what gateways proxy). */
  get uuids(): string[] {
    return [...new Set([...this.pinnedServed.flatMap((r) => r.uuids()), ...[...this.infos.values()].map((i) => i.uuid)])]
  }

  // -------------------------------------------------------------------------------------
  // Lookup

  /**
   * The Remote for `uuid`; undefined when nothing here serves it (404). With a context,
   * the repository answering stays open until `ctx.until` closes, and an unknown UUID may
   * cause a rescan if `ctx.authorized`.
   */
  async lookup(uuid: string, bypass: readonly string[] = [], ctx: LookupContext = {}): Promise<Remote | undefined> {
    const found = await this.resolveServed(uuid, ctx, async (served) => {
      const remote = await served.lookup(uuid, bypass)
      // Served by configuration, but not reachable from here (spec §2.7: 502).
      if (!remote) throw new RemoteUnavailableError(`cannot proxy to repository ${uuid}: it cannot be reached from this gateway`)
      return remote
    })
    return found && this.handOut(found.value, found.lease, ctx)
  }

  /**
   * The indirect-upload target for `uuid` (the caller authorized the request); undefined
   * when nothing here serves it (404). The repository stays open until `ctx.until` closes.
   */
  async indirect(uuid: string, opts: IndirectUploadOptions, ctx: LookupContext = { authorized: true }): Promise<IndirectTarget | undefined> {
    const found = await this.resolveServed(uuid, ctx, async (served) => {
      if (!served.indirect) throw new BadRequestError(`indirect upload is not available for ${uuid}`)
      return served.indirect(uuid, opts)
    })
    if (!found) return undefined
    this.holdUntil(found.lease, ctx)
    return found.value
  }

  /** `use` applied to the repository serving `uuid`, under a lease on it; an unknown UUID may cause a rescan (see lookup). */
  private async resolveServed<T>(uuid: string, ctx: LookupContext, use: (served: ServedRepo) => Promise<T>): Promise<{ value: T; lease: Lease } | undefined> {
    // Waits for a walk are not counted in flight: those requests need the walk to go on.
    if (this.initial && !this.initialDone && !this.knownNow(uuid)) await this.counted(() => this.fromIndex(uuid))
    if (this.initial && !this.initialDone && !this.knownNow(uuid)) {
      await this.foundOrWalked(uuid, ctx.until)
      if (ctx.until?.closed) return undefined
    }
    const found = await this.counted(() => this.find(uuid, use, ctx))
    // Found by claims before the walk reached the repository that serves it: wait for the rest.
    if (!found && this.initial && !this.initialDone) {
      await this.ready()
      const later = await this.counted(() => this.find(uuid, use, ctx))
      if (later) return later
    }
    if (found) return found
    if (!ctx.authorized || this.opts.directories.length === 0 || this.closed) return undefined
    // Looked for in vain with nothing new known since, and a rescan too soon: still unknown.
    if (this.negative.get(uuid) === this.generation && this.tooSoon()) return undefined
    await this.requestedRescan()
    await this.explore()
    const again = await this.counted(() => this.find(uuid, use, ctx))
    if (again) return again
    this.remember(uuid)
    return undefined
  }

  /** `work` counted as a request in flight while it runs. */
  private async counted<T>(work: () => Promise<T>): Promise<T> {
    this.inFlight++
    try {
      return await work()
    } finally {
      this.inFlight--
    }
  }

  /** How walks share the event loop and report what they find as they go (watches set before a folder is read). */
  private walkHooks(): WalkHooks {
    const busy = () => this.inFlight > 0
    if (!this.opts.watch) return { busy }
    return {
      busy,
      onFolder: (dir) => this.watchDir(dir),
      onPlainGit: (g) => this.watchDir(g.gitDir),
    }
  }

  private knownNow(uuid: string): boolean {
    return this.byUuid.has(uuid) || this.learned.has(uuid) || this.pinnedServed.some((r) => r.serves(uuid))
  }

  /**
   * Before the first walk has found `uuid`: indexes the repositories the last run's index
   * says serve it, if their config, read again now, still says so and they still lie inside
   * a --directory folder without a symlink on the way (as the walk would find them). The
   * index only says where to look; what is served is what the config says now.
   */
  private async fromIndex(uuid: string): Promise<void> {
    const index = await this.index
    const at = index?.get(uuid)
    if (!at) return
    for (const { dir, gitDir } of at) {
      const reachable = await this.reachedByWalk(dir)
      // The walk is over meanwhile: what it found is what is known.
      if (this.walked || this.closed) return
      const known = this.infos.get(dir)
      // The walk got there first, and it found another repository there.
      if (known && known.uuid !== uuid && !known.claims.includes(uuid)) {
        this.stats.indexStale++
        continue
      }
      const p = reachable ? probeAt(dir, gitDir, this.configs) : undefined
      if (p?.kind === 'annex' && (p.info.uuid === uuid || p.info.claims.includes(uuid))) {
        this.stats.indexHits++
        this.add(p.info)
      } else {
        this.stats.indexStale++
        this.opts.log.debug({ uuid, repo: dir }, 'the last run\'s index no longer holds for this repository')
      }
    }
  }

  /** --directory roots, resolved. */
  private roots(): string[] {
    return [...new Set(this.opts.directories.map((d) => resolve(d)))]
  }

  /** `dir` lies inside a --directory folder and no symlink is on the way to it (the walk follows none). */
  private async reachedByWalk(dir: string): Promise<boolean> {
    this.realRoots ??= Promise.all(this.roots().map(async (r) => [r, await realpath(r).catch(() => undefined)] as const)).then((rs) => new Map(rs))
    const real = await realpath(dir).catch(() => undefined)
    if (real === undefined) return false
    for (const [root, realRoot] of await this.realRoots) {
      const rel = relative(root, dir)
      if (realRoot === undefined || rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel)) continue
      if (real === join(realRoot, rel)) return true
    }
    return false
  }

  /** Writes the index for the next run, if anything changed since it was last written. */
  private saveIndex(): Promise<void> {
    const file = this.indexFile
    if (file === undefined || !this.walked) return this.saving
    this.saving = this.saving.then(async () => {
      const generation = this.generation
      if (generation === this.savedGeneration) return
      try {
        await saveIndex(file, encodeIndex(this.roots(), this.infos.values()))
        this.savedGeneration = generation
      } catch (err) {
        this.opts.log.warn({ err, file }, 'cannot write the index of --directory for the next run')
      }
    })
    return this.saving
  }

  /** Resolves once the first walk has found `uuid` (own or claimed), or is over, or the request went away. */
  private foundOrWalked(uuid: string, until?: LookupContext['until']): Promise<void> {
    if (this.initialDone || until?.closed) return Promise.resolve()
    return new Promise<void>((resolve) => {
      const waiters = this.awaited.get(uuid) ?? new Set<() => void>()
      const done = () => {
        waiters.delete(done)
        if (waiters.size === 0 && this.awaited.get(uuid) === waiters) this.awaited.delete(uuid)
        until?.removeListener?.('close', done)
        resolve()
      }
      waiters.add(done)
      this.awaited.set(uuid, waiters)
      until?.once('close', done)
    })
  }

  private wakeAwaited(uuids?: readonly string[]): void {
    for (const u of uuids ?? [...this.awaited.keys()]) for (const w of [...(this.awaited.get(u) ?? [])]) w()
  }

  private tooSoon(): boolean {
    return performance.now() - this.lastScanStart < this.opts.rescanMs
  }

  private remember(uuid: string): void {
    this.negative.delete(uuid)
    this.negative.set(uuid, this.generation)
    if (this.negative.size > NEGATIVE_MAX) this.negative.delete(this.negative.keys().next().value!)
  }

  /** Candidate repositories for `uuid`, most likely first. */
  private candidates(uuid: string): string[] {
    const out = new Set<string>()
    for (const e of this.pinned.values()) out.add(e.dir)
    for (const d of this.byUuid.get(uuid) ?? []) out.add(d)
    for (const d of this.learned.get(uuid) ?? []) out.add(d)
    return [...out]
  }

  private async find<T>(uuid: string, use: (served: ServedRepo) => Promise<T>, ctx: LookupContext): Promise<{ value: T; lease: Lease } | undefined> {
    const dirs = this.candidates(uuid)
    // Open gateways answer for what their branch says now, which may be newer than any walk.
    for (const e of this.open.values()) if (!e.retired && e.info?.gateway && !dirs.includes(e.dir)) dirs.push(e.dir)
    for (const dir of dirs) {
      const lease = await this.acquire(dir, ctx.until)
      if (!lease) continue
      let served: ServedRepo
      try {
        served = await lease.entry.repo
      } catch {
        lease.release()
        continue
      }
      if (!served.serves(uuid)) {
        lease.release()
        continue
      }
      try {
        return { value: await use(served), lease }
      } catch (err) {
        lease.release()
        throw err
      }
    }
    return undefined
  }

  /** Gives the remote out under the lease: held until the response closes, and for as long as a lock taken through it. */
  private handOut(remote: Remote, lease: Lease, ctx: LookupContext): Remote {
    this.holdUntil(lease, ctx)
    const lock = async (...args: Parameters<Remote['lock']>): Promise<Lock | undefined> => {
      const held = lease.entry.pinned ? undefined : this.leaseOn(lease.entry)
      try {
        const l = await remote.lock(...args)
        if (!l) {
          held?.release()
          return undefined
        }
        let released = false
        return {
          release: () => {
            if (!released) {
              released = true
              held?.release()
            }
            return l.release()
          },
        }
      } catch (err) {
        held?.release()
        throw err
      }
    }
    return new Proxy(remote, {
      get(target, prop) {
        if (prop === 'lock') return lock
        const v: unknown = Reflect.get(target, prop, target)
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
      },
    })
  }

  private holdUntil(lease: Lease, ctx: LookupContext): void {
    const until = ctx.until
    if (!until || until.closed) lease.release()
    else {
      // Answering counts as in flight until the response is over.
      this.inFlight++
      until.once('close', () => {
        this.inFlight--
        lease.release()
      })
    }
  }

  // -------------------------------------------------------------------------------------
  // Open repositories

  private entry(dir: string, info: RepoInfo | undefined, repo: Promise<ServedRepo>, pinned: boolean): Entry {
    return { dir, info, pinned, repo, leases: 0, lastUsed: performance.now(), retired: false, closing: undefined }
  }

  private leaseOn(e: Entry): Lease {
    e.leases++
    e.lastUsed = performance.now()
    let done = false
    return {
      entry: e,
      release: () => {
        if (done) return
        done = true
        e.leases--
        e.lastUsed = performance.now()
        if (e.leases === 0 && e.retired) void this.closeEntry(e)
        else if (e.leases === 0) this.wakeRoom()
      },
      retain: () => this.leaseOn(e),
    }
  }

  /** A lease on the open repository at `dir`, opening it (and making room) if need be; undefined when it cannot be served. */
  private async acquire(dir: string, until?: LookupContext['until']): Promise<Lease | undefined> {
    const pinned = this.pinned.get(dir)
    if (pinned) return this.leaseOn(pinned)
    let e = this.open.get(dir)
    if (e && !e.retired && !e.closing) {
      // Most recently used last.
      this.open.delete(dir)
      this.open.set(dir, e)
      if (!(await this.stillThere(e))) return undefined
      return this.leaseOn(e)
    }
    const info = this.infos.get(dir)
    if (!info || this.failed.get(dir) === info.stamp) return undefined
    // Room is checked and taken with no await in between, so concurrent opens cannot overshoot.
    for (;;) {
      if (this.closed) return undefined
      // Someone else may have opened it while we made room.
      e = this.open.get(dir)
      if (e && !e.retired && !e.closing) return this.leaseOn(e)
      if (this.open.size < this.opts.maxOpen) break
      await this.makeRoom(until)
    }
    const repo = this.opts.open(dir, { gateway: info.gateway })
    e = this.entry(dir, info, repo, false)
    this.open.set(dir, e)
    this.stats.opens++
    this.stats.open = this.open.size
    const lease = this.leaseOn(e)
    try {
      const served = await repo
      this.failed.delete(dir)
      this.learn(dir, served)
      if (served.uuid !== info.uuid) this.opts.log.warn({ repo: dir, uuid: served.uuid, scanned: info.uuid }, 'repository UUID changed since the scan')
      return lease
    } catch (err) {
      this.opts.log.warn({ repo: dir, err }, 'cannot serve repository')
      this.failed.set(dir, info.stamp)
      e.retired = true
      lease.release()
      if (this.open.get(dir) === e) this.open.delete(dir)
      this.stats.open = this.open.size
      this.wakeRoom()
      return undefined
    }
  }

  /** A repository deleted while open is dropped on its next lookup, whatever the watches said. */
  private async stillThere(e: Entry): Promise<boolean> {
    const ok = await stat(join(e.info?.gitDir ?? e.dir, 'config')).then(
      () => true,
      () => false,
    )
    if (!ok) this.forget(e.dir)
    return ok
  }

  /**
   * Frees one place: waits for a closing entry, or closes the least recently used idle one,
   * or waits for one to become idle; 503 when none does within `roomWaitMs` (or the
   * request went away meanwhile).
   */
  private async makeRoom(until?: LookupContext['until']): Promise<void> {
    const closing = [...this.open.values()].find((e) => e.closing)
    if (closing) return closing.closing
    const victim = [...this.open.values()].find((e) => e.leases === 0)
    if (victim) return this.closeEntry(victim)
    const busy = () => new OverloadedError(`all ${this.opts.maxOpen} open repositories are busy (--max-open-repos)`)
    if (until?.closed) throw busy()
    await new Promise<void>((resolve, reject) => {
      const done = (err?: Error) => {
        clearTimeout(timer)
        this.roomWaiters.delete(wake)
        until?.removeListener?.('close', gone)
        if (err) reject(err)
        else resolve()
      }
      const wake = () => done()
      const gone = () => done(busy())
      const timer = setTimeout(() => done(busy()), this.opts.roomWaitMs)
      this.roomWaiters.add(wake)
      until?.once('close', gone)
    })
  }

  private wakeRoom(): void {
    const waiters = [...this.roomWaiters]
    this.roomWaiters.clear()
    for (const w of waiters) w()
  }

  private closeEntry(e: Entry): Promise<void> {
    e.closing ??= (async () => {
      e.retired = true
      try {
        const served = await e.repo
        this.learn(e.dir, served)
        await served.close()
      } catch {
        // It never opened, or closing failed: either way it holds nothing now.
      } finally {
        this.stats.closes++
        if (this.open.get(e.dir) === e) this.open.delete(e.dir)
        this.stats.open = this.open.size
        this.wakeRoom()
      }
    })()
    return e.closing
  }

  private async sweepIdle(): Promise<void> {
    const now = performance.now()
    for (const e of [...this.open.values()]) if (e.leases === 0 && !e.closing && now - e.lastUsed >= this.opts.idleMs) await this.closeEntry(e)
  }

  /** Remembers what an open gateway serves, so later lookups find it without a walk. */
  private learn(dir: string, served: ServedRepo): void {
    for (const u of served.uuids()) {
      const dirs = this.learned.get(u) ?? new Set<string>()
      if (!dirs.has(dir)) {
        dirs.add(dir)
        this.learned.set(u, dirs)
        this.generation++
      }
    }
  }

  /**
   * Opens the gateways whose served UUIDs only their branch names (they have remotes that
   * are gateways of their clusters) and were not learned since their config last changed.
   */
  private async explore(): Promise<void> {
    for (const info of [...this.infos.values()]) {
      if (!info.viaGateways || this.explored.get(info.dir) === info.stamp) continue
      const lease = await this.acquire(info.dir).catch(() => undefined)
      if (!lease) continue
      this.explored.set(info.dir, info.stamp)
      lease.release()
    }
  }

  // -------------------------------------------------------------------------------------
  // Finding repositories

  /** A rescan caused by a request: joins one in flight, or starts one unless the last began less than `rescanMs` ago. */
  private async requestedRescan(): Promise<void> {
    if (this.scanning) return this.scanning.catch(() => {})
    if (this.tooSoon()) return
    this.stats.requestedScans++
    return this.scan('request').catch(() => {})
  }

  /** Walks every --directory folder; one walk at a time. */
  private scan(why: string): Promise<void> {
    if (this.closed) return Promise.resolve()
    this.scanning ??= (async () => {
      this.lastScanStart = performance.now()
      this.stats.scans++
      const t0 = performance.now()
      const roots = this.opts.directories.map((d) => resolve(d))
      const known = this.knownGitDirs()
      // Each repository is indexed as it is found, so requests for it need not wait for the whole walk.
      const hooks = this.walkHooks()
      const results = await Promise.all(
        roots.map((r) =>
          this.opts.walk(r, this.configs, this.scanAbort.signal, known, (info) => {
            this.add(info)
            if (this.opts.watch) this.watchDir(info.gitDir)
          }, hooks),
        ),
      )
      if (this.closed) return
      roots.forEach((r, i) => this.apply(r, results[i]!))
      this.walked = true
      this.stats.repositories = this.infos.size
      void this.saveIndex()
      this.opts.log.debug({ why, repositories: this.infos.size, ms: Math.round(performance.now() - t0) }, 'rescanned --directory')
    })().finally(() => {
      this.scanning = undefined
    })
    return this.scanning
  }

  /** dir → git dir of every repository the walks found (git-annex or not yet). */
  private knownGitDirs(): Map<string, string> {
    const m = new Map<string, string>()
    for (const i of this.infos.values()) m.set(i.dir, i.gitDir)
    for (const g of this.plainGit.values()) m.set(g.dir, g.gitDir)
    return m
  }

  /** Replaces what is known beneath `root` by a walk's result. */
  private apply(root: string, r: { repos: RepoInfo[]; plainGit: PlainGit[]; folders: string[] }): void {
    const inside = (d: string) => d === root || d.startsWith(root.endsWith(sep) ? root : root + sep)
    const seen = new Set(r.repos.map((i) => i.dir))
    for (const dir of [...this.infos.keys()]) if (inside(dir) && !seen.has(dir)) this.forget(dir)
    for (const info of r.repos) this.add(info)
    for (const dir of [...this.plainGit.keys()]) if (inside(dir)) this.plainGit.delete(dir)
    for (const g of r.plainGit) this.plainGit.set(g.dir, g)
    if (this.opts.watch) {
      const keep = new Set([...r.folders, ...r.repos.map((i) => i.gitDir), ...r.plainGit.map((g) => g.gitDir)])
      for (const w of [...this.watchers.keys()]) if (inside(w) && !keep.has(w)) this.unwatch(w)
      // Set as the walk went (before each folder was read); these find them already set.
      for (const f of r.folders) this.watchDir(f)
      for (const info of r.repos) this.watchDir(info.gitDir)
      for (const g of r.plainGit) this.watchDir(g.gitDir)
    }
  }

  private add(info: RepoInfo): void {
    const old = this.infos.get(info.dir)
    if (old && old.stamp === info.stamp) return
    if (old) this.unindex(old)
    this.infos.set(info.dir, info)
    for (const u of [info.uuid, ...info.claims]) {
      const dirs = this.byUuid.get(u) ?? new Set<string>()
      dirs.add(info.dir)
      this.byUuid.set(u, dirs)
    }
    this.generation++
    if (this.awaited.size > 0) this.wakeAwaited([info.uuid, ...info.claims])
    // An open entry whose config changed is reopened with the new one.
    const e = this.open.get(info.dir)
    if (old && e && (old.uuid !== info.uuid || old.gateway !== info.gateway)) this.retire(e)
    if (!old) this.opts.log.debug({ repo: info.dir, uuid: info.uuid }, 'found repository')
  }

  private unindex(info: RepoInfo): void {
    for (const u of [info.uuid, ...info.claims]) {
      const dirs = this.byUuid.get(u)
      dirs?.delete(info.dir)
      if (dirs?.size === 0) this.byUuid.delete(u)
    }
  }

  private forget(dir: string): void {
    const info = this.infos.get(dir)
    if (info) {
      this.unindex(info)
      this.infos.delete(dir)
      this.opts.log.info({ repo: dir }, 'repository gone; no longer served')
    }
    for (const [u, dirs] of this.learned) if (dirs.delete(dir) && dirs.size === 0) this.learned.delete(u)
    this.explored.delete(dir)
    this.failed.delete(dir)
    if (info) this.configs.delete(join(info.gitDir, 'config'))
    this.unwatch(info?.gitDir ?? join(dir, '.git'))
    this.generation++
    const e = this.open.get(dir)
    if (e) this.retire(e)
    this.stats.repositories = this.infos.size
  }

  private retire(e: Entry): void {
    e.retired = true
    if (e.leases === 0) void this.closeEntry(e)
  }

  // -------------------------------------------------------------------------------------
  // Watching

  private watchDir(dir: string): void {
    if (this.watchFailed || this.closed || this.watchers.has(dir)) return
    try {
      const w = watch(dir, { persistent: false }, (_event, name) => this.changed(dir, typeof name === 'string' ? name : null))
      w.on('error', () => this.unwatch(dir))
      this.watchers.set(dir, w)
      this.stats.watches = this.watchers.size
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'ENOENT' || code === 'ENOTDIR') return
      // Out of inotify watches (ENOSPC) or descriptors: the periodic and requested rescans remain.
      this.watchFailed = true
      this.opts.log.warn({ err, watches: this.watchers.size }, 'cannot watch more directories for new repositories (fs.inotify.max_user_watches?); relying on rescans')
    }
  }

  private unwatch(dir: string): void {
    this.watchers.get(dir)?.close()
    this.watchers.delete(dir)
    this.stats.watches = this.watchers.size
  }

  /** Something changed in folder `dir`: walk it again shortly (changes come in bursts). */
  private rescanSoon(dir: string): void {
    if (this.closed || this.pendingRescans.has(dir)) return
    const t = setTimeout(() => {
      this.pendingRescans.delete(dir)
      void this.rescanFolder(dir)
    }, 100)
    t.unref()
    this.pendingRescans.set(dir, t)
  }

  private async rescanFolder(dir: string): Promise<void> {
    if (this.closed) return
    try {
      const r = await scanTree(dir, this.configs, this.scanAbort.signal, this.knownGitDirs(), undefined, this.walkHooks())
      if (!this.closed) this.apply(dir, r)
      this.stats.repositories = this.infos.size
    } catch (err) {
      this.opts.log.warn({ err, dir }, 'rescanning a folder failed')
    }
  }

  /**
   * `name` came, went or changed in the watched directory `dir`. What `dir` is is decided
   * now, not when the watch was set: a folder read while `git init` was still writing into
   * it is a repository a moment later.
   * - The git dir of a repository known here: its config changed, read it again.
   * - Else a folder: a HEAD, config or .git in it may make it a repository, so walk it
   *   again; any other name, walk just that entry (a folder of 10 000 repositories is not
   *   walked again for one).
   */
  private changed(dir: string, name: string | null): void {
    const repoDir = basename(dir) === '.git' ? dirname(dir) : dir
    if ((this.infos.get(repoDir) ?? this.plainGit.get(repoDir))?.gitDir === dir) {
      if (name === null || name === 'config') this.rescanSoon(repoDir)
      return
    }
    if (name === null || name === 'HEAD' || name === 'config' || name === '.git') this.rescanSoon(dir)
    else this.rescanSoon(join(dir, name))
  }

  async close(): Promise<void> {
    this.closed = true
    this.wakeRoom()
    this.wakeAwaited()
    this.scanAbort.abort()
    for (const t of this.timers) clearInterval(t)
    for (const t of this.pendingRescans.values()) clearTimeout(t)
    this.pendingRescans.clear()
    for (const w of this.watchers.values()) w.close()
    this.watchers.clear()
    await this.scanning?.catch(() => {})
    await this.saveIndex()
    await Promise.all([...this.pinned.values(), ...this.open.values()].map((e) => this.closeEntry(e)))
    this.pinned.clear()
  }
}
