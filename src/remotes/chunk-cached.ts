// A Remote whose retrieves go through the gateway's chunk cache (src/streams/chunk-cache.ts):
// for remotes that are slow, paid per byte or cannot seek (S3, git-annex-shell peers, the
// gateway's own git-annex for other special remotes). Everything but retrieve goes to the
// remote unchanged; a removal also drops the cached chunks.
//
// A retrieve from `offset` starts at a chunk whose hash state is known — the chunk holding
// `offset` if cached, else the one before it, else byte 0 — and walks the object chunk by
// chunk; when that chunk turns out to be gone or damaged, or carries no state, it walks
// from byte 0, reading the prefix's missing chunks from the remote again (hashed, not
// sent). The chunks a retrieve still has ahead of it are pinned against LRU eviction, so
// rebuilding a prefix never evicts the cached tail it is about to serve.
//
// The running hash is the fastest implementation of the key's algorithm
// (node:crypto for SHA-256: a profile of proxied S3 GETs spent a third of the gateway's
// CPU in hash-wasm's SHA-256, ~7x slower here than OpenSSL's); node:crypto cannot export its
// state, so chunks it hashed carry none, and a retrieve that would start at one hashes the
// cached chunks before it from byte 0 instead (local reads, nothing fetched again, nothing
// sent twice). Chunks hashed by hash-wasm or our TypeScript code (--hasher wasm, and
// algorithms node:crypto lacks) carry their state and are resumed from directly: cached chunks are read back (each checked against its own digest), missing runs
// are fetched from the remote with one ranged retrieve per run and written to the cache as
// they pass. The running hash of the whole object goes through every byte from that
// starting chunk on, so `valid` is true only when the object verified end to end, however
// it was pieced together. Only keys that carry a size and a digest are cached; the
// rest go to the remote as they would without a cache. Nothing is ever passed through
// unhashed: a resume costs at worst the prefix read again, never the verification.
import { Readable } from 'node:stream'
import { AbortedError, LengthMismatchError } from '../errors.js'
import { createHasher, digestMatches, expectedDigest, hashAlgorithm, resumeHasher, type HashAlgorithm, type Hasher, type HasherKind } from '../keys/backend.js'
import { serializeKey, type Key } from '../keys/key.js'
import type { ChunkCache, ChunkWriter, Fill } from '../streams/chunk-cache.js'
import { Delegating } from './delegating.js'
import type { Op, Removed, Remote, Retrieved } from './remote.js'

export interface ChunkCachedOptions {
  /**
   * How long a retrieve waits without progress for another retrieve's upstream read of
   * the same chunk before fetching it itself.
   */
  readonly shareStallMs?: number
  /** Implementation of the running hash (default auto: the fastest for the algorithm). */
  readonly hasher?: HasherKind
}

/** What one wrapper fetched and served; for logs and tests. */
export interface ChunkCacheStats {
  /** Retrieves the remote was asked for (one per missing run of chunks). */
  upstreamRequests: number
  /** Bytes read from the remote. */
  upstreamBytes: number
  /** Bytes read back from cached chunks. */
  cachedBytes: number
}

interface Run {
  readonly start: number
  readonly ac: AbortController
  readonly reader: ByteReader
  readonly valid: Promise<boolean>
  readonly fill: Fill
  readonly length: number
}

export class ChunkCached extends Delegating {
  readonly stats: ChunkCacheStats = { upstreamRequests: 0, upstreamBytes: 0, cachedBytes: 0 }
  private readonly shareStallMs: number
  private readonly hasherKind: HasherKind

  constructor(
    inner: Remote,
    private readonly cache: ChunkCache,
    opts: ChunkCachedOptions = {},
  ) {
    // The cache is shared and outlives this remote; only the remote inside closes with it.
    super(inner, 'owned')
    this.shareStallMs = opts.shareStallMs ?? 15_000
    this.hasherKind = opts.hasher ?? 'auto'
  }

  protected override async doRemove(key: Key, op: Op): Promise<Removed> {
    const r = await this.inner.remove(key, op)
    if (r.removed) await this.cache.invalidate(key)
    return r
  }
  protected override async doRemoveBefore(key: Key, deadline: number, op: Op): Promise<Removed> {
    const r = await this.inner.removeBefore(key, deadline, op)
    if (r.removed) await this.cache.invalidate(key)
    return r
  }

  protected override async doRetrieve(key: Key, offset: number, op: Op): Promise<Retrieved> {
    const size = key.size
    const algo = hashAlgorithm(key.backend)
    const expected = expectedDigest(key)
    if (size === undefined || size === 0 || algo === undefined || expected === undefined || !Number.isSafeInteger(offset) || offset < 0 || offset >= size) {
      return this.inner.retrieve(key, offset, op)
    }
    const C = this.cache.chunkBytes
    const count = Math.ceil(size / C)
    const first = Math.floor(offset / C)
    // The chunk to start hashing from: the one holding `offset` or the one before it when
    // cached (its hash state, or the cached chunks before it, give the hash up to there);
    // else byte 0, reading what is not cached of the prefix from the remote again, hashed
    // and not sent: the verdict is always the gateway's own hash of the whole object.
    let from: number
    if (first === 0 || this.cache.has(key, first)) from = first
    else if (this.cache.has(key, first - 1)) from = first - 1
    else if (op.readsPart) return this.inner.retrieve(key, offset, op)
    else from = 0

    // One signal for everything this retrieve starts; the client's signal only feeds it,
    // through one listener that goes when the body does.
    const stop = new AbortController()
    const onAbort = () => stop.abort()
    op.signal.addEventListener('abort', onAbort, { once: true })
    const unlisten = () => op.signal.removeEventListener('abort', onAbort)
    if (op.signal.aborted) onAbort()
    let eager: Run | undefined
    try {
      if (!this.cache.has(key, from) && this.cache.filling(key, from)) await this.cache.waitFor(key, from, stop.signal, this.shareStallMs)
      if (stop.signal.aborted) throw new AbortedError('retrieve aborted')
      if (!this.cache.has(key, from)) {
        // The first chunk comes from the remote anyway: asking now tells absent content
        // apart before a length is announced.
        eager = await this.openRun(key, from * C, op, stop.signal)
        if (eager.length === 0) {
          this.closeRun(eager)
          unlisten()
          await this.cache.invalidate(key)
          return { length: 0, body: Readable.from([]), valid: Promise.resolve(false) }
        }
        if (eager.length !== size - from * C) {
          // The remote's object is not the key's size: let the remote answer as it would.
          this.closeRun(eager)
          unlisten()
          return this.inner.retrieve(key, offset, op)
        }
      }
    } catch (err) {
      if (eager) this.closeRun(eager)
      unlisten()
      throw err
    }
    return this.serve(key, offset, size, algo, expected, from, count, eager, op, stop, unlisten)
  }

  private serve(
    key: Key,
    offset: number,
    size: number,
    algo: HashAlgorithm,
    expected: string,
    from: number,
    count: number,
    eager: Run | undefined,
    op: Op,
    stop: AbortController,
    unlisten: () => void,
  ): Retrieved {
    const C = this.cache.chunkBytes
    let run = eager
    let writer: ChunkWriter | undefined
    let settle!: (v: boolean) => void
    const valid = new Promise<boolean>((r) => (settle = r))
    const self = this

    async function* produce(): AsyncGenerator<Buffer> {
      let hasher: Hasher | undefined
      let ok = false
      const pin = self.cache.pin(key, from)
      try {
        for (let i = from; i < count; i++) {
          pin.at(i)
          const start = i * C
          const len = Math.min(C, size - start)
          const skip = Math.max(0, offset - start)
          if (!run) {
            const got = await self.readCached(key, i, stop.signal)
            if (got && got.header.hash.algo === algo) {
              if (!hasher) {
                const saved = got.header.hash
                if (i === 0) hasher = await createHasher(algo, self.hasherKind)
                else if (saved.impl === 'none') {
                  // No state to start from here: hash from byte 0, the cached chunks read
                  // back, the rest read from the remote again.
                  if (op.readsPart && !self.prefixCached(key, i)) return yield* self.passthrough(key, offset, op, stop.signal, settle)
                  i = -1
                  continue
                } else {
                  try {
                    hasher = await resumeHasher(algo, saved.impl, saved.state)
                  } catch (err) {
                    // A state this build cannot load: start over with nothing cached for the key.
                    op.log.warn({ key: serializeKey(key), err }, 'cached hash state unusable; chunks dropped')
                    await self.cache.invalidate(key)
                  }
                }
              }
              if (hasher) {
                hasher.update(got.data)
                self.stats.cachedBytes += got.data.length
                if (skip < len) yield got.data.subarray(skip)
                continue
              }
            }
            if (!hasher && i > 0) {
              // The chunk whose state we meant to start from is gone (evicted, or damaged
              // and dropped): hash from byte 0 instead. Once only: at chunk 0 a hasher is
              // always made.
              if (op.readsPart) return yield* self.passthrough(key, offset, op, stop.signal, settle)
              i = -1
              continue
            }
            run = await self.openRun(key, start, op, stop.signal)
            if (run.length !== size - start) throw new LengthMismatchError(`the remote has ${run.length} bytes of ${serializeKey(key)} from ${start}, expected ${size - start}`)
          }
          if (!hasher) {
            if (i > 0) {
              // Opened eagerly at a chunk that has since left the cache: no state to hash
              // from there, so from byte 0.
              self.closeRun(run)
              run = undefined
              if (op.readsPart) return yield* self.passthrough(key, offset, op, stop.signal, settle)
              i = -1
              continue
            }
            hasher = await createHasher(algo, self.hasherKind)
          }
          run.fill.at(i)
          const state = hasher.save ? { algo, impl: hasher.implementation as 'wasm' | 'ts', state: hasher.save() } : { algo, impl: 'none' as const, state: new Uint8Array(0) }
          writer = await self.cache.begin(key, i, start, len, state)
          let got = 0
          while (got < len) {
            const piece = await run.reader.read(len - got)
            if (!piece) throw new LengthMismatchError(`the remote ended ${serializeKey(key)} at ${start + got} of ${size} bytes`)
            hasher.update(piece)
            self.stats.upstreamBytes += piece.length
            await writer?.write(piece)
            const at = got
            got += piece.length
            if (got > skip) yield at >= skip ? piece : piece.subarray(skip - at)
          }
          await writer?.commit()
          writer = undefined
          // A cached chunk next: reading it beats paying for its bytes again.
          if (i + 1 < count && self.cache.has(key, i + 1)) {
            self.closeRun(run)
            run = undefined
          }
        }
        if (run) {
          // Let the remote finish cleanly (a git-annex-shell session stays usable).
          if (await run.reader.read(1)) throw new LengthMismatchError(`the remote sent more than the ${size} bytes of ${serializeKey(key)}`)
          await run.valid.catch(() => false)
          run.fill.end()
          run = undefined
        }
        const good = hasher !== undefined && digestMatches(expected, hasher.digest())
        if (!good) {
          op.log.warn({ key: serializeKey(key) }, 'retrieved content does not match its key; cached chunks dropped')
          await self.cache.invalidate(key)
        }
        settle(good)
        ok = true
      } finally {
        if (!ok) settle(false)
        pin.release()
        if (run) self.closeRun(run)
        run = undefined
        await writer?.abort()
        writer = undefined
      }
    }

    // A Readable over the generator by hand: Readable.from would only finish destroying
    // once the generator returns, and the generator may be waiting on the very remote
    // read that destroying has to cut.
    const it = produce()
    let pulling = false
    const body = new Readable({
      read() {
        if (pulling) return
        pulling = true
        it.next().then(
          (r) => {
            pulling = false
            body.push(r.done ? null : r.value)
          },
          (err: unknown) => {
            pulling = false
            body.destroy(err as Error)
          },
        )
      },
      destroy(err, cb) {
        unlisten()
        stop.abort()
        if (run) self.closeRun(run)
        run = undefined
        // Runs the generator's cleanup once whatever it awaits has been cut.
        it.return(undefined).catch(() => undefined)
        settle(false)
        cb(err)
      },
    })
    stop.signal.addEventListener('abort', () => body.destroy(new AbortedError('retrieve aborted')), { once: true })
    if (stop.signal.aborted) body.destroy(new AbortedError('retrieve aborted'))
    return { length: size - offset, body, valid }
  }

  /** Whether chunks 0 to n-1 of `key` are all cached. */
  private prefixCached(key: Key, n: number): boolean {
    for (let j = 0; j < n; j++) if (!this.cache.has(key, j)) return false
    return true
  }

  /** A cached chunk, waiting for another retrieve's upstream read of it when one is coming. */
  private async readCached(key: Key, i: number, signal: AbortSignal) {
    let got = await this.cache.read(key, i)
    if (!got && this.cache.filling(key, i) && (await this.cache.waitFor(key, i, signal, this.shareStallMs))) got = await this.cache.read(key, i)
    return got
  }

  /** Opens a read of the remote from `start` (from 0 and skipping, for remotes that cannot seek). */
  private async openRun(key: Key, start: number, op: Op, signal: AbortSignal): Promise<Run> {
    // Registered before the remote answers, so that a retrieve of the same key arriving
    // meanwhile waits for this one instead of starting its own.
    const fill = this.cache.startFill(key, Math.floor(start / this.cache.chunkBytes))
    const ac = new AbortController()
    const onAbort = () => ac.abort()
    signal.addEventListener('abort', onAbort, { once: true })
    const at = start > 0 && !this.inner.capabilities.has('retrieve-from-offset') ? 0 : start
    let r: Retrieved
    try {
      this.stats.upstreamRequests++
      r = await this.inner.retrieve(key, at, { ...op, signal: ac.signal })
    } catch (err) {
      signal.removeEventListener('abort', onAbort)
      fill.end()
      throw err
    }
    const reader = new ByteReader(r.body, () => signal.removeEventListener('abort', onAbort))
    r.valid.catch(() => undefined)
    const run: Run = { start, ac, reader, valid: r.valid, fill, length: r.length === 0 ? 0 : r.length - (start - at) }
    if (start > at && r.length > 0) {
      try {
        await reader.skip(start - at)
      } catch (err) {
        this.closeRun(run)
        throw err
      }
    }
    return run
  }

  private closeRun(run: Run): void {
    run.fill.end()
    run.ac.abort()
    run.reader.destroy()
  }

  /**
   * The remote's own answer from `offset`, for a caller that reads only a part (readsPart)
   * when the hash state there is not at hand: `valid` is then only the remote's length
   * check, which such a caller does not use.
   */
  private async *passthrough(key: Key, offset: number, op: Op, signal: AbortSignal, settle: (v: boolean) => void): AsyncGenerator<Buffer> {
    const ac = new AbortController()
    const onAbort = () => ac.abort()
    signal.addEventListener('abort', onAbort, { once: true })
    try {
      this.stats.upstreamRequests++
      const r = await this.inner.retrieve(key, offset, { ...op, signal: ac.signal })
      if (r.length !== (key.size ?? 0) - offset) {
        r.body.destroy()
        throw new LengthMismatchError(`the remote has ${r.length} bytes of ${serializeKey(key)} from ${offset}`)
      }
      for await (const piece of r.body as AsyncIterable<Buffer>) {
        this.stats.upstreamBytes += piece.length
        yield piece
      }
      settle(await r.valid.catch(() => false))
    } finally {
      signal.removeEventListener('abort', onAbort)
      ac.abort()
    }
  }
}

/** Pulls exactly as many bytes as asked from a stream, keeping what is left over. */
class ByteReader {
  private readonly it: AsyncIterator<Buffer>
  private rest: Buffer | undefined
  private done = false

  constructor(
    private readonly body: Readable,
    private readonly onEnd: () => void,
  ) {
    this.it = (body as AsyncIterable<Buffer>)[Symbol.asyncIterator]()
    body.once('close', onEnd)
  }

  /** Up to `max` bytes, or null at the end. */
  async read(max: number): Promise<Buffer | null> {
    if (!this.rest || this.rest.length === 0) {
      if (this.done) return null
      const n = await this.it.next()
      if (n.done) {
        this.done = true
        return null
      }
      this.rest = n.value
    }
    const out = this.rest.length <= max ? this.rest : this.rest.subarray(0, max)
    this.rest = this.rest.length <= max ? undefined : this.rest.subarray(max)
    return out
  }

  async skip(n: number): Promise<void> {
    while (n > 0) {
      const b = await this.read(n)
      if (!b) throw new LengthMismatchError('the remote ended before the offset')
      n -= b.length
    }
  }

  destroy(): void {
    this.body.destroy()
    this.onEnd()
  }
}
