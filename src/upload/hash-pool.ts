// A fixed set of hashing worker threads shared by every transfer of an upload run. Work is
// handed to the least busy worker; each worker hashes one request at a time, in order.
import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import type { HashAlgorithm, HasherKind } from '../keys/backend.js'
import type { HashReply, HashRequest } from './hash-worker.js'
import { HashError } from '../errors.js'

export interface Digest {
  readonly hex: string
  /** Bytes hashed. */
  readonly size: number
  /** The file's mtime when it was opened for hashing (0 for buffers). */
  readonly mtimeMs: number
}

interface Slot {
  readonly worker: Worker
  readonly pending: Map<number, { resolve: (d: Digest) => void; reject: (e: Error) => void }>
}

export class HashPool {
  private readonly slots: Slot[] = []
  private nextId = 1
  private closed = false

  /** `threads` defaults to the machine's parallelism, at least 1. */
  constructor(
    private readonly algorithm: HashAlgorithm,
    private readonly hasher: HasherKind = 'auto',
    private readonly threads = Math.max(1, availableParallelism()),
  ) {}

  /** Workers start on first use: a run of small files, hashed inline, never pays for them. */
  private start(): void {
    for (let i = 0; i < this.threads; i++) {
      const worker = new Worker(new URL('./hash-worker.js', import.meta.url))
      const slot: Slot = { worker, pending: new Map() }
      worker.on('message', (r: HashReply) => {
        const p = slot.pending.get(r.id)
        if (!p) return
        slot.pending.delete(r.id)
        if ('error' in r) p.reject(new HashError(r.error, r.code))
        else p.resolve({ hex: r.hex, size: r.size, mtimeMs: r.mtimeMs })
      })
      worker.on('error', (e) => this.failAll(slot, e))
      worker.on('exit', () => this.failAll(slot, new Error('hashing worker exited')))
      this.slots.push(slot)
    }
  }

  /** Reads and hashes the file at `path` in a worker. */
  hashFile(path: string): Promise<Digest> {
    return this.submit((id) => ({ id, algorithm: this.algorithm, hasher: this.hasher, path }))
  }

  /** Hashes bytes already read (copied to the worker). */
  hashBytes(data: Uint8Array): Promise<Digest> {
    return this.submit((id) => ({ id, algorithm: this.algorithm, hasher: this.hasher, data }))
  }

  async close(): Promise<void> {
    this.closed = true
    await Promise.all(this.slots.map((s) => s.worker.terminate()))
  }

  private submit(make: (id: number) => HashRequest): Promise<Digest> {
    if (this.closed) return Promise.reject(new Error('hash pool closed'))
    if (this.slots.length === 0) this.start()
    let slot = this.slots[0]!
    for (const s of this.slots) if (s.pending.size < slot.pending.size) slot = s
    const id = this.nextId++
    return new Promise<Digest>((resolve, reject) => {
      slot.pending.set(id, { resolve, reject })
      slot.worker.postMessage(make(id))
    })
  }

  private failAll(slot: Slot, e: Error): void {
    for (const p of slot.pending.values()) p.reject(e)
    slot.pending.clear()
  }
}
