// The plan of `annex-proxy rebalance`, as a pure function: where the content of a cluster's
// nodes should be so that every node holds exactly what its preferred content wants when
// evaluated as git-annex's --rebalance evaluates it (balanced=g:N as fullybalanced=g:N,
// sizebalanced=g:N as fullysizebalanced=g:N; Annex/Balanced.hs), and the moves that get it
// there.
//
// Why one run is enough. git-annex's `assist --rebalance` decides key by key against sizes
// and locations as they were when it started, so each move changes what the next decisions
// should have seen and it takes several runs to settle. Here the whole run is simulated
// first: keys are visited in a fixed order, each decision sees every move decided before it
// (sizes and locations), and passes repeat until one changes nothing. The plan is the
// difference between the start and that fixed point, so after it is carried out a second
// run finds every node holding what it wants, and moves nothing.
//
// Rules that keep content safe, here and in the executor (gateway/rebalance.ts):
// - a key nobody wants is left where it is (rebalancing moves content, never deletes it),
//   and a key no node holds is not the cluster's to place;
// - a node only gets a copy when its maxsize has room for it, at that point of the plan;
// - a copy is dropped only while the key keeps numcopies copies the gateway can verify
//   (countedCopies) and at least as many cluster copies as its preferred content asks for
//   (the copies wanted, or the copies it had if fewer);
// - required content is never dropped;
// - only nodes with preferred content take part: a node without an expression neither gets
//   nor loses content.
import type { Key } from '../keys/key.js'
import { serializeKey } from '../keys/key.js'
import type { Uuid } from '../remotes/remote.js'
import { hasRoom, wants, type PlacementPolicy } from './decide.js'
import { isPreferredContent } from './preferred-content.js'

export interface RebalanceKey {
  readonly key: Key
  /** Every repository the location log lists as holding it (dead ones left out). */
  readonly locations: ReadonlySet<string>
}

export interface RebalanceInput {
  readonly policy: PlacementPolicy
  /** The cluster's nodes (reached directly by the gateway). */
  readonly nodes: readonly Uuid[]
  readonly keys: readonly RebalanceKey[]
  /** Bytes each repository holds as git-annex counts them (every key, not only these). */
  readonly committed: ReadonlyMap<string, number>
  /** annex.numcopies (numcopies.log), at least 1. */
  readonly numCopies: number
  /** Passes before a simulation gives up on a fixed point (its moving keys are then pinned). Default 50. */
  readonly maxPasses?: number
}

export interface KeyMove {
  readonly key: Key
  /** Nodes to copy the key to (from any node holding it), each verified and logged first. */
  readonly add: readonly Uuid[]
  /** Nodes to drop it from afterwards. */
  readonly drop: readonly Uuid[]
}

export interface RebalancePlan {
  /**
   * In the order the simulation first moved each key. A copy may still have to wait for a
   * later drop to make room (the executor retries it).
   */
  readonly moves: readonly KeyMove[]
  /**
   * A pass changed nothing with every key free to move: carried out, the plan leaves nothing
   * for another run. When not, the `unstable` keys had no stable place (each move of one
   * changed where the others wanted to be) and are left where they are; the rest settled.
   */
  readonly settled: boolean
  readonly unstable: readonly Key[]
  readonly passes: number
  /** Repository sizes after the plan. */
  readonly sizes: ReadonlyMap<string, number>
  /** Keys some wanted node could not take for want of room. */
  readonly short: readonly Key[]
}

/** Nodes that take part: those with a wanted or required expression. */
export function participants(policy: PlacementPolicy, nodes: readonly Uuid[]): Uuid[] {
  return nodes.filter((u) => policy.preferredContent.has(u) || policy.requiredContent.has(u))
}

/**
 * Copies a drop can count on for numcopies: those on the cluster's nodes (which the gateway
 * can lock while it drops, as git-annex proves copies), untrusted ones excepted, and those
 * in trusted repositories elsewhere (taken on trust, as git-annex does). A copy in a client's
 * repository cannot be verified from the gateway and does not count.
 */
export function countedCopies(policy: PlacementPolicy, nodes: readonly string[], locations: Iterable<string>): number {
  let n = 0
  for (const u of locations) {
    const trust = policy.trust.get(u)
    if (nodes.includes(u) ? trust !== 'untrusted' && trust !== 'dead' : trust === 'trusted') n++
  }
  return n
}

function requires(policy: PlacementPolicy, key: Key, u: Uuid, locations: ReadonlySet<string>, sizes: ReadonlyMap<string, number>): boolean {
  const required = policy.requiredContent.get(u)
  if (required === undefined) return false
  return isPreferredContent(
    { required },
    { uuid: u, key, locations, groups: policy.groups, groupWanted: policy.groupPreferredContent, trust: policy.trust, maxSizes: policy.maxSize, repoSizes: sizes, rebalance: true },
    false,
  )
}

const byUuid = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0)

export function planRebalance(input: RebalanceInput): RebalancePlan {
  const keys = [...input.keys].sort((a, b) => byUuid(serializeKey(a.key), serializeKey(b.key)))
  // Keys with no stable place are pinned where they are and the simulation starts over
  // without them, until it settles: the moves then lead to a state consistent for every
  // other key (sizes included), never to one computed with the pinned keys elsewhere.
  const pinned = new Set<number>()
  let passes = 0
  for (;;) {
    const sim = simulate(input, keys, pinned)
    passes += sim.passes
    if (sim.settled || sim.moving.size === 0) return plan(input, keys, sim, pinned, passes)
    for (const i of sim.moving) pinned.add(i)
  }
}

interface Simulated {
  readonly locs: ReadonlyArray<ReadonlySet<string>>
  readonly firstMoved: ReadonlyMap<number, number>
  readonly short: ReadonlySet<number>
  readonly settled: boolean
  readonly passes: number
  /** Keys that moved in the last pass (when not settled). */
  readonly moving: ReadonlySet<number>
}

function simulate(input: RebalanceInput, keys: readonly RebalanceKey[], pinned: ReadonlySet<number>): Simulated {
  const { policy } = input
  const nodes = participants(policy, input.nodes).sort(byUuid)
  const sizes = new Map(input.committed)
  const locs = keys.map((k) => new Set(k.locations))
  const firstMoved = new Map<number, number>()
  const short = new Set<number>()
  let order = 0
  let passes = 0
  let settled = false
  const maxPasses = input.maxPasses ?? 50
  /** State after each pass (sizes and what moved), to see a cycle as soon as it repeats. */
  const seen = new Set<string>()
  let moving = new Set<number>()
  while (passes < maxPasses) {
    passes++
    const changed = new Set<number>()
    short.clear()
    keys.forEach((k, i) => {
      if (pinned.has(i)) return
      const at = locs[i]!
      const size = k.key.size ?? 0
      // Copies come from a node that holds the key: one no node holds is not the cluster's to place.
      if (!input.nodes.some((u) => at.has(u))) return
      const holders = nodes.filter((u) => at.has(u))
      const want = nodes.filter((u) => wants({ policy, key: k.key, locations: at, unconfiguredWants: false }, u, sizes, { rebalance: true }))
      // Nobody wants it: left alone, never deleted by a rebalance.
      if (want.length === 0) return
      const add = want.filter((u) => !at.has(u) && hasRoom(policy, sizes, u, size))
      if (add.length < want.filter((u) => !at.has(u)).length) short.add(i)
      const after = new Set([...at, ...add])
      const inCluster = new Set([...holders, ...add])
      const keepInCluster = Math.min(holders.length, want.length)
      const drop: Uuid[] = []
      // The fullest first: dropping there frees the most contended room.
      const unwanted = holders.filter((u) => !want.includes(u) && !requires(policy, k.key, u, at, sizes))
      unwanted.sort((a, b) => fill(policy, sizes, b) - fill(policy, sizes, a) || byUuid(a, b))
      for (const u of unwanted) {
        if (inCluster.size - 1 < keepInCluster) break
        if (countedCopies(policy, input.nodes, [...after].filter((x) => x !== u)) < input.numCopies) break
        after.delete(u)
        inCluster.delete(u)
        drop.push(u)
      }
      if (add.length === 0 && drop.length === 0) return
      for (const u of add) sizes.set(u, (sizes.get(u) ?? 0) + size)
      for (const u of drop) sizes.set(u, (sizes.get(u) ?? 0) - size)
      locs[i] = after
      changed.add(i)
      if (!firstMoved.has(i)) firstMoved.set(i, order++)
    })
    moving = changed
    if (changed.size === 0) {
      settled = true
      break
    }
    const signature = JSON.stringify([[...sizes].sort(), [...changed].map((i) => [i, [...locs[i]!].sort()])])
    if (seen.has(signature)) break
    seen.add(signature)
  }
  return { locs, firstMoved, short, settled, passes, moving }
}

function plan(input: RebalanceInput, keys: readonly RebalanceKey[], sim: Simulated, pinned: ReadonlySet<number>, passes: number): RebalancePlan {
  const nodes = participants(input.policy, input.nodes)
  const moves: KeyMove[] = []
  const sizes = new Map(input.committed)
  for (const [i] of [...sim.firstMoved].sort((a, b) => a[1] - b[1])) {
    const before = keys[i]!.locations
    const after = sim.locs[i]!
    const add = nodes.filter((u) => after.has(u) && !before.has(u))
    const drop = nodes.filter((u) => before.has(u) && !after.has(u))
    if (add.length === 0 && drop.length === 0) continue
    moves.push({ key: keys[i]!.key, add, drop })
    const size = keys[i]!.key.size ?? 0
    for (const u of add) sizes.set(u, (sizes.get(u) ?? 0) + size)
    for (const u of drop) sizes.set(u, (sizes.get(u) ?? 0) - size)
  }
  return {
    moves,
    settled: sim.settled && pinned.size === 0,
    passes,
    sizes,
    short: [...sim.short].map((i) => keys[i]!.key),
    unstable: [...pinned].map((i) => keys[i]!.key),
  }
}

/** How full a node is (0 without a maxsize, so bounded nodes are emptied first). */
function fill(policy: PlacementPolicy, sizes: ReadonlyMap<string, number>, u: string): number {
  const max = policy.maxSize.get(u)
  return max === undefined || max <= 0 ? 0 : (sizes.get(u) ?? 0) / max
}
