// How a gateway shares placement state: in its own process (one gateway), or in Redis for a
// fleet of gateways over the same nodes (redis-coordinator.ts). Both keep the rules of
// ledger.ts: decide-and-reserve as one step, reservations and holds on leases, location
// facts published with the release of the reservation that produced them.
import { randomUUID } from 'node:crypto'
import { LockedError } from '../errors.js'
import type { Uuid } from '../remotes/remote.js'
import { type LocationFact, MemoryLedger, type ReservationView } from './ledger.js'

export interface PlaceRequest<T> {
  /** The nodes the decision reads (their reservations), e.g. a cluster's members. */
  readonly nodes: readonly Uuid[]
  /** The key, serialized (for diagnostics and the fleet's records). */
  readonly key: string
  /**
   * Whether the decision depends on reservations (a node has a maxsize). When not, a fleet
   * decides without asking the shared state, so an unavailable Redis does not stop it.
   */
  readonly shared: boolean
  /**
   * Brings what the gateway knows locally up to date (repository sizes, the key's
   * locations). Runs after the shared view was read, so nothing committed before the view
   * is missed: a release publishes its facts before it lets go of its bytes.
   */
  prepare(): Promise<void>
  /**
   * The decision, pure and synchronous, on the reservations of uploads in flight right now
   * (see reservedBytes for counting them).
   */
  decide(reservations: readonly ReservationView[]): Decided<T>
}

export interface Decided<T> {
  readonly value: T
  /** Nodes to reserve `size` bytes on until the upload ends. */
  readonly reserve: readonly Uuid[]
  readonly size: number
}

export interface Reservation {
  /** Ends the reservation; `facts` (what the upload stored) are published in the same step. Idempotent. */
  release(facts?: readonly LocationFact[]): Promise<void>
}

export interface Hold {
  release(): Promise<void>
}

export interface Exclusion {
  release(): Promise<void>
}

export interface Coordinator {
  /** True when state is shared with other gateways (Redis). */
  readonly fleet: boolean
  place<T>(req: PlaceRequest<T>): Promise<{ value: T; reservation: Reservation }>
  /** Location changes made outside an upload's release (removes, single-node stores). */
  publish(facts: readonly LocationFact[]): Promise<void>
  /** Holds content on a node against removal by any gateway; undefined while a remove of it runs. */
  hold(node: Uuid, key: string): Promise<Hold | undefined>
  /** Excludes holds while removing content from a node; LockedError while it is held. */
  exclude(node: Uuid, key: string): Promise<Exclusion>
  /** Where location facts from other gateways go (a fleet only); returns the unsubscribe. */
  subscribe?(sink: (facts: readonly LocationFact[]) => Promise<void>): () => void
  close(): Promise<void>
}

export interface LocalCoordinatorOptions {
  /** Milliseconds; only a stalled process's own work can outlive it here. Default 10 min. */
  readonly leaseMs?: number
  readonly now?: () => number
}

/** Nothing reserved: releasing it does nothing. */
export const NO_RESERVATION: Reservation = { release: async () => {} }

/**
 * One gateway process: the ledger lives in memory. `prepare` is awaited, then the decision
 * (on the reservations live now and those released during prepare) and its reservation
 * happen in one synchronous step, so concurrent uploads always see each other's.
 */
export class LocalCoordinator implements Coordinator {
  readonly fleet = false
  readonly ledger = new MemoryLedger({ maxFacts: 0 })
  private readonly owner = randomUUID()
  private readonly leaseMs: number
  private readonly now: () => number
  private readonly live = new Set<string>()
  private readonly timer: NodeJS.Timeout
  /** Releases so far, and the ones made while some decision was in its prepare step. */
  private releases = 0
  private readonly released: Array<{ seq: number; r: ReservationView }> = []
  /** Decisions in their prepare step, by the release count they started at. */
  private readonly preparing = new Map<number, number>()

  constructor(opts: LocalCoordinatorOptions = {}) {
    this.leaseMs = opts.leaseMs ?? 600_000
    this.now = opts.now ?? Date.now
    // Operations of this process end by themselves (their finally releases); the renewal
    // only keeps a legitimately long upload's bytes counted past one lease.
    this.timer = setInterval(() => this.ledger.renew(this.owner, [...this.live], this.leaseMs, this.now()), this.leaseMs / 3)
    this.timer.unref()
  }

  async place<T>(req: PlaceRequest<T>): Promise<{ value: T; reservation: Reservation }> {
    // An upload records its copy before it releases its reservation; so a decision must
    // count every reservation that was live at any moment of its prepare step (unless what
    // prepare read shows it logged): released during the read, its bytes may be in neither
    // the read nor the reservations left. (Reading the reservations after prepare only,
    // -J8 uploads through one gateway overfilled a node by a file under load.) The Redis
    // coordinator gets the same by comparing versions and deciding again; in one process
    // the reservations released meanwhile are simply kept until the decision.
    const since = this.releases
    this.preparing.set(since, (this.preparing.get(since) ?? 0) + 1)
    let d: Decided<T>
    let versions: ReadonlyMap<string, number>
    try {
      await req.prepare()
      const view = this.ledger.view(req.nodes, 0, this.now())
      const want = new Set<string>(req.nodes)
      const released = this.released.filter((e) => e.seq > since && e.r.nodes.some((n) => want.has(n))).map((e) => e.r)
      // An upload that failed during the read is counted for this one decision, which can
      // only refuse, never overfill. reservedBytes counts a key once per node.
      d = req.decide([...view.reservations, ...released])
      versions = view.versions
    } finally {
      this.endPrepare(since)
    }
    if (d.reserve.length === 0 || d.size <= 0) return { value: d.value, reservation: NO_RESERVATION }
    const id = randomUUID()
    const rec = { id, owner: this.owner, nodes: [...d.reserve], size: d.size, key: req.key }
    const ok = this.ledger.tryReserve(rec, this.leaseMs, versions, this.now())
    // Nothing ran between the view and here: the versions cannot have moved.
    if (!ok) throw new Error('placement ledger changed during a synchronous step')
    this.live.add(id)
    let done = false
    return {
      value: d.value,
      reservation: {
        release: async (facts = []) => {
          if (done) return
          done = true
          this.live.delete(id)
          this.releases++
          if (this.preparing.size > 0) this.released.push({ seq: this.releases, r: { key: rec.key, nodes: rec.nodes, size: rec.size } })
          this.ledger.release(id, facts, this.now())
        },
      },
    }
  }

  /** Forgets released reservations no decision still in its prepare step needs. */
  private endPrepare(since: number): void {
    const n = (this.preparing.get(since) ?? 1) - 1
    if (n > 0) this.preparing.set(since, n)
    else this.preparing.delete(since)
    const oldest = Math.min(...this.preparing.keys())
    let drop = 0
    while (drop < this.released.length && this.released[drop]!.seq <= oldest) drop++
    if (this.preparing.size === 0) this.released.length = 0
    else if (drop > 0) this.released.splice(0, drop)
  }

  async publish(_facts: readonly LocationFact[]): Promise<void> {}

  async hold(node: Uuid, key: string): Promise<Hold | undefined> {
    const id = randomUUID()
    if (!this.ledger.hold(node, key, id, Number.MAX_SAFE_INTEGER / 2, this.now())) return undefined
    return { release: async () => this.ledger.unhold(node, key, id) }
  }

  async exclude(node: Uuid, key: string): Promise<Exclusion> {
    const id = randomUUID()
    if (this.ledger.exclude(node, key, id, Number.MAX_SAFE_INTEGER / 2, this.now()) === 'locked') throw new LockedError('content is locked')
    return { release: async () => this.ledger.unexclude(node, key, id) }
  }

  async close(): Promise<void> {
    clearInterval(this.timer)
  }
}
