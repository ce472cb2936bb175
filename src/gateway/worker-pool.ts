// Bounds concurrent work on repositories (p2phttp's --jobs): what costs CPU, processes
// or file handles. Waiting on a peer is not work and never holds a slot (plugin.ts).
// Requests beyond the limit queue up to a bound and a wait time; past either they are
// refused at once (503) rather than left hanging, which is how the reference wedges
// (transcripts/08).
import { OverloadedError } from '../errors.js'

export interface WorkerPoolOptions {
  readonly concurrency: number
  readonly maxQueue: number
  readonly maxWaitMs: number
}

export class WorkerPool {
  private active = 0
  private readonly waiting: Array<{ start: () => void; fail: (e: Error) => void }> = []

  constructor(private readonly opts: WorkerPoolOptions) {}

  get inFlight(): number {
    return this.active
  }

  /** Requests waiting for a worker. */
  get queued(): number {
    return this.waiting.length
  }

  async run<T>(signal: AbortSignal, work: () => Promise<T>): Promise<T> {
    await this.acquire(signal)
    try {
      return await work()
    } finally {
      this.release()
    }
  }

  private acquire(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'))
    if (this.active < this.opts.concurrency) {
      this.active++
      return Promise.resolve()
    }
    if (this.waiting.length >= this.opts.maxQueue) {
      return Promise.reject(new OverloadedError('too many connections'))
    }
    return new Promise<void>((resolve, reject) => {
      const entry = {
        start: () => {
          cleanup()
          this.active++
          resolve()
        },
        fail: (e: Error) => {
          cleanup()
          reject(e)
        },
      }
      const drop = () => {
        const i = this.waiting.indexOf(entry)
        if (i >= 0) this.waiting.splice(i, 1)
      }
      const timer = setTimeout(() => {
        drop()
        entry.fail(new OverloadedError('too many connections: timed out waiting for a free worker'))
      }, this.opts.maxWaitMs)
      const onAbort = () => {
        drop()
        entry.fail(signal.reason instanceof Error ? signal.reason : new Error('aborted'))
      }
      const cleanup = () => {
        clearTimeout(timer)
        signal.removeEventListener('abort', onAbort)
      }
      signal.addEventListener('abort', onAbort, { once: true })
      this.waiting.push(entry)
    })
  }

  private release(): void {
    this.active--
    const next = this.waiting.shift()
    if (next) next.start()
  }
}

/**
 * A WorkerPool per served repository, as p2phttp's -J is per repository: requests to a
 * proxied remote or cluster whose node is slow hold the workers of that repository
 * only, not those every other one needs. A pool lives while it has work.
 */
export class WorkerPools {
  private readonly pools = new Map<string, WorkerPool>()

  constructor(private readonly opts: WorkerPoolOptions) {}

  /** Work running, over every repository. */
  get inFlight(): number {
    let n = 0
    for (const p of this.pools.values()) n += p.inFlight
    return n
  }

  /** Work waiting for a worker, over every repository. */
  get queued(): number {
    let n = 0
    for (const p of this.pools.values()) n += p.queued
    return n
  }

  async run<T>(repo: string, signal: AbortSignal, work: () => Promise<T>): Promise<T> {
    let pool = this.pools.get(repo)
    if (!pool) {
      pool = new WorkerPool(this.opts)
      this.pools.set(repo, pool)
    }
    try {
      return await pool.run(signal, work)
    } finally {
      if (pool.inFlight === 0 && pool.queued === 0 && this.pools.get(repo) === pool) this.pools.delete(repo)
    }
  }
}
