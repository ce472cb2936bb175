// One source, N branches, one pass: every chunk is written to every live branch and the
// source is read again only when each live branch has room, so the slowest consumer
// paces the upload. Memory is bounded by (N+1) × (highWaterMark + one chunk) whatever the
// file size: the input buffers up to highWaterMark (plus the chunk in hand), and each
// branch is a Readable fed directly, holding at most highWaterMark plus the chunk that
// filled it (a PassThrough would hold a window on each of its two sides: (2N+1)×).
//
// A branch whose consumer fails (destroys it) or makes no progress for `stallMs` is
// detached; the others go on. Only when no branch is left does the input fail. The
// branches end only when the input finishes cleanly — an upstream error (a verifier
// refusing the content) destroys them all, so no consumer can commit.
import { Readable, Writable } from 'node:stream'
import { AbortedError, AllTargetsFailedError, StalledError } from '../errors.js'

export interface TeeOptions {
  readonly highWaterMark: number
  /** A branch that has not drained for this long is dropped. */
  readonly stallMs?: number
}

export interface Tee {
  readonly input: Writable
  readonly branches: readonly Readable[]
  /** Branches dropped so far, with why. */
  readonly detached: ReadonlyMap<number, Error>
}

/** A Readable the tee pushes into; `wanted()` resolves when its consumer asks for more. */
class Branch extends Readable {
  private wake: (() => void) | undefined

  override _read(): void {
    const w = this.wake
    this.wake = undefined
    w?.()
  }

  /** Resolves once the buffer fell below highWaterMark; rejects when closed first or past `stallMs`. */
  wanted(stallMs: number | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = stallMs === undefined ? undefined : setTimeout(() => done(new StalledError(`a target made no progress for ${stallMs} ms`)), stallMs)
      const onClose = () => done(new AbortedError('consumer closed early'))
      const done = (err?: Error) => {
        if (timer) clearTimeout(timer)
        this.off('close', onClose)
        this.wake = undefined
        if (err) reject(err)
        else resolve()
      }
      this.wake = () => done()
      this.once('close', onClose)
    })
  }
}

export function tee(n: number, opts: TeeOptions): Tee {
  const branches = Array.from({ length: n }, () => new Branch({ highWaterMark: opts.highWaterMark }))
  const live = new Set<number>(branches.map((_, i) => i))
  const detached = new Map<number, Error>()
  let finished = false
  branches.forEach((b, i) => {
    // A target may refuse before it ever reads its branch; the branch's fate is
    // reported through `detached`, so an error with no consumer must not crash.
    b.on('error', () => {})
    b.once('close', () => {
      if (!live.delete(i)) return
      // Closed before the input finished: its consumer gave up.
      if (!finished) detached.set(i, (b.errored as Error | null) ?? new AbortedError('consumer closed early'))
      allGone()
    })
  })

  const drop = (i: number, err: Error) => {
    if (!live.has(i)) return
    live.delete(i)
    detached.set(i, err)
    if (!branches[i]!.destroyed) branches[i]!.destroy(err)
    allGone()
  }

  // With no branch left the upload has failed now, even if the source is idle (a
  // stalled client would otherwise keep it waiting for a write that never comes).
  const allGone = () => {
    if (live.size === 0 && n > 0 && !finished && !input.destroyed) {
      input.destroy(new AllTargetsFailedError('every target of the upload failed', { cause: firstCause(detached) }))
    }
  }

  const input = new Writable({
    highWaterMark: opts.highWaterMark,
    write(chunk: Buffer, _enc, cb) {
      if (live.size === 0) return cb(new AllTargetsFailedError('every target of the upload failed', { cause: firstCause(detached) }))
      const full: number[] = []
      for (const i of [...live]) {
        const b = branches[i]!
        // Destroyed by its consumer; its 'close' has not arrived yet.
        if (b.destroyed) drop(i, (b.errored as Error | null) ?? new AbortedError('consumer closed early'))
        else if (!b.push(chunk)) full.push(i)
      }
      if (live.size === 0) return cb(new AllTargetsFailedError('every target of the upload failed', { cause: firstCause(detached) }))
      if (full.length === 0) return cb()
      Promise.all(full.map((i) => branches[i]!.wanted(opts.stallMs).catch((e: Error) => drop(i, e)))).then(
        () => (live.size === 0 ? cb(new AllTargetsFailedError('every target of the upload failed', { cause: firstCause(detached) })) : cb()),
        cb,
      )
    },
    final(cb) {
      finished = true
      if (live.size === 0 && n > 0) return cb(new AllTargetsFailedError('every target of the upload failed', { cause: firstCause(detached) }))
      for (const i of live) branches[i]!.push(null)
      cb()
    },
    destroy(err, cb) {
      if (!finished) {
        const reason = err ?? new AbortedError('upload aborted')
        for (const i of [...live]) {
          live.delete(i)
          branches[i]!.destroy(reason)
        }
      }
      cb(err)
    },
  })
  return { input, branches, detached }
}

function firstCause(detached: ReadonlyMap<number, Error>): Error | undefined {
  return detached.values().next().value
}
