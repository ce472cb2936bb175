// A fleet of gateways placing uploads on a cluster, on a simulated clock, driven step by
// step by a list of actions (the property tests generate them). It runs the server's own
// pieces: decidePlacement (decide.ts) for every decision and MemoryLedger (ledger.ts) for
// reservations, leases and location facts, with the fleet protocol of the Redis
// coordinator: read the shared view, bring local state up to date, decide, then reserve
// only if nothing read moved (else start over). Every step of every upload is a separate
// action, so any interleaving of uploads, failures, client aborts, drops, maxsize changes,
// node additions and gateway crashes can be generated, and the invariants are checked after
// each one.
import { parseKey, serializeKey, type Key } from '../keys/key.js'
import { asUuid, type Uuid } from '../remotes/remote.js'
import { decidePlacement, hasRoom, liveSizes, type PlacementDecision, type PlacementPolicy } from './decide.js'
import { MemoryLedger, reservedBytes, type ReservationView } from './ledger.js'
import { InvariantViolation } from '../errors.js'

export interface SimNode {
  /** undefined: no maxsize. */
  readonly maxSize: number | undefined
}

export interface SimConfig {
  readonly nodes: readonly SimNode[]
  /** Preferred content of every node, group `g` being all nodes (e.g. `sizebalanced=g:1`). */
  readonly expression: string
  /**
   * For the copies invariant: the expression is balanced=g:N or sizebalanced=g:N with this
   * rule and N (a key then gets N copies, or as many as nodes with room allow); undefined:
   * not checked.
   */
  readonly copies?: { readonly rule: 'balanced' | 'sizebalanced'; readonly n: number }
  readonly gateways: number
  /** Sizes of the keys uploads pick from (undefined: an unsized key). */
  readonly keySizes: ReadonlyArray<number | undefined>
  readonly leaseMs: number
  /**
   * Gateways decide and reserve in one step (one process, LocalCoordinator) instead of
   * the fleet's read-decide-compare-and-set.
   */
  readonly atomic?: boolean
}

export type Outcome = 'stored' | 'partial' | 'failed' | 'aborted'

export type SimAction =
  | { readonly t: 'upload'; readonly key: number; readonly gw: number; readonly outcome: Outcome; readonly failMask: number }
  /** Advance the `pick`-th upload in flight (mod their number) by one step. */
  | { readonly t: 'step'; readonly pick: number }
  | { readonly t: 'drop'; readonly key: number; readonly node: number }
  | { readonly t: 'maxsize'; readonly node: number; readonly value: number | undefined }
  | { readonly t: 'addnode'; readonly maxSize: number | undefined }
  | { readonly t: 'crash'; readonly gw: number }
  | { readonly t: 'restart'; readonly gw: number }
  /** Time passes (at most a third of the lease: live gateways renew in between). */
  | { readonly t: 'tick'; readonly ms: number }

type Phase = 'view' | 'prepare' | 'reserve' | 'transfer' | 'record' | 'release'

interface Upload {
  readonly id: number
  readonly key: Key
  readonly gw: number
  readonly owner: string
  readonly outcome: Outcome
  readonly failMask: number
  phase: Phase
  versions?: Map<string, number>
  reservations?: ReservationView[]
  locations?: Set<string>
  committed?: Map<string, number>
  /** The location log as read by the prepare step. */
  logged?: Map<string, Set<string>>
  decision?: PlacementDecision
  reservation?: string
  retries: number
  /** Copies the key can get by the copies rule, as of its decision. */
  able?: number
}

interface Gateway {
  alive: boolean
  owner: string
  crashedAt?: number
}

export interface SimStats {
  steps: number
  decisions: number
  refusedFull: number
  retries: number
  stored: number
  maxOverfill: number
}

export class Simulation {
  now = 0
  readonly ledger = new MemoryLedger()
  private readonly nodes: Array<{ uuid: Uuid; maxSize: number | undefined; allowance: number }> = []
  /** The location log as every gateway sees it once it has read the fleet's facts. */
  private readonly logged = new Map<string, Set<string>>()
  private readonly keys: Key[]
  private readonly gateways: Gateway[] = []
  private readonly inFlight: Upload[] = []
  /** Uploads of crashed gateways, frozen where they were (their reservations count until the lease ends). */
  private readonly zombies: Upload[] = []
  private nextUpload = 0
  private generation = 0
  readonly stats: SimStats = { steps: 0, decisions: 0, refusedFull: 0, retries: 0, stored: 0, maxOverfill: 0 }

  constructor(readonly config: SimConfig) {
    config.nodes.forEach((n) => this.addNode(n.maxSize))
    this.keys = config.keySizes.map((s, i) => parseKey(`WORM${s === undefined ? '' : `-s${s}`}--k${i}`))
    for (let g = 0; g < config.gateways; g++) this.gateways.push({ alive: true, owner: this.ownerName(g) })
  }

  private ownerName(g: number): string {
    return `gw${g}.${this.generation++}`
  }

  private addNode(maxSize: number | undefined): void {
    const i = this.nodes.length
    const uuid = asUuid(`00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`)
    this.nodes.push({ uuid, maxSize, allowance: Infinity })
    this.nodes[i]!.allowance = this.capOf(i)
  }

  private capOf(i: number): number {
    return this.nodes[i]!.maxSize ?? Infinity
  }

  policy(): PlacementPolicy {
    const all = new Set(['g'])
    const maxSize = new Map<string, number>()
    for (const n of this.nodes) if (n.maxSize !== undefined) maxSize.set(n.uuid, n.maxSize)
    return {
      preferredContent: new Map(this.nodes.map((n) => [n.uuid, this.config.expression])),
      requiredContent: new Map(),
      groups: new Map(this.nodes.map((n) => [n.uuid, all])),
      groupPreferredContent: new Map(),
      trust: new Map(),
      maxSize,
    }
  }

  /** Bytes each node holds by the location log, as git-annex counts them (unsized keys 0). */
  committed(): Map<string, number> {
    const out = new Map<string, number>()
    for (const k of this.keys) {
      const at = this.logged.get(serializeKey(k))
      if (at) for (const u of at) out.set(u, (out.get(u) ?? 0) + (k.size ?? 0))
    }
    return out
  }

  locationsOf(key: Key): Set<string> {
    return new Set(this.logged.get(serializeKey(key)) ?? [])
  }

  nodeUuids(): Uuid[] {
    return this.nodes.map((n) => n.uuid)
  }

  /** Whether the location log counts `key` on `node` (so its reservation there is not counted again). */
  private counted(key: string, node: string): boolean {
    return this.logged.get(key)?.has(node) ?? false
  }

  /** committed + reserved per node, each upload's bytes counted once (reservedBytes). */
  usage(): Map<string, number> {
    const v = this.ledger.view(this.nodeUuids(), 0, this.now)
    return liveSizes(this.committed(), reservedBytes(v.reservations, (k, n) => this.counted(k, n)))
  }

  apply(a: SimAction): void {
    this.stats.steps++
    switch (a.t) {
      case 'upload': {
        const gw = a.gw % this.gateways.length
        if (!this.gateways[gw]!.alive || this.keys.length === 0) break
        const u: Upload = {
          id: this.nextUpload++,
          key: this.keys[a.key % this.keys.length]!,
          gw,
          owner: this.gateways[gw]!.owner,
          outcome: a.outcome,
          failMask: a.failMask,
          phase: 'view',
          retries: 0,
        }
        this.inFlight.push(u)
        this.advance(u)
        break
      }
      case 'step': {
        if (this.inFlight.length > 0) this.advance(this.inFlight[a.pick % this.inFlight.length]!)
        break
      }
      case 'drop': {
        const key = this.keys[a.key % this.keys.length]!
        const node = this.nodes[a.node % this.nodes.length]!.uuid
        const at = this.logged.get(serializeKey(key))
        if (at?.delete(node)) this.ledger.publish([{ key: serializeKey(key), uuid: node, present: false, size: key.size ?? 0 }])
        break
      }
      case 'maxsize': {
        const i = a.node % this.nodes.length
        this.nodes[i]!.maxSize = a.value
        // An operator may shrink a node below what it holds: from then on it may only shrink.
        this.nodes[i]!.allowance = Math.max(this.capOf(i), this.usage().get(this.nodes[i]!.uuid) ?? 0)
        break
      }
      case 'addnode':
        this.addNode(a.maxSize)
        break
      case 'crash': {
        const g = this.gateways[a.gw % this.gateways.length]!
        if (!g.alive) break
        g.alive = false
        g.crashedAt = this.now
        // Its uploads stop wherever they were: no release, no record after this.
        for (let i = this.inFlight.length - 1; i >= 0; i--) if (this.inFlight[i]!.owner === g.owner) this.zombies.push(...this.inFlight.splice(i, 1))
        break
      }
      case 'restart': {
        const gi = a.gw % this.gateways.length
        const g = this.gateways[gi]!
        if (g.alive) break
        g.alive = true
        g.owner = this.ownerName(gi)
        break
      }
      case 'tick': {
        this.now += Math.max(1, Math.min(a.ms, Math.floor(this.config.leaseMs / 3)))
        for (const g of this.gateways) {
          if (!g.alive) continue
          const mine = this.inFlight.filter((u) => u.owner === g.owner && u.reservation !== undefined).map((u) => u.reservation!)
          const lost = this.ledger.renew(g.owner, mine, this.config.leaseMs, this.now)
          if (lost.length > 0) throw new InvariantViolation(`t=${this.now}: live gateway ${g.owner} lost reservations ${lost.join(',')}`)
        }
        break
      }
    }
    this.check()
  }

  private decide(u: Upload, reservations: readonly ReservationView[]): PlacementDecision {
    // As the gateway does: its prepare step read the location log, and counts against it.
    const reserved = reservedBytes(reservations, (k, n) => u.logged!.get(k)?.has(n) ?? false)
    return decidePlacement({
      policy: this.policy(),
      key: u.key,
      nodes: this.nodeUuids(),
      locations: u.locations!,
      committed: u.committed!,
      reserved,
    })
  }

  private advance(u: Upload): void {
    switch (u.phase) {
      case 'view': {
        const v = this.ledger.view(this.nodeUuids(), 0, this.now)
        u.versions = v.versions
        u.reservations = v.reservations
        u.phase = 'prepare'
        if (this.config.atomic) this.advance(u)
        return
      }
      case 'prepare':
        u.locations = this.locationsOf(u.key)
        u.committed = this.committed()
        u.logged = new Map([...this.logged].map(([k, at]) => [k, new Set(at)]))
        u.phase = 'reserve'
        if (this.config.atomic) this.advance(u)
        return
      case 'reserve': {
        // A node added since the view has no version in it: the compare then fails and the
        // decision is made again with it.
        const versions = new Map(this.nodeUuids().map((n) => [n, u.versions!.get(n) ?? -1]))
        const d = this.decide(u, u.reservations!)
        this.stats.decisions++
        const reserve = d.kind === 'send' ? d.reserve : []
        const id = `r${u.id}`
        const before = this.usage()
        // Decisions that reserve nothing are checked the same way, so a refusal is never
        // made on a state that moved.
        if (!this.ledger.tryReserve({ id, owner: u.owner, nodes: reserve, size: d.kind === 'send' ? d.size : 0, key: serializeKey(u.key) }, this.config.leaseMs, versions, this.now)) {
          this.stats.retries++
          if (++u.retries > 1000) throw new InvariantViolation(`upload ${u.id} retried its reservation 1000 times`)
          u.phase = 'view'
          return
        }
        this.checkDecision(u, d, before)
        u.decision = d
        if (reserve.length > 0) u.reservation = id
        else this.ledger.release(id, [], this.now)
        if (d.kind === 'full') {
          this.stats.refusedFull++
          this.finish(u)
          return
        }
        u.phase = 'transfer'
        return
      }
      case 'transfer':
        u.phase = 'record'
        return
      case 'record': {
        const d = u.decision!
        const targets = d.kind === 'send' ? d.targets : d.kind === 'held' ? d.targets : []
        const ok =
          u.outcome === 'stored' ? targets : u.outcome === 'partial' ? targets.filter((_, i) => ((u.failMask >> i) & 1) === 0) : []
        const k = serializeKey(u.key)
        let at = this.logged.get(k)
        if (!at) this.logged.set(k, (at = new Set()))
        const facts = []
        for (const n of ok) {
          if (at.has(n)) continue
          at.add(n)
          facts.push({ key: k, uuid: n, present: true, size: u.key.size ?? 0 })
        }
        this.ledger.publish(facts)
        if (ok.length > 0) this.stats.stored++
        if (u.outcome === 'stored' && d.kind === 'send') this.checkCopies(u)
        u.phase = 'release'
        return
      }
      case 'release':
        this.finish(u)
        return
    }
  }

  private finish(u: Upload): void {
    if (u.reservation !== undefined) this.ledger.release(u.reservation, [], this.now)
    const i = this.inFlight.indexOf(u)
    if (i >= 0) this.inFlight.splice(i, 1)
    if (u.reservation !== undefined && this.ledger.live(this.now).some((r) => r.id === u.reservation))
      throw new InvariantViolation(`upload ${u.id}: its reservation outlived it`)
  }

  /** Runs every upload in flight to its end and lets every lease run out. */
  drain(): void {
    let guard = 0
    while (this.inFlight.length > 0) {
      this.apply({ t: 'step', pick: 0 })
      if (++guard > 100_000) throw new InvariantViolation('uploads did not finish')
    }
    const until = this.now + this.config.leaseMs + 1
    while (this.now < until) this.apply({ t: 'tick', ms: this.config.leaseMs })
    const left = this.ledger.live(this.now)
    if (left.length > 0) throw new InvariantViolation(`reservations left after every upload ended and the leases ran out: ${left.map((r) => r.id).join(',')}`)
  }

  /**
   * Right after a decision was made and its reservation taken: every target had room
   * before it, and a refusal means no node lacking the key had room. Also notes how many
   * copies the key can get by the copies rule, for checkCopies.
   */
  private checkDecision(u: Upload, d: PlacementDecision, sizes: ReadonlyMap<string, number>): void {
    const policy = this.policy()
    const size = u.key.size ?? 0
    const locs = this.locationsOf(u.key)
    const lacking = this.nodeUuids().filter((n) => !locs.has(n))
    if (d.kind === 'send') {
      for (const t of d.targets) if (!hasRoom(policy, sizes, t, size)) throw new InvariantViolation(`upload ${u.id}: target ${t} had no room`)
    }
    if (d.kind === 'full') {
      const roomy = lacking.filter((n) => hasRoom(policy, sizes, n, size))
      if (roomy.length > 0) throw new InvariantViolation(`upload ${u.id}: refused, yet ${roomy.join(',')} had room`)
    }
    const rule = this.config.copies
    if (rule) {
      // Nodes that could hold a copy: by git-annex's space rule (Limit.hs repoHasSpace), and
      // for sizebalanced only nodes with a maxsize.
      let able = 0
      for (const n of this.nodes) {
        if (rule.rule === 'sizebalanced' && !(n.maxSize !== undefined && n.maxSize > 0)) continue
        const used = sizes.get(n.uuid) ?? 0
        if (n.maxSize === undefined || (locs.has(n.uuid) ? used <= n.maxSize : used + size <= n.maxSize)) able++
      }
      u.able = Math.min(rule.n, able)
    }
  }

  /** After an upload stored everywhere it was sent: the copies the rule asks for, or as many as nodes could take. */
  private checkCopies(u: Upload): void {
    if (u.able === undefined || u.decision?.kind !== 'send') return
    // Holders as the decision saw them (a drop since would have made it decide again) plus
    // every target, all of which stored.
    const have = new Set([...u.locations!, ...u.decision.targets]).size
    if (have < u.able) throw new InvariantViolation(`upload ${u.id} of ${serializeKey(u.key)}: ${have} copies, wanted ${u.able} (${this.describe()})`)
  }

  /** committed + reserved ≤ maxsize on every node (each upload's bytes counted once). */
  check(): void {
    const usage = this.usage()
    for (const [i, n] of this.nodes.entries()) {
      const used = usage.get(n.uuid) ?? 0
      // A node over its maxsize by an operator's change may only come down towards it.
      n.allowance = Math.max(this.capOf(i), Math.min(n.allowance, used))
      if (n.maxSize !== undefined) this.stats.maxOverfill = Math.max(this.stats.maxOverfill, used - n.allowance)
      if (used > n.allowance) throw new InvariantViolation(`t=${this.now}: node ${i} holds ${used} (committed + reserved) over its maxsize ${n.maxSize ?? '∞'} (allowance ${n.allowance})`)
    }
    for (const g of this.gateways) {
      if (g.alive || g.crashedAt === undefined) continue
      if (this.now >= g.crashedAt + this.config.leaseMs) {
        const left = this.ledger.live(this.now).filter((r) => r.owner === g.owner)
        if (left.length > 0) throw new InvariantViolation(`t=${this.now}: crashed gateway ${g.owner}'s reservations outlived the lease`)
      }
    }
  }

  /** The keys uploads pick from. */
  keyList(): readonly Key[] {
    return this.keys
  }

  /** Whether any upload is still in flight. */
  busy(): boolean {
    return this.inFlight.length > 0
  }

  /** Nodes and where each key is, for diagnostics. */
  describe(): string {
    const c = this.committed()
    return this.nodes.map((n, i) => `node ${i}: ${c.get(n.uuid) ?? 0}/${n.maxSize ?? '∞'}`).join(', ')
  }
}
