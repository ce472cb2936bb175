// annex.diskreserve (spec §8): refuse to receive content that would leave less than
// the reserve free. git-annex subtracts the remaining bytes of other downloads in
// progress (it reads them from transfer info files); we can only see our own
// in-flight stores, so reservations live in a ledger shared by every DiskReserve of
// this process that points at the same filesystem.
import { stat, statfs } from 'node:fs/promises'
import { DiskFullError } from '../errors.js'

/** git-annex's default annex.diskreserve: 100 megabytes. */
export const DEFAULT_DISK_RESERVE = 100_000_000

interface Unit {
  readonly size: number
  readonly abbrev: string
  readonly name: string
}

const p10 = (n: number) => 1000 ** n
const p2 = (n: number) => 2 ** (10 * n)

// Utility/DataUnits.hs: storage units are powers of ten, "committee" units powers of
// two, bandwidth units bits. The lookup order matters ("mb" is a megabyte, not a
// megabit), so the lists keep git-annex's order.
const STORAGE: readonly Unit[] = [
  { size: p10(10), abbrev: 'QB', name: 'quettabyte' },
  { size: p10(9), abbrev: 'RB', name: 'ronnabyte' },
  { size: p10(8), abbrev: 'YB', name: 'yottabyte' },
  { size: p10(7), abbrev: 'ZB', name: 'zettabyte' },
  { size: p10(6), abbrev: 'EB', name: 'exabyte' },
  { size: p10(5), abbrev: 'PB', name: 'petabyte' },
  { size: p10(4), abbrev: 'TB', name: 'terabyte' },
  { size: p10(3), abbrev: 'GB', name: 'gigabyte' },
  { size: p10(2), abbrev: 'MB', name: 'megabyte' },
  { size: p10(1), abbrev: 'kB', name: 'kilobyte' },
  { size: 1, abbrev: 'B', name: 'byte' },
]
const COMMITTEE: readonly Unit[] = [
  { size: p2(8), abbrev: 'YiB', name: 'yobibyte' },
  { size: p2(7), abbrev: 'ZiB', name: 'zebibyte' },
  { size: p2(6), abbrev: 'EiB', name: 'exbibyte' },
  { size: p2(5), abbrev: 'PiB', name: 'pebibyte' },
  { size: p2(4), abbrev: 'TiB', name: 'tebibyte' },
  { size: p2(3), abbrev: 'GiB', name: 'gibibyte' },
  { size: p2(2), abbrev: 'MiB', name: 'mebibyte' },
  { size: p2(1), abbrev: 'KiB', name: 'kibibyte' },
  { size: 1, abbrev: 'B', name: 'byte' },
]
const BANDWIDTH: readonly Unit[] = [
  { size: p10(8) / 8, abbrev: 'Ybit', name: 'yottabit' },
  { size: p10(7) / 8, abbrev: 'Zbit', name: 'zettabit' },
  { size: p10(6) / 8, abbrev: 'Ebit', name: 'exabit' },
  { size: p10(5) / 8, abbrev: 'Pbit', name: 'petabit' },
  { size: p10(4) / 8, abbrev: 'Tbit', name: 'terabit' },
  { size: p10(3) / 8, abbrev: 'Gbit', name: 'gigabit' },
  { size: p10(2) / 8, abbrev: 'Mbit', name: 'megabit' },
  { size: p10(1) / 8, abbrev: 'kbit', name: 'kilobit' },
]
const DATA_UNITS: readonly Unit[] = [...STORAGE, ...COMMITTEE, ...BANDWIDTH]

// Haskell's `reads :: Double`: digits, an optional fraction that needs digits on both
// sides of the dot, an optional exponent.
const NUMBER = /^\s*(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)/

/**
 * Parses a data size the way git-annex's readSize does ("100 megabytes", "1GB",
 * "1 GiB", "0.5tb", "512"): units are case-insensitive, a bare number is bytes,
 * anything after the unit word is ignored. Undefined when git-annex would not
 * parse it either (it then falls back to the default).
 */
export function parseDataSize(input: string): number | undefined {
  const m = NUMBER.exec(input)
  if (!m) return undefined
  const n = Number(m[1])
  const unit = /^[A-Za-z]*/.exec(input.slice(m[0].length).trimStart())![0].toLowerCase()
  if (unit === '') return Math.round(n)
  const u = DATA_UNITS.find(
    (x) =>
      x.abbrev.toLowerCase() === unit ||
      x.name === unit ||
      `${x.name}s` === unit ||
      x.abbrev.toLowerCase() === `${unit}b`,
  )
  return u ? Math.round(n * u.size) : undefined
}

// Utility/HumanNumber.hs showImprecise: at most `precision` decimals, trailing zeros dropped.
function showImprecise(precision: number, v: number): string {
  let int = Math.trunc(v)
  let rem = Math.round((v - int) * 10 ** precision)
  if (rem === 10 ** precision) {
    int += 1
    rem = 0
  }
  if (rem === 0) return String(int)
  return `${int}.${String(rem).padStart(precision, '0').replace(/0+$/, '')}`
}

/** git-annex's `roughSize storageUnits True`: "1.23 MB", "100 kB", "7 B". */
export function roughSize(bytes: number): string {
  if (bytes < 0) return `-${roughSize(-bytes)}`
  const u = STORAGE.find((x) => bytes >= x.size) ?? STORAGE[STORAGE.length - 1]!
  return `${showImprecise(2, bytes / u.size)} ${u.abbrev}`
}

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
