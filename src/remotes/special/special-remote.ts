// A special remote (S3 bucket, directory) as a Remote, over an ObjectStore, with
// git-annex's own object names, chunking and chunk log, so that git-annex's S3 and
// directory remotes read, check and drop what is stored here, and the reverse.
//
// Store: one pass over the client's bytes, through the verifier, cut into the layout's
// objects as they arrive (splitter.ts). Nothing unverified becomes content: the whole
// object, or the LAST chunk, is made visible only after the hash and length verified (and
// the sender did not report a change); earlier chunks are written as they complete but are
// no content without the last one and the chunk log, which is written only after every
// chunk is stored. A failed upload deletes the chunks it wrote. No resume: an upload
// starts at 0 (as the reference's proxy does).
//
// Retrieve: a ranged read of the object, or of the chunk holding the offset and the
// chunks after it. GETTIMESTAMP / REMOVE-BEFORE are answered with the gateway's own
// monotonic clock (the reference's proxy dies on them, spec §4, §9.8); special remotes
// cannot lock content.
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { AbortedError, ConfigError, NotSupportedError, ProxyError, RemoteUnavailableError, TransferInProgressError } from '../../errors.js'
import type { Key } from '../../keys/key.js'
import { keyFile } from '../../keys/object-path.js'
import { monotonicSeconds } from '../../annex/clock.js'
import { createVerifier, type HasherKind } from '../../streams/verify.js'
import { untilAborted } from '../until-aborted.js'
import { RemoteBase, type Capability, type Lock, type Logger, type Op, type Removed, type Retrieved, type StoreOp, type StoreStart, type Stored, type Uuid } from '../remote.js'
import { candidateLayouts, chunkCount, chunkKey, chunkKeys, isStableKey, type ChunkConfig, type Layout } from './chunks.js'
import type { ChunkLog } from './chunk-log.js'
import type { ObjectStore } from './object-store.js'
import { ObjectSplitter, type ObjectPart } from './splitter.js'

export interface SpecialRemoteOptions {
  readonly uuid: Uuid
  readonly store: ObjectStore
  /** The remote's chunk= setting (legacy chunksize= is not served natively). */
  readonly chunking: ChunkConfig
  /** The chunk logs of the repository whose git-annex branch records this remote. */
  readonly chunkLog: ChunkLog
  readonly hasher?: HasherKind
  readonly log?: Logger
  /** Objects (chunks) being written at once per upload; default 2. */
  readonly writesInFlight?: number
  /** Called by close(), after the store is closed (e.g. a chunk log the remote owns). */
  readonly onClose?: () => Promise<void>
}

const CAPABILITIES: readonly Capability[] = ['retrieve-from-offset', 'remove-before', 'timestamp']
/** HEAD / DELETE requests in flight for one key's chunks. */
const PROBES = 8
const NOTHING: readonly Uuid[] = Object.freeze([])
/** Absent verdicts kept for the store that follows a startStore (oldest dropped first). */
const VERDICTS = 1024
/** An absent verdict older than this is asked again: other writers share the bucket. */
const VERDICT_TTL_MS = 60_000

/** startStore's "absent", usable by store() until a store of the key ends in this process. */
interface AbsentVerdict {
  absent: boolean
  readonly at: number
}

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length)
  let i = 0
  const worker = async () => {
    while (i < items.length) {
      const j = i++
      out[j] = await fn(items[j]!)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  return out
}

function emptyBody(): Readable {
  return Readable.from([], { objectMode: false })
}

/** Op signals fire when the client goes away or the remote is destroyed (RemoteBase). */
export class SpecialRemote extends RemoteBase {
  readonly capabilities: ReadonlySet<Capability> = new Set(CAPABILITIES)
  readonly uuid: Uuid
  private readonly objects: ObjectStore
  private readonly chunking: ChunkConfig
  private readonly chunkLog: ChunkLog
  private readonly storing = new Set<string>()
  /**
   * By key file: the latest startStore's check. A store of the key ending in this process
   * (success or not) deletes it, so an entry that still says absent saw no in-process
   * store complete since its check began: store() takes its claim and writes without
   * asking again (one HEAD per proxied upload, not two).
   */
  private readonly verdicts = new Map<string, AbsentVerdict>()

  constructor(private readonly opts: SpecialRemoteOptions) {
    super()
    if (opts.chunking.kind === 'legacy') throw new ConfigError('legacy chunksize= remotes are not served natively')
    this.uuid = opts.uuid
    this.objects = opts.store
    this.chunking = opts.chunking
    this.chunkLog = opts.chunkLog
  }

  get description(): string {
    return this.objects.description
  }

  protected override describe(): string {
    return this.objects.description
  }

  /** Where git-annex would look for the key, in its order. */
  private async layouts(key: Key): Promise<Layout[]> {
    return candidateLayouts(key, this.chunking, await this.chunkLog.logged(key, this.uuid))
  }

  /** Whether every object of `layout` is there. */
  private async has(key: Key, layout: Layout, signal: AbortSignal): Promise<boolean> {
    if (layout.kind === 'whole') return this.objects.has(key, signal)
    const keys = chunkKeys(key, layout.size, layout.count)
    // Stop asking as soon as one is missing.
    let missing = false
    await mapLimit(keys, PROBES, async (k) => {
      if (missing) return
      if (!(await this.objects.has(k, signal))) missing = true
    })
    return !missing
  }

  /**
   * checkPresentChunks: the first layout found complete. A layout guessed from the
   * configured chunk size that is found gets logged, as git-annex does. A failure to check
   * one layout is reported only when no later one is found.
   */
  private async locate(key: Key, signal: AbortSignal): Promise<Layout | undefined> {
    let deferred: unknown
    for (const layout of await this.layouts(key)) {
      try {
        if (!(await this.has(key, layout, signal))) continue
      } catch (e) {
        if (signal.aborted) throw new AbortedError('aborted', { cause: e })
        deferred ??= e
        continue
      }
      if (layout.kind === 'chunks' && !layout.logged) await this.chunkLog.record(key, this.uuid, layout.size, layout.count)
      return layout
    }
    if (deferred !== undefined) throw this.unavailable(deferred)
    return undefined
  }

  private unavailable(e: unknown): ProxyError {
    if (e instanceof ProxyError) return e
    return new RemoteUnavailableError(`${this.objects.description}: ${(e as Error)?.message ?? String(e)}`, { cause: e })
  }

  protected async doCheckPresent(key: Key, op: Op): Promise<boolean> {
    return (await this.locate(key, op.signal)) !== undefined
  }

  /** The op's signal stays linked until the body is done with (RemoteBase). */
  protected async doRetrieve(key: Key, offset: number, op: Op): Promise<Retrieved> {
    if (!Number.isSafeInteger(offset) || offset < 0) throw new NotSupportedError(`invalid offset ${offset}`)
    const absent: Retrieved = { length: 0, body: emptyBody(), valid: Promise.resolve(false) }
    const signal = op.signal
    let deferred: unknown
    for (const layout of await this.layouts(key)) {
      try {
        const r = layout.kind === 'whole' ? await this.retrieveWhole(key, offset, signal) : await this.retrieveChunks(key, layout, offset, signal)
        if (!r) continue
        if (layout.kind === 'chunks' && !layout.logged) await this.chunkLog.record(key, this.uuid, layout.size, layout.count)
        return r
      } catch (e) {
        if (signal.aborted) throw new AbortedError('retrieve aborted', { cause: e })
        deferred ??= e
      }
    }
    if (deferred !== undefined) throw this.unavailable(deferred)
    return absent
  }

  private async retrieveWhole(key: Key, offset: number, signal: AbortSignal): Promise<Retrieved | undefined> {
    const r = await this.objects.read(key, offset, signal)
    if (!r) return undefined
    const length = Math.max(0, r.size - offset)
    return this.counted(r.body, length)
  }

  private async retrieveChunks(key: Key, layout: Extract<Layout, { kind: 'chunks' }>, offset: number, signal: AbortSignal): Promise<Retrieved | undefined> {
    const total = key.size
    if (total === undefined) return undefined
    const S = layout.size
    if (offset >= total) {
      // Nothing to send; still only "present" if it is.
      if (!(await this.objects.has(chunkKey(key, S, 1), signal))) return undefined
      return { length: 0, body: emptyBody(), valid: Promise.resolve(true) }
    }
    const first = Math.floor(offset / S) + 1
    if (first > layout.count) return undefined
    const r1 = await this.objects.read(chunkKey(key, S, first), offset - (first - 1) * S, signal)
    if (!r1) return undefined
    const store = this.objects
    async function* chunks(): AsyncGenerator<Buffer> {
      yield* r1!.body as AsyncIterable<Buffer>
      for (let n = first + 1; n <= layout.count; n++) {
        const r = await store.read(chunkKey(key, S, n), 0, signal)
        if (!r) throw new RemoteUnavailableError(`chunk ${n} of ${layout.count} of the key is missing from ${store.description}`)
        yield* r.body as AsyncIterable<Buffer>
      }
    }
    const body = Readable.from(chunks(), { objectMode: false })
    body.once('close', () => r1.body.destroy())
    return this.counted(body, total - offset)
  }

  /** The body with `valid` true when exactly `length` bytes came through. */
  private counted(source: Readable, length: number): Retrieved {
    let seen = 0
    let settle!: (ok: boolean) => void
    const valid = new Promise<boolean>((r) => (settle = r))
    async function* count(): AsyncGenerator<Buffer> {
      try {
        for await (const c of source as AsyncIterable<Buffer>) {
          seen += c.length
          if (seen > length) throw new RemoteUnavailableError('the remote sent more bytes than the object has')
          yield c
        }
        settle(seen === length)
      } finally {
        settle(false)
        source.destroy()
      }
    }
    const body = Readable.from(count(), { objectMode: false })
    // Destroyed before it was read, the generator never runs its finally: valid must still settle.
    body.once('close', () => {
      settle(false)
      source.destroy()
    })
    return { length, body, valid }
  }

  protected async doStartStore(key: Key, op: Op): Promise<StoreStart> {
    const id = keyFile(key)
    // Set before asking: a store of the key that ends while the check is out deletes it.
    const verdict: AbsentVerdict = { absent: false, at: Date.now() }
    this.verdicts.delete(id)
    this.verdicts.set(id, verdict)
    if (this.verdicts.size > VERDICTS) this.verdicts.delete(this.verdicts.keys().next().value!)
    let present: boolean
    try {
      present = await this.doCheckPresent(key, op)
    } catch (e) {
      if (this.verdicts.get(id) === verdict) this.verdicts.delete(id)
      throw e
    }
    if (present) {
      if (this.verdicts.get(id) === verdict) this.verdicts.delete(id)
      return { kind: 'present', plusUuids: NOTHING }
    }
    verdict.absent = true
    return { kind: 'offset', offset: 0 }
  }

  /** Whether startStore found the key absent, with no store of it ending here since (taken once). */
  private takeAbsentVerdict(id: string): boolean {
    const v = this.verdicts.get(id)
    if (v === undefined) return false
    this.verdicts.delete(id)
    return v.absent && Date.now() - v.at < VERDICT_TTL_MS
  }

  /** Refusals before the body is read leave it to RemoteBase, which drains it. */
  protected doStore(key: Key, body: Readable, offset: number, op: StoreOp): Promise<Stored> {
    if (offset !== 0) return Promise.reject(new NotSupportedError('special remotes cannot resume an upload; send from offset 0'))
    const id = keyFile(key)
    if (this.storing.has(id)) return Promise.reject(new TransferInProgressError('transfer already in progress, or unable to take transfer lock'))
    this.storing.add(id)
    const checked = this.takeAbsentVerdict(id)
    return this.storeClaimed(key, body, op, checked).finally(() => {
      this.storing.delete(id)
      // Whatever this store left, an earlier check of the key may no longer hold.
      this.verdicts.delete(id)
    })
  }

  /** The objects an upload of `key` writes now. */
  private plan(key: Key, verdict: Promise<boolean>): { parts: ObjectPart[]; chunked?: { size: number; count: number } } {
    const size = key.size
    if (this.chunking.kind !== 'chunks' || !isStableKey(key) || size === undefined) {
      return { parts: [{ key, length: size, commit: verdict }] }
    }
    const S = this.chunking.size
    const count = chunkCount(size, S)
    const now = Promise.resolve(true)
    const parts = chunkKeys(key, S, count).map((k, i) => ({
      key: k,
      length: Math.max(0, Math.min(S, size - i * S)),
      commit: i === count - 1 ? verdict : now,
    }))
    return { parts, chunked: { size: S, count } }
  }

  /**
   * `checked`: startStore found the key absent and no store of it ended here since, so the
   * claim just taken has nothing new to see. Otherwise (store without startStore, or a
   * store of the key ended meanwhile) the check runs after the claim: a concurrent upload
   * that completed is answered as present, not written again — a second chunked write
   * that failed would delete the chunks the first one committed.
   */
  private async storeClaimed(key: Key, body: Readable, op: StoreOp, checked: boolean): Promise<Stored> {
    const signal = op.signal
    {
      // Already there: the bytes are not needed; RemoteBase drains them.
      if (!checked && (await this.locate(key, signal).catch(() => undefined))) return { stored: true, plusUuids: NOTHING }
      let decide!: (ok: boolean) => void
      const verdict = new Promise<boolean>((r) => (decide = r))
      const { parts, chunked } = this.plan(key, verdict)
      // A cluster upload verified at the gateway (verifiedTee) is counted here, not re-hashed.
      const verifier = await createVerifier(key, { ...(this.opts.hasher ? { hasher: this.opts.hasher } : {}), upstream: { vouched: op.vouched, body, offset: 0 } })
      const sink = new ObjectSplitter(parts, this.objects, signal, this.opts.writesInFlight ?? 2)
      try {
        await pipeline(body, verifier, sink, { signal })
        if (op.senderValid && !(await untilAborted(op.senderValid, signal))) {
          throw new AbortedError('the sender reported that the content changed while it was sent')
        }
        decide(true)
        await sink.allWritten()
      } catch (e) {
        decide(false)
        const written = await sink.settle()
        // Chunks that were made visible are no content without the rest: take them back.
        await Promise.allSettled(written.map((k) => this.objects.delete(k, new AbortController().signal)))
        throw this.storeError(e, sink, signal)
      }
      if (chunked) await this.chunkLog.record(key, this.uuid, chunked.size, chunked.count)
      return { stored: true, plusUuids: NOTHING }
    }
  }

  private storeError(e: unknown, sink: ObjectSplitter, signal: AbortSignal): ProxyError {
    if (e instanceof ProxyError) return e
    if (signal.aborted) return new AbortedError('store aborted', { cause: e })
    if (sink.storeFailure !== undefined) return this.unavailable(sink.storeFailure)
    return new AbortedError('upload interrupted', { cause: e })
  }

  protected async doStorePresent(key: Key, op: Op): Promise<Stored> {
    return { stored: await this.doCheckPresent(key, op), plusUuids: NOTHING }
  }

  protected doRemove(key: Key, op: Op): Promise<Removed> {
    return this.removeUnless(key, undefined, op)
  }

  protected doRemoveBefore(key: Key, deadline: number, op: Op): Promise<Removed> {
    return this.removeUnless(key, deadline, op)
  }

  /** removeChunks: every layout's objects go, then each logged chunk size is logged 0. */
  private async removeUnless(key: Key, deadline: number | undefined, op: Op): Promise<Removed> {
    if (deadline !== undefined && !(monotonicSeconds() < deadline)) return { removed: false, plusUuids: NOTHING }
    const l = { signal: op.signal }
    try {
      for (const layout of await this.layouts(key)) {
        if (layout.kind === 'whole') {
          await this.objects.delete(key, l.signal)
          continue
        }
        // A guessed layout whose first chunk is not there was never stored.
        if (!layout.logged && !(await this.objects.has(chunkKey(key, layout.size, 1), l.signal))) continue
        await mapLimit(chunkKeys(key, layout.size, layout.count), PROBES, (k) => this.objects.delete(k, l.signal))
        await this.chunkLog.record(key, this.uuid, layout.size, 0)
      }
      return { removed: true, plusUuids: NOTHING }
    } catch (e) {
      throw this.unavailable(e)
    }
  }

  protected async doTimestamp(_op: Op): Promise<number> {
    return monotonicSeconds()
  }

  protected async doLock(_key: Key, _op: Op): Promise<Lock | undefined> {
    throw new NotSupportedError('a special remote cannot lock content')
  }

  /** Once nothing is in flight (RemoteBase). */
  protected async doClose(): Promise<void> {
    await this.objects.close()
    await this.opts.onClose?.()
  }
}
