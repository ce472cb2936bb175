// annex.diskreserve (spec §8): refuse to receive content that would leave less than
// the reserve free. git-annex subtracts the remaining bytes of other downloads in
// progress (it reads them from transfer info files); we can only see our own
// in-flight stores, so reservations live in a ledger shared by every DiskReserve of
// this process that points at the same filesystem.
import { stat, statfs } from 'node:fs/promises'
import { roughSize } from '../annex/data-units.js'
import { DiskFullError } from '../errors.js'

/** git-annex's default annex.diskreserve: 100 megabytes. */
export const DEFAULT_DISK_RESERVE = 100_000_000

/** The warning git-annex prints when annex.diskreserve refuses a transfer. */
export function needMoreDiskSpace(bytes: number): string {
  return `not enough free space, need ${roughSize(bytes)} more (use --force to override this check or adjust annex.diskreserve)`
}

/** Bytes promised to one in-flight transfer; shrinks as they land on disk. */
export interface Reservation {
  /** Bytes of this transfer not yet written. */
  readonly remaining: number
  /** `n` more bytes were written: they now show in the free space, not in the ledger. */
  consumed(n: number): void
  /** The transfer ended (committed or failed); idempotent. */
  release(): void
}

/**
 * Frees up to `need` bytes on the filesystem (a cache giving back what it holds on
 * loan); resolves with how many it freed. Called while a reservation is being decided,
 * so it must not itself reserve.
 */
export type Reclaimer = (need: number) => Promise<number>

class Ledger {
  readonly live = new Set<LiveReservation>()
  readonly reclaimers = new Set<Reclaimer>()
  // Checking free space and booking the reservation must not interleave with another
  // check on the same filesystem, or two stores could each see the same free bytes.
  private queue: Promise<unknown> = Promise.resolve()

  reserved(): number {
    let n = 0
    for (const r of this.live) n += r.remaining
    return n
  }

  serialize<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn)
    this.queue = run.catch(() => undefined)
    return run
  }
}

class LiveReservation implements Reservation {
  constructor(
    private readonly ledger: Ledger,
    public remaining: number,
  ) {}
  consumed(n: number): void {
    this.remaining = Math.max(0, this.remaining - n)
  }
  release(): void {
    this.ledger.live.delete(this)
    this.remaining = 0
  }
}

const ledgers = new Map<string, Ledger>()

export interface DiskReserveOptions {
  /** Free bytes available to us on the filesystem holding `dir` (statfs by default). */
  freeBytes?: (dir: string) => Promise<number>
}

async function statfsFree(dir: string): Promise<number> {
  const s = await statfs(dir)
  return Number(s.bavail) * Number(s.bsize)
}

/** Free-space check against a reserve, with live accounting of this process's transfers. */
export class DiskReserve {
  private readonly freeBytes: (dir: string) => Promise<number>

  constructor(
    /** A directory on the filesystem that receives the content (e.g. .git/annex). */
    readonly dir: string,
    /** Bytes that must stay free (annex.diskreserve). */
    readonly reserveBytes: number,
    opts: DiskReserveOptions = {},
  ) {
    if (!Number.isFinite(reserveBytes) || reserveBytes < 0) throw new RangeError(`invalid disk reserve ${reserveBytes}`)
    this.freeBytes = opts.freeBytes ?? statfsFree
  }

  /**
   * Books `bytes` that are about to be written, or throws DiskFullError with
   * git-annex's message when free space minus the reserve minus what other
   * in-flight transfers still need would not hold them.
   */
  async reserve(bytes: number): Promise<Reservation> {
    const r = await this.tryReserve(bytes)
    if ('need' in r) throw new DiskFullError(needMoreDiskSpace(r.need))
    return r
  }

  /**
   * Like reserve(), but a refusal is a value: `{ need }` bytes more would have to be
   * free. Before refusing, reclaimers on the same filesystem (caches) are asked to
   * give back what is missing, so content that must be stored wins over content
   * that is merely kept.
   */
  async tryReserve(bytes: number, opts: { reclaim?: boolean } = {}): Promise<Reservation | { readonly need: number }> {
    if (!Number.isFinite(bytes) || bytes < 0) throw new RangeError(`invalid reservation of ${bytes} bytes`)
    const ledger = await this.ledger()
    return ledger.serialize(async () => {
      const need = async () => bytes + this.reserveBytes + ledger.reserved() - (await this.freeBytes(this.dir))
      let short = await need()
      if (short > 0 && opts.reclaim !== false && ledger.reclaimers.size > 0) {
        let freed = 0
        for (const reclaim of ledger.reclaimers) {
          if (freed >= short) break
          freed += await reclaim(short - freed).catch(() => 0)
        }
        if (freed > 0) short = await need()
      }
      if (short > 0) return { need: short }
      const r = new LiveReservation(ledger, bytes)
      ledger.live.add(r)
      return r
    })
  }

  /** Registers a reclaimer for this filesystem; returns its removal. */
  async addReclaimer(reclaim: Reclaimer): Promise<() => void> {
    const ledger = await this.ledger()
    ledger.reclaimers.add(reclaim)
    return () => {
      ledger.reclaimers.delete(reclaim)
    }
  }

  private async ledger(): Promise<Ledger> {
    const id = String((await stat(this.dir)).dev)
    let l = ledgers.get(id)
    if (!l) ledgers.set(id, (l = new Ledger()))
    return l
  }
}
