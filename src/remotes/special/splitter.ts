// The sink of a special-remote upload: the verified byte stream is cut into the objects of
// the layout (one whole object, or chunk after chunk) in a single pass, each object handed
// to the store as its own stream while the bytes arrive. At most `inFlight` objects are
// being written at once, so memory stays bounded by the store's buffering per object.
import { PassThrough, Writable } from 'node:stream'
import { AbortedError, LengthMismatchError } from '../../errors.js'
import type { Key } from '../../keys/key.js'
import type { ObjectStore } from './object-store.js'

export interface ObjectPart {
  readonly key: Key
  /** Bytes of this object; undefined when the key's size is unknown (one whole object). */
  readonly length: number | undefined
  /** When the store may make it visible (see ObjectStore.write). */
  readonly commit: Promise<boolean>
}

const PIPE_BYTES = 256 * 1024

export class ObjectSplitter extends Writable {
  private next = 0
  private cur: { pass: PassThrough; left: number | undefined } | undefined
  /** One per object started, in order: resolves true once that object is visible. */
  readonly writes: Promise<boolean>[] = []
  /** The first failure of the store itself (as opposed to the body or verification). */
  storeFailure: Error | undefined

  constructor(
    private readonly parts: readonly ObjectPart[],
    private readonly store: ObjectStore,
    private readonly signal: AbortSignal,
    private readonly inFlight: number,
  ) {
    super({ highWaterMark: PIPE_BYTES })
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.take(chunk).then(() => cb(), cb)
  }

  override _final(cb: (e?: Error | null) => void): void {
    this.finish().then(() => cb(), cb)
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.cur?.pass.destroy(err ?? new AbortedError('upload aborted'))
    this.cur = undefined
    cb(err)
  }

  /** Every object written: resolves when all are visible, rejects with the first failure. */
  async allWritten(): Promise<void> {
    const rs = await Promise.all(this.writes)
    if (rs.some((r) => !r)) throw new AbortedError('an object of the upload was not committed')
  }

  /** Waits until no write is in progress; the indices of the objects that were made visible. */
  async settle(): Promise<Key[]> {
    const rs = await Promise.allSettled(this.writes)
    return rs.flatMap((r, i) => (r.status === 'fulfilled' && r.value ? [this.parts[i]!.key] : []))
  }

  private async take(chunk: Buffer): Promise<void> {
    let off = 0
    while (off < chunk.length) {
      if (!this.cur) await this.open()
      const c = this.cur!
      const n = c.left === undefined ? chunk.length - off : Math.min(c.left, chunk.length - off)
      const piece = chunk.subarray(off, off + n)
      off += n
      if (c.left !== undefined) c.left -= n
      await this.put(c.pass, piece)
      if (c.left === 0) {
        c.pass.end()
        this.cur = undefined
      }
    }
  }

  private async finish(): Promise<void> {
    if (this.cur) {
      if (this.cur.left !== undefined && this.cur.left > 0) throw new LengthMismatchError('the upload ended inside an object')
      this.cur.pass.end()
      this.cur = undefined
    }
    // Empty content is still one (empty) object.
    while (this.next < this.parts.length) {
      if ((this.parts[this.next]!.length ?? 0) !== 0) throw new LengthMismatchError('the upload ended before its last object')
      await this.open()
    }
  }

  private async open(): Promise<void> {
    if (this.next >= this.parts.length) throw new LengthMismatchError('more bytes than the key holds')
    // Bounded: wait for the write `inFlight` objects back before starting another.
    const older = this.writes[this.next - this.inFlight]
    if (older) await older.catch(() => undefined)
    if (this.storeFailure) throw this.storeFailure
    // Destroyed (aborted, failed) while a write was still being handled: start nothing more.
    if (this.destroyed) throw (this.errored as Error | null) ?? new AbortedError('upload aborted')
    const part = this.parts[this.next++]!
    const pass = new PassThrough({ highWaterMark: PIPE_BYTES })
    // Destroyed with the upload's error before the store may have started reading it; the
    // store sees the error when it does (a destroyed stream reports it to pipeline).
    pass.on('error', () => undefined)
    const w = this.store.write(part.key, pass, part.length, part.commit, this.signal)
    w.catch((e: unknown) => {
      const err = e instanceof Error ? e : new Error(String(e))
      this.storeFailure ??= err
      pass.destroy(err)
      if (!this.destroyed && !this.writableFinished) this.destroy(err)
    })
    this.writes.push(w)
    this.cur = { pass, left: part.length }
    if (part.length === 0) {
      pass.end()
      this.cur = undefined
    }
  }

  private put(pass: PassThrough, piece: Buffer): Promise<void> {
    if (pass.destroyed) return Promise.reject(this.storeFailure ?? new AbortedError('the store stopped reading'))
    if (pass.write(piece)) return Promise.resolve()
    return new Promise<void>((resolve, reject) => {
      const done = (err?: Error) => {
        pass.off('drain', onDrain)
        pass.off('close', onClose)
        if (err) reject(err)
        else resolve()
      }
      const onDrain = () => done()
      const onClose = () => done(this.storeFailure ?? new AbortedError('the store stopped reading'))
      pass.once('drain', onDrain)
      pass.once('close', onClose)
    })
  }
}
