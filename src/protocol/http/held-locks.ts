// Content locks held for HTTP clients between lockcontent and keeplocked (spec §2.6),
// at most `max` at once (--lockedfiles). The bound counts locks being acquired as well
// as held ones: checking only held locks lets a concurrent flood past it.
import { randomUUID } from 'node:crypto'
import type { Lock } from '../../remotes/remote.js'

interface Entry {
  readonly lock: Lock
  timer: NodeJS.Timeout | undefined
}

/** A lock kept by a keeplocked request: its expiry is off until release(). */
export interface KeptLock {
  /** Releases the lock once; later calls do nothing. */
  release(): Promise<void>
}

export class HeldLocks {
  private readonly held = new Map<string, Entry>()
  private acquiring = 0

  constructor(
    private readonly max: number,
    /** A lock nobody keeps is released after this long. */
    private readonly expiryMs: number,
  ) {}

  get size(): number {
    return this.held.size
  }

  /**
   * Runs `take` if fewer than `max` locks are held or being taken, and holds what it
   * gives under a fresh lock id. Undefined when refused, when `take` gives no lock, or
   * when `signal` fired meanwhile (the asker is gone: the lock is let go at once).
   */
  async acquire(take: () => Promise<Lock | undefined>, signal: AbortSignal): Promise<string | undefined> {
    if (this.held.size + this.acquiring >= this.max) return undefined
    this.acquiring++
    let lock: Lock | undefined
    try {
      lock = await take()
    } finally {
      this.acquiring--
    }
    if (!lock) return undefined
    if (signal.aborted) {
      await lock.release().catch(() => {})
      return undefined
    }
    const id = randomUUID()
    const entry: Entry = { lock, timer: undefined }
    entry.timer = setTimeout(() => void this.drop(id, entry), this.expiryMs)
    entry.timer.unref()
    this.held.set(id, entry)
    return id
  }

  /** Stops the expiry of lock `id` for a keeplocked request; undefined for unknown ids. */
  keep(id: string): KeptLock | undefined {
    const entry = this.held.get(id)
    if (!entry) return undefined
    if (entry.timer) clearTimeout(entry.timer)
    entry.timer = undefined
    return { release: () => this.drop(id, entry) }
  }

  async releaseAll(): Promise<void> {
    await Promise.all([...this.held].map(([id, entry]) => this.drop(id, entry)))
  }

  private async drop(id: string, entry: Entry): Promise<void> {
    if (this.held.get(id) !== entry) return
    this.held.delete(id)
    if (entry.timer) clearTimeout(entry.timer)
    entry.timer = undefined
    await entry.lock.release().catch(() => {})
  }
}
