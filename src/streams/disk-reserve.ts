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

class Ledger {
  readonly live = new Set<LiveReservation>()
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
    const ledger = await this.ledger()
    return ledger.serialize(async () => {
      const free = await this.freeBytes(this.dir)
      const need = bytes + this.reserveBytes + ledger.reserved() - free
      if (need > 0) throw new DiskFullError(needMoreDiskSpace(need))
      const r = new LiveReservation(ledger, bytes)
      ledger.live.add(r)
      return r
    })
  }

  private async ledger(): Promise<Ledger> {
    const id = String((await stat(this.dir)).dev)
    let l = ledgers.get(id)
    if (!l) ledgers.set(id, (l = new Ledger()))
    return l
  }
}
