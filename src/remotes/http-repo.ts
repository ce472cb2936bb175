// An upstream P2P-over-HTTP repository (`git annex p2phttp`, or another annex-proxy) as a
// Remote, on top of src/protocol/http/client.ts. Uploads stream with backpressure and are
// verified on the way; content found bad is sent one byte short so the upstream sees a
// count mismatch and commits nothing (spec §2.5 client rule).
import { finished } from 'node:stream/promises'
import { Readable, Transform, pipeline, type TransformCallback } from 'node:stream'
import { AbortedError, HashMismatchError, LengthMismatchError, LockedError, NotSupportedError, ProxyError, TransferInProgressError } from '../errors.js'
import { serializeKey, type Key } from '../keys/key.js'
import { P2PHttpClient, type HttpClientOptions } from '../protocol/http/client.js'
import { createVerifier, type VerifyOptions } from '../streams/verify.js'
import { asUuid, RemoteBase, type Capability, type Lock, type Op, type Removed, type Retrieved, type Stored, type StoreOp, type StoreStart, type Uuid } from './remote.js'

export interface HttpRepoOptions extends HttpClientOptions {
  /** The UUID of the repository served at the URL (its path segment, spec §2.3). */
  readonly uuid: string
}

const CAPABILITIES: ReadonlySet<Capability> = new Set<Capability>(['retrieve-from-offset', 'resume-store', 'lock', 'remove-before', 'timestamp'])

type Outcome = 'complete' | 'short' | 'bad-content' | 'sender-invalid' | 'too-long'

export class HttpRepo extends RemoteBase {
  readonly uuid: Uuid
  readonly capabilities = CAPABILITIES
  readonly client: P2PHttpClient
  private readonly storing = new Set<string>()
  private readonly locks = new Set<Lock>()

  /** `annexUrl`: `annex+http(s)://host[:port][/basepath]` (spec §2.1) or a plain http(s) URL. */
  constructor(
    readonly annexUrl: string,
    opts: HttpRepoOptions,
  ) {
    super()
    this.uuid = asUuid(opts.uuid)
    this.client = new P2PHttpClient(annexUrl, opts)
  }

  protected override describe(): string {
    return `${this.annexUrl} (${this.uuid})`
  }

  protected doCheckPresent(key: Key, op: Op): Promise<boolean> {
    return this.client.checkPresent(this.uuid, key, op)
  }

  protected async doRetrieve(key: Key, offset: number, op: Op): Promise<Retrieved> {
    const r = await this.client.get(this.uuid, key, { signal: op.signal, offset, ...(op.associatedFile !== undefined ? { associatedFile: op.associatedFile } : {}) })
    const size = key.size
    // An absent key is 200 with length 0 (spec §2.4): only the key's size tells it from an empty tail.
    const plausible =
      size !== undefined
        ? Promise.resolve(r.length === Math.max(0, size - offset))
        : r.length > 0
          ? Promise.resolve(true)
          : this.client.checkPresent(this.uuid, key, op).catch(() => false)
    const valid = Promise.all([r.complete, plausible]).then(([a, b]) => a && b)
    return { length: r.length, body: r.body, valid }
  }

  protected async doStartStore(key: Key, op: Op): Promise<StoreStart> {
    const r = await this.client.putOffset(this.uuid, key, op)
    return r.kind === 'alreadyhave' ? { kind: 'present', plusUuids: r.plusUuids.map(asUuid) } : { kind: 'offset', offset: r.offset }
  }

  /** Refusals before the body is read leave it to RemoteBase, which drains it. */
  protected async doStore(key: Key, body: Readable, offset: number, op: StoreOp): Promise<Stored> {
    const id = serializeKey(key)
    if (this.storing.has(id)) throw new TransferInProgressError(`a store of ${id} is already in progress`)
    this.storing.add(id)
    try {
      return await this.storeClaimed(key, body, offset, op)
    } finally {
      this.storing.delete(id)
    }
  }

  private async storeClaimed(key: Key, body: Readable, offset: number, op: StoreOp): Promise<Stored> {
    const id = serializeKey(key)
    const size = key.size
    if (size === undefined) throw new NotSupportedError(`${id} has no size: X-git-annex-data-length cannot be announced`)
    if (offset > size) throw new LengthMismatchError(`offset ${offset} is beyond the ${size} bytes of ${id}`)
    // putoffset first, like git-annex (spec §2.5): it also settles the version put uses.
    const start = await this.client.putOffset(this.uuid, key, op)
    if (start.kind === 'alreadyhave') return { stored: true, plusUuids: start.plusUuids.map(asUuid) }
    if (offset > start.offset) throw new LengthMismatchError(`cannot resume ${id} at ${offset}: the upstream keeps ${start.offset} bytes`)
    const upload = await uploadStream(key, offset, size - offset, op.senderValid, { vouched: op.vouched, body, offset })
    let sourceError: Error | undefined
    pipeline(body, upload, (err) => {
      if (err && !(err instanceof ProxyError)) sourceError ??= err
    })
    let result: { stored: boolean; plusUuids: readonly string[] }
    try {
      result = await this.client.put(this.uuid, key, upload, {
        signal: op.signal,
        length: size - offset,
        offset,
        ...(op.associatedFile !== undefined ? { associatedFile: op.associatedFile } : {}),
      })
    } catch (e) {
      upload.destroy()
      if (op.signal.aborted) throw new AbortedError(`store of ${id} aborted`, { cause: e })
      const outcome = await settledOutcome(upload)
      if (outcome === 'too-long') {
        await this.scrub(key, op)
        throw new LengthMismatchError(`the body is longer than the ${size - offset} bytes of ${id}`, { cause: e })
      }
      if (sourceError) throw new AbortedError(`the body of ${id} failed: ${sourceError.message}`, { cause: sourceError })
      throw e
    }
    // The upstream answered: it read the whole body, unless it answered early.
    if (upload.outcome === undefined) upload.destroy()
    const outcome = await settledOutcome(upload)
    if (sourceError) throw new AbortedError(`the body of ${id} failed: ${sourceError.message}`, { cause: sourceError })
    if (outcome === 'bad-content' || outcome === 'sender-invalid' || outcome === 'too-long') await this.scrub(key, op)
    switch (outcome) {
      case 'short':
        throw new LengthMismatchError(`the body of ${id} ended short of ${size - offset} bytes`)
      case 'too-long':
        throw new LengthMismatchError(`the body is longer than the ${size - offset} bytes of ${id}`)
      case 'bad-content':
        throw new HashMismatchError(`content does not match the checksum of ${id}; sent short so the upstream commits nothing`)
      case 'sender-invalid':
        throw new HashMismatchError(`the sender reported ${id} invalid; sent short so the upstream commits nothing`)
      case 'complete':
      case undefined:
        break
    }
    if (!result.stored) throw new HashMismatchError(`the upstream refused ${id} after receiving all of it (verification failed)`)
    return { stored: true, plusUuids: result.plusUuids.map(asUuid) }
  }

  /**
   * After content known bad was sent short, the upstream keeps it as a resumable prefix,
   * and the reference resumes from its own prefix whatever offset a put names: the next
   * good upload would fail once. Clear it with puts that cannot commit anything:
   * first an empty body announced from offset 0 (annex-proxy restarts its tmp there and
   * keeps nothing), then, if a prefix p remains, a put from offset p+1 whose end cannot
   * be the key's size (the reference appends it at p, marks it INVALID, and its forced
   * verification fails on the size and deletes the tmp file; spec §1.5, §2.5).
   * Best effort: failures are logged, never thrown.
   */
  private async scrub(key: Key, op: Op): Promise<void> {
    const size = key.size
    if (size === undefined || op.signal.aborted) return
    const kept = async () => {
      const s = await this.client.putOffset(this.uuid, key, op)
      return s.kind === 'offset' ? s.offset : 0
    }
    try {
      let p = await kept()
      if (p === 0) return
      await this.client.put(this.uuid, key, Readable.from([]), { signal: op.signal, length: size, offset: 0 }).catch(() => undefined)
      p = await kept()
      if (p === 0 || p >= size) return
      const len = p + 1 === size ? 2 : 1
      await this.client.put(this.uuid, key, Readable.from([Buffer.alloc(len)]), { signal: op.signal, length: len, offset: p + 1 }).catch(() => undefined)
      p = await kept()
      if (p !== 0) op.log.warn({ key: serializeKey(key), kept: p }, 'the upstream still keeps a prefix of content sent bad')
    } catch (e) {
      op.log.warn({ err: e, key: serializeKey(key) }, 'could not clear the upstream prefix of content sent bad')
    }
  }

  protected async doStorePresent(key: Key, op: Op): Promise<Stored> {
    // data-present is v4 only; older servers would take the empty body as the content.
    const start = await this.client.putOffset(this.uuid, key, op)
    if (start.kind === 'alreadyhave') return { stored: true, plusUuids: start.plusUuids.map(asUuid) }
    if (this.client.version < 4) return { stored: await this.client.checkPresent(this.uuid, key, op), plusUuids: [] }
    const r = await this.client.put(this.uuid, key, Readable.from([]), { signal: op.signal, length: 0, dataPresent: true })
    return { stored: r.stored, plusUuids: r.plusUuids.map(asUuid) }
  }

  protected async doRemove(key: Key, op: Op): Promise<Removed> {
    const r = await this.client.remove(this.uuid, key, op)
    if (!r.removed) throw new LockedError(`the upstream did not remove ${serializeKey(key)} (locked)`)
    return { removed: true, plusUuids: r.plusUuids.map(asUuid) }
  }

  protected async doRemoveBefore(key: Key, deadline: number, op: Op): Promise<Removed> {
    const r = await this.client.removeBefore(this.uuid, key, deadline, op)
    return { removed: r.removed, plusUuids: r.plusUuids.map(asUuid) }
  }

  protected doTimestamp(op: Op): Promise<number> {
    return this.client.getTimestamp(this.uuid, op)
  }

  /** The lock is held until released, or until this remote closes. */
  protected async doLock(key: Key, op: Op): Promise<Lock | undefined> {
    const r = await this.client.lockContent(this.uuid, key, op)
    if (!r.locked) return undefined
    // keeplocked at once, as git-annex does: it disables the upstream's 600 s expiry (spec §2.6).
    const held = this.client.keepLocked(this.uuid, r.lockId!, { signal: new AbortController().signal })
    let released: Promise<void> | undefined
    const lock: Lock = {
      release: () =>
        (released ??= (async () => {
          this.locks.delete(lock)
          await held.release()
        })()),
    }
    void held.ended.then((e) => {
      if (e && this.locks.has(lock)) op.log.warn({ err: e, key: serializeKey(key) }, 'keeplocked ended early: the upstream lock now expires on its own')
    })
    this.locks.add(lock)
    return lock
  }

  protected async doClose(): Promise<void> {
    await Promise.allSettled([...this.locks].map((l) => l.release()))
    await this.client.close()
  }

  protected override async doDestroy(): Promise<void> {
    await Promise.allSettled([...this.locks].map((l) => l.release()))
    await this.client.destroy()
  }
}

type Upload = Transform & { outcome?: Outcome; settled: Promise<void> }

async function settledOutcome(u: Upload): Promise<Outcome | undefined> {
  await u.settled
  return u.outcome
}

/**
 * The put body: counts, verifies (offset 0: hash and length via createVerifier; a resumed
 * upload only by length, the upstream holds the prefix) and holds back the latest chunk.
 * At the end: bad content or a sender that reports invalid loses its last byte, so the
 * upstream's count falls short; a short body is passed on whole (its bytes are kept for
 * resume); too many bytes fail at once, which aborts the request.
 */
async function uploadStream(key: Key, offset: number, expected: number, senderValid: Promise<boolean> | undefined, upstream: VerifyOptions['upstream']): Promise<Upload> {
  // Verified at the gateway already (a cluster's verifiedTee): counted here, not re-hashed.
  // The upstream repository verifies what it receives either way.
  const verifier = offset === 0 ? await createVerifier(key, { upstream }) : undefined
  let verdict: Promise<boolean> = Promise.resolve(true)
  if (verifier) {
    verifier.resume()
    verdict = finished(verifier).then(
      () => true,
      () => false,
    )
  }
  let count = 0
  let held: Buffer | undefined
  let settle!: () => void
  const settled = new Promise<void>((r) => (settle = r))
  const u = new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      if (u.outcome === 'too-long') return cb() // excess: drained and dropped
      count += chunk.length
      if (count > expected) {
        // Too many bytes: the content's last byte is held back and never sent, so the
        // request ends cleanly one byte short (the upstream answers and keeps its prefix).
        u.outcome = 'too-long'
        const before = count - chunk.length
        const room = Math.max(0, expected - 1 - before)
        held = undefined
        return cb(null, room > 0 ? chunk.subarray(0, room) : undefined)
      }
      verifier?.write(chunk)
      // Only the content's very last byte waits for the verdict; everything before it
      // goes out at once, so a stalled or cut body leaves all it gave upstream.
      if (count === expected && chunk.length > 0) {
        held = chunk.subarray(chunk.length - 1)
        return cb(null, chunk.length > 1 ? chunk.subarray(0, chunk.length - 1) : undefined)
      }
      cb(null, chunk)
    },
    flush(cb: TransformCallback) {
      verifier?.end()
      if (u.outcome === 'too-long') return cb()
      void (async () => {
        const sv = senderValid ? await senderValid.catch(() => false) : true
        if (count < expected) {
          // Short: every byte is out already and the upstream's count falls short anyway.
          u.outcome = sv ? 'short' : 'sender-invalid'
          return cb()
        }
        const hashOk = await verdict
        const ok = sv && hashOk
        u.outcome = ok ? 'complete' : hashOk ? 'sender-invalid' : 'bad-content'
        if (ok) return cb(null, held)
        // Bad: the last byte never leaves, the upstream sees a count mismatch (spec §2.5).
        if (held) return cb()
        // Nothing to hold back (an empty body): only an aborted request tells the upstream.
        cb(new LengthMismatchError('invalid empty content'))
      })()
    },
  }) as Upload
  u.settled = settled
  u.once('close', settle)
  u.once('end', settle)
  u.once('error', settle)
  return u
}
