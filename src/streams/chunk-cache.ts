// A bounded cache of object chunks on the gateway's disk, for content read from remotes
// that are slow, paid per byte or cannot seek. Each chunk file carries the running hash
// of the whole object as it stood at the chunk's first byte, so a retrieve can start at
// any cached chunk and still verify the object end to end, and a digest over itself, so
// a chunk damaged on disk is dropped instead of served (chunk-cache-format.ts).
//
// Bounds: one CacheSpace (--cache-size) shared by every cache of the process, least
// recently used chunks evicted first; and annex.diskreserve of the filesystem the cache
// is on: a chunk is written only under a reservation, and the cache gives its space back
// (reclaimer) when anything else on that filesystem needs it. Nothing here is ever the
// only copy of anything, so every failure to cache is a log line, never an error.
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import type { Key } from '../keys/key.js'
import { serializeKey } from '../keys/key.js'
import type { Logger } from '../remotes/remote.js'
import { ChunkDigest, decodeChunk, trailerLength, type ChunkHeader, type HashState } from './chunk-cache-format.js'
import type { DiskReserve, Reservation } from './disk-reserve.js'

interface Entry {
  readonly cache: ChunkCache
  readonly id: string
  readonly index: number
  readonly file: string
  readonly bytes: number
}

/**
 * The byte budget every ChunkCache of a process shares (--cache-size), with one
 * least-recently-used order across all of them.
 */
export class CacheSpace {
  // Map iteration order is insertion order: re-inserting on use makes it an LRU list.
  private readonly lru = new Map<Entry, true>()
  private committed = 0
  private pending = 0

  constructor(readonly maxBytes: number) {
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) throw new RangeError(`invalid cache size ${maxBytes}`)
  }

  /** Bytes held by committed chunks and by chunks being written. */
  get used(): number {
    return this.committed + this.pending
  }

  /**
   * Makes room for `bytes` more by evicting the least recently used chunks that no
   * retrieve still needs (ChunkCache.pin); false when they do not fit.
   */
  admit(bytes: number): boolean {
    if (bytes > this.maxBytes) return false
    for (const e of this.lru.keys()) {
      if (this.used + bytes <= this.maxBytes) break
      if (!e.cache.pinned(e)) e.cache.evict(e)
    }
    if (this.used + bytes > this.maxBytes) return false
    this.pending += bytes
    return true
  }

  /** Evicts the least recently used chunks until the committed ones fit. */
  trim(): void {
    for (const e of this.lru.keys()) {
      if (this.used <= this.maxBytes) break
      e.cache.evict(e)
    }
  }

  /** A write admitted for `admitted` bytes ended: committed as `e`, or abandoned. */
  settle(admitted: number, e?: Entry): void {
    this.pending -= admitted
    if (e) this.add(e)
  }

  add(e: Entry): void {
    this.lru.set(e, true)
    this.committed += e.bytes
  }

  touch(e: Entry): void {
    if (this.lru.delete(e)) this.lru.set(e, true)
  }

  remove(e: Entry): void {
    if (this.lru.delete(e)) this.committed -= e.bytes
  }

  /** The least recently used entries of `cache`, oldest first. */
  *oldest(cache: ChunkCache): Generator<Entry> {
    for (const e of [...this.lru.keys()]) if (e.cache === cache) yield e
  }
}

export interface ChunkCacheOptions {
  /** Where chunk files live; created if missing, owned by the cache. */
  readonly dir: string
  /** Bytes per chunk: the unit cached, verified and held in memory by one reader. */
  readonly chunkBytes: number
  readonly space: CacheSpace
  /** annex.diskreserve of the filesystem `dir` is on. */
  readonly reserve: DiskReserve
  readonly log: Logger
}

/** A chunk read back and checked: its bytes and the object's hash state at its start. */
export interface CachedChunk {
  readonly data: Buffer
  readonly header: ChunkHeader
}

/** An upstream read in progress for a key: `next` is the chunk it is fetching now. */
export interface Fill {
  readonly next: number
  /** The fill moved on to chunk `i` (the previous one was committed or given up). */
  at(i: number): void
  end(): void
}

/**
 * A retrieve's claim on the chunks of a key from `from` on: the cache's bound never
 * evicts them to make room for another chunk (annex.diskreserve still may). Without it
 * a retrieve that must read an evicted prefix again to rebuild its hash state would, on
 * a cache smaller than the object, evict the very cached tail it is about to serve.
 */
export interface Pin {
  /** The retrieve has moved on to chunk `i`: the chunks before it may go. */
  at(i: number): void
  release(): void
}

/** Writes one chunk as it streams; nothing is visible until commit(). */
export interface ChunkWriter {
  write(buf: Uint8Array): Promise<void>
  /** Makes the chunk readable; false (and nothing kept) if it was not written whole. */
  commit(): Promise<boolean>
  abort(): Promise<void>
}

/**
 * What a file takes of free space is whole blocks: a chunk is reserved rounded up to them,
 * plus the two directories a key's first chunk creates, so annex.diskreserve holds on the
 * disk and not only in bytes. 4 KiB: ext4's, xfs's and tmpfs's usual block (a larger one
 * would make the cache cross the reserve by less than a block per chunk).
 */
const DISK_BLOCK = 4096
const onDisk = (bytes: number) => Math.ceil(bytes / DISK_BLOCK) * DISK_BLOCK

const CHUNK_FILE = /^([0-9]+)-[0-9a-f]{16}\.chunk$/

export class ChunkCache {
  private readonly index = new Map<string, Map<number, Entry>>()
  private readonly fills = new Map<string, Set<FillImpl>>()
  private readonly watchers = new Map<string, Set<() => void>>()
  private readonly writers = new Set<Writer>()
  private readonly pins = new Map<string, Set<{ from: number }>>()
  private dropReclaimer: (() => void) | undefined
  private closed = false
  /** File writes issued for chunks (each a write or writev call); for tests and profiles. */
  fileWrites = 0

  private constructor(private readonly opts: ChunkCacheOptions) {}

  get chunkBytes(): number {
    return this.opts.chunkBytes
  }

  /** Opens the cache in `dir`, taking over the chunks a previous run left (oldest used first). */
  static async open(opts: ChunkCacheOptions): Promise<ChunkCache> {
    if (!Number.isSafeInteger(opts.chunkBytes) || opts.chunkBytes < 1) throw new RangeError(`invalid cache chunk size ${opts.chunkBytes}`)
    await mkdir(opts.dir, { recursive: true })
    const cache = new ChunkCache(opts)
    await cache.scan()
    cache.dropReclaimer = await opts.reserve.addReclaimer((need) => cache.reclaim(need))
    return cache
  }

  private async scan(): Promise<void> {
    const found: Array<{ e: Entry; mtime: number }> = []
    for (const a of await readdir(this.opts.dir).catch(() => [])) {
      const dirA = join(this.opts.dir, a)
      for (const id of await readdir(dirA).catch(() => [])) {
        const dirK = join(dirA, id)
        for (const name of await readdir(dirK).catch(() => [])) {
          const path = join(dirK, name)
          const m = CHUNK_FILE.exec(name)
          // Writes a crash interrupted, and anything we did not write, go.
          if (!m || !/^[0-9a-f]{64}$/.test(id) || a !== id.slice(0, 2)) {
            await rm(path, { force: true, recursive: true }).catch(() => undefined)
            continue
          }
          const s = await stat(path).catch(() => undefined)
          if (!s?.isFile()) continue
          found.push({ e: { cache: this, id, index: Number(m[1]), file: path, bytes: s.size }, mtime: s.mtimeMs })
        }
      }
    }
    found.sort((x, y) => x.mtime - y.mtime)
    for (const { e } of found) {
      const prev = this.index.get(e.id)?.get(e.index)
      if (prev) this.evict(prev)
      this.put(e)
      this.opts.space.add(e)
    }
    // A smaller --cache-size than last time: trim to it.
    this.opts.space.trim()
  }

  /** The cache's name for a key: file names stay short and safe whatever the key holds. */
  keyId(key: Key): string {
    return createHash('sha256').update(serializeKey(key)).digest('hex')
  }

  has(key: Key, index: number): boolean {
    return this.index.get(this.keyId(key))?.has(index) ?? false
  }

  /** Indexes of the chunks of `key` held now. */
  held(key: Key): ReadonlySet<number> {
    return new Set(this.index.get(this.keyId(key))?.keys() ?? [])
  }

  /**
   * Chunk `index` of `key`, checked against its digest; undefined when not held, or when
   * it no longer verifies (then it is dropped and logged, never served).
   */
  async read(key: Key, index: number): Promise<CachedChunk | undefined> {
    const id = this.keyId(key)
    const e = this.index.get(id)?.get(index)
    if (!e) return undefined
    let file: Buffer
    try {
      file = await readFile(e.file)
    } catch (err) {
      // Evicted between the lookup and the read.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.opts.log.warn({ file: e.file, err }, 'cached chunk unreadable; dropped')
      this.evict(e)
      return undefined
    }
    const d = decodeChunk(file, { key: serializeKey(key), index })
    if (!d.ok) {
      this.opts.log.warn({ key: serializeKey(key), chunk: index, why: d.why }, 'cached chunk failed its check; dropped, not served')
      this.evict(e)
      return undefined
    }
    this.opts.space.touch(e)
    return { data: d.data, header: d.header }
  }

  /**
   * A writer for chunk `index` of `key` (`length` bytes starting at `offset`), or
   * undefined when it cannot be cached now: larger than the whole cache, or it would
   * take free space below annex.diskreserve even after evicting the cache's own chunks.
   */
  async begin(key: Key, index: number, offset: number, length: number, hash: HashState): Promise<ChunkWriter | undefined> {
    if (this.closed) return undefined
    const header: ChunkHeader = { key: serializeKey(key), index, offset, length, hash }
    const bytes = length + trailerLength(header)
    if (!this.opts.space.admit(bytes)) return undefined
    let reservation: Reservation | undefined
    let fh: FileHandle | undefined
    const id = this.keyId(key)
    const dir = join(this.opts.dir, id.slice(0, 2), id)
    const final = join(dir, `${index}-${randomBytes(8).toString('hex')}.chunk`)
    const tmp = `${final}.tmp`
    try {
      const r = await this.opts.reserve.tryReserve(onDisk(bytes) + (this.index.has(id) ? 0 : 2 * DISK_BLOCK))
      if ('need' in r) {
        this.opts.log.debug({ key: serializeKey(key), chunk: index, need: r.need }, 'not caching: annex.diskreserve')
        this.opts.space.settle(bytes)
        return undefined
      }
      reservation = r
      await mkdir(dir, { recursive: true })
      fh = await open(tmp, 'wx')
    } catch (err) {
      reservation?.release()
      this.opts.space.settle(bytes)
      this.opts.log.warn({ dir, err }, 'cannot write to the chunk cache')
      return undefined
    }
    const w = new Writer(this, fh, reservation, bytes, header, id, tmp, final)
    this.writers.add(w)
    return w
  }

  /** Called by a Writer when it ends. */
  finished(w: Writer, committed: Entry | undefined): void {
    this.writers.delete(w)
    if (committed && !this.closed) {
      const prev = this.index.get(committed.id)?.get(committed.index)
      if (prev) this.evict(prev)
      this.put(committed)
      this.opts.space.settle(w.admitted, committed)
      this.notify(committed.id)
    } else {
      // After close() a committed chunk stays on disk for the next run's scan.
      this.opts.space.settle(w.admitted)
    }
  }

  private put(e: Entry): void {
    let m = this.index.get(e.id)
    if (!m) this.index.set(e.id, (m = new Map()))
    m.set(e.index, e)
  }

  /** Forgets a chunk now and deletes its file (names are never reused, so no later write can be hit). */
  evict(e: Entry): Promise<void> {
    const m = this.index.get(e.id)
    if (m?.get(e.index) === e) {
      m.delete(e.index)
      if (m.size === 0) this.index.delete(e.id)
    }
    this.opts.space.remove(e)
    return unlink(e.file).catch(() => undefined)
  }

  /** Drops every chunk of `key` (content removed, or it failed end-to-end verification). */
  async invalidate(key: Key): Promise<void> {
    const m = this.index.get(this.keyId(key))
    if (!m) return
    await Promise.all([...m.values()].map((e) => this.evict(e)))
  }

  /** Gives back at least `need` bytes of disk if it holds them, least recently used first. */
  private async reclaim(need: number): Promise<number> {
    let freed = 0
    const gone: Promise<void>[] = []
    for (const e of this.opts.space.oldest(this)) {
      if (freed >= need) break
      freed += e.bytes
      gone.push(this.evict(e))
    }
    await Promise.all(gone)
    if (freed > 0) this.opts.log.info({ freed, need }, 'chunk cache gave back disk space for annex.diskreserve')
    return freed
  }

  /** Keeps the chunks of `key` from `from` on out of LRU eviction until moved on or released. */
  pin(key: Key, from: number): Pin {
    const id = this.keyId(key)
    const p = { from }
    let s = this.pins.get(id)
    if (!s) this.pins.set(id, (s = new Set()))
    s.add(p)
    let live = true
    return {
      at: (i: number) => {
        p.from = i
      },
      release: () => {
        if (!live) return
        live = false
        const set = this.pins.get(id)
        set?.delete(p)
        if (set?.size === 0) this.pins.delete(id)
      },
    }
  }

  /** Whether a retrieve in progress still needs chunk `e`. */
  pinned(e: Entry): boolean {
    for (const p of this.pins.get(e.id) ?? []) if (p.from <= e.index) return true
    return false
  }

  /** Registers an upstream read of `key` positioned at chunk `from`, so that others can wait for it. */
  startFill(key: Key, from: number): Fill {
    const id = this.keyId(key)
    const f = new FillImpl(from, () => this.notify(id), () => {
      const s = this.fills.get(id)
      s?.delete(f)
      if (s?.size === 0) this.fills.delete(id)
      this.notify(id)
    })
    let s = this.fills.get(id)
    if (!s) this.fills.set(id, (s = new Set()))
    s.add(f)
    return f
  }

  /** Whether an upstream read of `key` is under way that will reach chunk `index`. */
  filling(key: Key, index: number): boolean {
    for (const f of this.fills.get(this.keyId(key)) ?? []) if (f.next <= index) return true
    return false
  }

  /**
   * Waits until chunk `index` of `key` is held (true), or no upstream read is going to
   * bring it (false): none is under way, or it made no progress for `stallMs`. Aborts
   * with `signal` (false). Leaves no listener or timer behind.
   */
  async waitFor(key: Key, index: number, signal: AbortSignal, stallMs: number): Promise<boolean> {
    const id = this.keyId(key)
    for (;;) {
      if (this.index.get(id)?.has(index)) return true
      if (signal.aborted || !this.filling(key, index)) return false
      const progressed = await new Promise<boolean>((resolve) => {
        let ws = this.watchers.get(id)
        if (!ws) this.watchers.set(id, (ws = new Set()))
        const done = (v: boolean) => {
          clearTimeout(timer)
          signal.removeEventListener('abort', onAbort)
          ws!.delete(wake)
          if (ws!.size === 0 && this.watchers.get(id) === ws) this.watchers.delete(id)
          resolve(v)
        }
        const wake = () => done(true)
        const onAbort = () => done(false)
        const timer = setTimeout(() => done(false), stallMs)
        ws.add(wake)
        signal.addEventListener('abort', onAbort, { once: true })
      })
      if (!progressed) return this.index.get(id)?.has(index) ?? false
    }
  }

  private notify(id: string): void {
    const ws = this.watchers.get(id)
    if (!ws) return
    for (const w of [...ws]) w()
  }

  /** Stops taking chunks; writes in progress are abandoned. Chunks on disk stay for the next run. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.dropReclaimer?.()
    await Promise.all([...this.writers].map((w) => w.abort()))
  }
}

class FillImpl implements Fill {
  constructor(
    public next: number,
    private readonly moved: () => void,
    private readonly ended: () => void,
  ) {}
  private live = true
  at(i: number): void {
    if (!this.live) return
    this.next = i
    this.moved()
  }
  end(): void {
    if (!this.live) return
    this.live = false
    this.next = Number.POSITIVE_INFINITY
    this.ended()
  }
}

/**
 * The most a chunk writer collects before one write. A proxied S3 GET hands the cache one
 * piece per socket read (16-64 KiB), and one file write per piece took 30% of the
 * gateway's CPU in a profile (plus the GC of a request per write). A quarter of a chunk at
 * most: one batch is being written while the next collects, so a writer holds about half
 * a chunk, inside the one chunk a cached GET may hold (--cache-chunk).
 */
const MAX_BATCH = 1024 * 1024
/** Buffers per writev, well under IOV_MAX (1024), past which the kernel writes only a part. */
const MAX_IOV = 256

class Writer implements ChunkWriter {
  private readonly digest = new ChunkDigest()
  private readonly batch: number
  private pending: Uint8Array[] = []
  private pendingBytes = 0
  // The batch being written, if any: at most one, so writes stay in order at the file's position.
  private flushing: Promise<void> | undefined
  private done = false
  private failed = false

  constructor(
    private readonly cache: ChunkCache,
    private readonly fh: FileHandle,
    private readonly reservation: Reservation,
    readonly admitted: number,
    private readonly header: ChunkHeader,
    private readonly id: string,
    private readonly tmp: string,
    private readonly final: string,
  ) {
    this.batch = Math.max(1, Math.min(MAX_BATCH, Math.floor(cache.chunkBytes / 4)))
  }

  // The digest is taken as the bytes arrive, the file written later: should a caller ever
  // change a buffer after handing it over, the file no longer matches its digest and the
  // chunk is dropped when read, never served.
  async write(buf: Uint8Array): Promise<void> {
    if (this.done || this.failed) return
    if (this.digest.length + buf.length > this.header.length) {
      this.fail()
      return
    }
    this.digest.update(buf)
    this.pending.push(buf)
    this.pendingBytes += buf.length
    // The chunk's last batch waits for commit(), to go with the trailer.
    if (this.digest.length < this.header.length && (this.pendingBytes >= this.batch || this.pending.length >= MAX_IOV)) await this.flush()
  }

  /** Waits for the batch in flight, then starts writing the collected one without waiting for it. */
  private async flush(): Promise<void> {
    await this.flushing
    if (this.failed || this.pending.length === 0) return
    const bufs = this.pending
    const n = this.pendingBytes
    this.pending = []
    this.pendingBytes = 0
    this.flushing = this.writeAll(bufs, n)
  }

  /** Never rejects: a full or failing disk costs the cache this chunk, not the reader its bytes. */
  private async writeAll(bufs: Uint8Array[], n: number): Promise<void> {
    try {
      this.cache.fileWrites++
      const { bytesWritten } = await this.fh.writev(bufs)
      if (bytesWritten !== n) throw new Error(`short write: ${bytesWritten} of ${n} bytes`)
      this.reservation.consumed(n)
    } catch {
      this.fail()
    }
  }

  private fail(): void {
    this.failed = true
    this.pending = []
    this.pendingBytes = 0
  }

  async commit(): Promise<boolean> {
    if (this.done) return false
    this.done = true
    let entry: Entry | undefined
    try {
      await this.flushing
      if (this.failed || this.digest.length !== this.header.length) throw new Error('incomplete chunk')
      const trailer = this.digest.trailer(this.header)
      // The last batch and the trailer in one write.
      this.pending.push(trailer)
      this.pendingBytes += trailer.length
      await this.flush()
      await this.flushing
      if (this.failed) throw new Error('chunk write failed')
      await this.fh.close()
      await rename(this.tmp, this.final)
      entry = { cache: this.cache, id: this.id, index: this.header.index, file: this.final, bytes: this.header.length + trailer.length }
    } catch {
      await this.fh.close().catch(() => undefined)
      await unlink(this.tmp).catch(() => undefined)
    } finally {
      this.pending = []
      this.reservation.release()
    }
    this.cache.finished(this, entry)
    return entry !== undefined
  }

  async abort(): Promise<void> {
    if (this.done) return
    this.done = true
    this.pending = []
    await this.flushing
    await this.fh.close().catch(() => undefined)
    await unlink(this.tmp).catch(() => undefined)
    this.reservation.release()
    this.cache.finished(this, undefined)
  }
}
