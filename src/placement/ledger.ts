// The state a fleet of gateways shares about a set of nodes, and its rules, as a plain data
// structure on an explicit clock: reservations of uploads in flight (with leases, so a dead
// gateway's holds expire), content holds (lockcontent) and remove exclusions, a version per
// node that moves whenever anything a placement decision reads about it changes, and the
// location facts gateways publish for each other. One process uses it directly (in-process
// coordination); the Redis coordinator implements the same rules in Lua, checked against
// this one by test/placement/redis-ledger.test.ts; the simulator drives it with a simulated
// clock.

/** A location change one gateway made, for the others (key serialized). */
export interface LocationFact {
  readonly key: string
  readonly uuid: string
  readonly present: boolean
  /** The key's size (0 when unsized): what it adds to or takes from the repository. */
  readonly size: number
}

export interface ReservationRecord {
  readonly id: string
  /** The gateway (process) that made it; only it renews the lease. */
  readonly owner: string
  readonly nodes: readonly string[]
  readonly size: number
  readonly key: string
  expires: number
}

/** A reservation as a decision sees it. */
export interface ReservationView {
  readonly key: string
  readonly nodes: readonly string[]
  readonly size: number
}

export interface LedgerView {
  /** Live reservations on any of the nodes asked about. */
  readonly reservations: ReservationView[]
  /** Version per node asked about: a reservation checked against these succeeds only if none moved. */
  readonly versions: Map<string, number>
  /** Facts published after `since`, oldest first, with their sequence numbers. */
  readonly facts: Array<{ seq: number; fact: LocationFact }>
  /** The sequence number to ask from next time. */
  readonly cursor: number
}

/**
 * Bytes reserved per node, leaving out each node an upload has already logged its copy on
 * (`counted`: the committed sizes include it), so that an upload between its record and its
 * release is counted once, not twice. A key is counted once per node however many uploads of
 * it are in flight there: a node stores one copy of a key, so two clients sending the same
 * file can add its size only once. (Counted once per upload, a drop of the key between one
 * upload's record and its release made every such reservation count again: a node held
 * more than any upload could ever put on it, and a key sent twice took twice its room.)
 */
export function reservedBytes(reservations: readonly ReservationView[], counted: (key: string, node: string) => boolean): Map<string, number> {
  const out = new Map<string, number>()
  const seen = new Set<string>()
  for (const r of reservations)
    for (const n of r.nodes) {
      const slot = `${n}\0${r.key}`
      if (seen.has(slot) || counted(r.key, n)) continue
      seen.add(slot)
      out.set(n, (out.get(n) ?? 0) + r.size)
    }
  return out
}

export type ExcludeResult = 'ok' | 'locked'

export interface MemoryLedgerOptions {
  /** Facts kept for gateways that have not read them yet (oldest dropped first). */
  readonly maxFacts?: number
}

export class MemoryLedger {
  private readonly reservations = new Map<string, ReservationRecord>()
  private readonly versionOf = new Map<string, number>()
  /** node+key → holder id → expiry. */
  private readonly holds = new Map<string, Map<string, number>>()
  /** node+key → remover id → expiry (removes in progress; several may run at once). */
  private readonly exclusions = new Map<string, Map<string, number>>()
  private readonly factLog: Array<{ seq: number; fact: LocationFact }> = []
  private nextSeq = 1
  private readonly maxFacts: number

  constructor(opts: MemoryLedgerOptions = {}) {
    this.maxFacts = opts.maxFacts ?? 100_000
  }

  private bump(node: string): void {
    this.versionOf.set(node, (this.versionOf.get(node) ?? 0) + 1)
  }

  /** Drops reservations whose lease ran out (their nodes' versions move). */
  purge(now: number): void {
    for (const r of [...this.reservations.values()]) if (r.expires <= now) this.drop(r)
  }

  private drop(r: ReservationRecord): void {
    this.reservations.delete(r.id)
    for (const n of r.nodes) this.bump(n)
  }

  view(nodes: readonly string[], since: number, now: number): LedgerView {
    this.purge(now)
    const want = new Set(nodes)
    const reservations: ReservationView[] = []
    for (const r of this.reservations.values()) if (r.nodes.some((n) => want.has(n))) reservations.push({ key: r.key, nodes: [...r.nodes], size: r.size })
    const versions = new Map(nodes.map((n) => [n, this.versionOf.get(n) ?? 0]))
    const facts = this.factLog.filter((f) => f.seq > since)
    return { reservations, versions, facts, cursor: this.nextSeq - 1 }
  }

  /**
   * Adds `rec` if no node in `versions` moved since they were read (compare-and-set), and
   * moves the versions of the nodes it reserves on. False: decide again on a fresh view.
   */
  tryReserve(rec: Omit<ReservationRecord, 'expires'>, leaseMs: number, versions: ReadonlyMap<string, number>, now: number): boolean {
    this.purge(now)
    for (const [n, v] of versions) if ((this.versionOf.get(n) ?? 0) !== v) return false
    if (this.reservations.has(rec.id)) return false
    this.reservations.set(rec.id, { ...rec, nodes: [...rec.nodes], expires: now + leaseMs })
    for (const n of rec.nodes) this.bump(n)
    return true
  }

  /** Extends the leases of `owner`'s reservations among `ids`; returns the ids that are gone. */
  renew(owner: string, ids: readonly string[], leaseMs: number, now: number): string[] {
    this.purge(now)
    const lost: string[] = []
    for (const id of ids) {
      const r = this.reservations.get(id)
      if (!r || r.owner !== owner) lost.push(id)
      else r.expires = now + leaseMs
    }
    return lost
  }

  /**
   * Ends a reservation and publishes what the upload changed, as one step: the bytes move
   * from reserved to the facts (committed) without a moment where neither counts them.
   */
  release(id: string, facts: readonly LocationFact[], now: number): void {
    this.purge(now)
    this.publish(facts)
    const r = this.reservations.get(id)
    if (r) this.drop(r)
  }

  publish(facts: readonly LocationFact[]): void {
    for (const fact of facts) {
      this.factLog.push({ seq: this.nextSeq++, fact })
      this.bump(fact.uuid)
    }
    if (this.factLog.length > this.maxFacts) this.factLog.splice(0, this.factLog.length - this.maxFacts)
  }

  /** Live reservations (for checks and diagnostics). */
  live(now: number): ReservationRecord[] {
    this.purge(now)
    return [...this.reservations.values()]
  }

  // -------------------------------------------------------------------------------------
  // Locks: a hold keeps content from being removed; a remove excludes new holds meanwhile.

  private static alive(table: Map<string, Map<string, number>>, slot: string, now: number): Map<string, number> | undefined {
    const h = table.get(slot)
    if (!h) return undefined
    for (const [id, exp] of h) if (exp <= now) h.delete(id)
    if (h.size === 0) {
      table.delete(slot)
      return undefined
    }
    return h
  }

  private static add(table: Map<string, Map<string, number>>, slot: string, id: string, expires: number): void {
    let h = table.get(slot)
    if (!h) table.set(slot, (h = new Map()))
    h.set(id, expires)
  }

  private static remove(table: Map<string, Map<string, number>>, slot: string, id: string): void {
    const h = table.get(slot)
    h?.delete(id)
    if (h?.size === 0) table.delete(slot)
  }

  /** Takes (or renews) hold `id` on node+key unless a remove of it is in progress. */
  hold(node: string, key: string, id: string, leaseMs: number, now: number): boolean {
    const slot = `${node}\0${key}`
    if (MemoryLedger.alive(this.exclusions, slot, now)) return false
    MemoryLedger.alive(this.holds, slot, now)
    MemoryLedger.add(this.holds, slot, id, now + leaseMs)
    return true
  }

  /** Renews a hold that is still there (false when it lapsed). */
  renewHold(node: string, key: string, id: string, leaseMs: number, now: number): boolean {
    const h = MemoryLedger.alive(this.holds, `${node}\0${key}`, now)
    if (!h?.has(id)) return false
    h.set(id, now + leaseMs)
    return true
  }

  unhold(node: string, key: string, id: string): void {
    MemoryLedger.remove(this.holds, `${node}\0${key}`, id)
  }

  /** Starts remove `id` of node+key: refused ('locked') while the content is held. */
  exclude(node: string, key: string, id: string, leaseMs: number, now: number): ExcludeResult {
    const slot = `${node}\0${key}`
    if (MemoryLedger.alive(this.holds, slot, now)) return 'locked'
    MemoryLedger.alive(this.exclusions, slot, now)
    MemoryLedger.add(this.exclusions, slot, id, now + leaseMs)
    return 'ok'
  }

  /** Renews a remove's exclusion (false when it lapsed). */
  renewExclusion(node: string, key: string, id: string, leaseMs: number, now: number): boolean {
    const h = MemoryLedger.alive(this.exclusions, `${node}\0${key}`, now)
    if (!h?.has(id)) return false
    h.set(id, now + leaseMs)
    return true
  }

  unexclude(node: string, key: string, id: string): void {
    MemoryLedger.remove(this.exclusions, `${node}\0${key}`, id)
  }

  isHeld(node: string, key: string, now: number): boolean {
    return MemoryLedger.alive(this.holds, `${node}\0${key}`, now) !== undefined
  }
}
