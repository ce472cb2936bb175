// Where a cluster upload goes (spec §3.4, §7.5), as one pure function over explicit state:
// the nodes' preferred content, the key's locations, each node's committed size (as
// git-annex counts it) and the bytes reserved by uploads in flight, through this gateway or
// any other of its fleet. The gateway calls it for every upload (gateway.ts targets()) and
// the simulator (simulator.ts) drives it through random interleavings, so what the property
// tests prove is what the server does.
//
// One rule beyond git-annex's: a node is never sent more than its maxsize allows, counting
// what is reserved for uploads in flight. git-annex's gateway sends to every node lacking the
// key when none wants it, full or not; here only to those with room, and when no node
// lacking the key has room the upload is refused (DiskFullError), not overfilled.
import type { Key } from '../keys/key.js'
import type { Uuid } from '../remotes/remote.js'
import { repoHasSpace } from './balanced.js'
import { isPreferredContent } from './preferred-content.js'
import type { TrustLevel } from '../annex/uuid.js'

/** What the git-annex branch says about the nodes (a subset of GatewaySnapshot). */
export interface PlacementPolicy {
  readonly preferredContent: ReadonlyMap<string, string>
  readonly requiredContent: ReadonlyMap<string, string>
  readonly groups: ReadonlyMap<string, ReadonlySet<string>>
  readonly groupPreferredContent: ReadonlyMap<string, string>
  readonly trust: ReadonlyMap<string, TrustLevel>
  readonly maxSize: ReadonlyMap<string, number>
}

export interface PlacementInput {
  readonly policy: PlacementPolicy
  readonly key: Key
  readonly file?: string | undefined
  /** The cluster's nodes, in the order uploads address them (cost). */
  readonly nodes: readonly Uuid[]
  /** Repositories the location log says hold the key (dead ones left out). */
  readonly locations: ReadonlySet<string>
  /** Bytes each repository holds, as git-annex's RepoSize counts them (absent = 0). */
  readonly committed: ReadonlyMap<string, number>
  /** Bytes reserved on each repository by uploads in flight (absent = 0). */
  readonly reserved: ReadonlyMap<string, number>
  /**
   * Whether a node with no preferred content wants everything (git-annex's default for
   * proxied nodes; spec §3.4). Default true.
   */
  readonly unconfiguredWants?: boolean
}

export type PlacementDecision =
  /**
   * Send to `targets`. `wanted`: chosen by preferred content (else the fallback: every node
   * lacking the key that has room). `reserve`: the targets the key's size must be reserved on
   * until the upload ends (every target lacking the key, when the key has a size).
   */
  | { readonly kind: 'send'; readonly targets: readonly Uuid[]; readonly wanted: boolean; readonly reserve: readonly Uuid[]; readonly size: number }
  /** Every node already holds the key: ask them all, they answer that they have it. */
  | { readonly kind: 'held'; readonly targets: readonly Uuid[] }
  /** Nodes lack the key, and none of them has room for it. */
  | { readonly kind: 'full'; readonly lacking: readonly Uuid[] }

/** committed + reserved, per repository. */
export function liveSizes(committed: ReadonlyMap<string, number>, reserved: ReadonlyMap<string, number>): Map<string, number> {
  const out = new Map(committed)
  for (const [u, n] of reserved) if (n !== 0) out.set(u, (out.get(u) ?? 0) + n)
  return out
}

/** Whether `u` can take `size` more bytes without exceeding its maxsize (Limit.hs repoHasSpace). */
export function hasRoom(policy: Pick<PlacementPolicy, 'maxSize'>, sizes: ReadonlyMap<string, number>, u: string, size: number): boolean {
  const max = policy.maxSize.get(u)
  return max === undefined || repoHasSpace(size, false, sizes.get(u) ?? 0, max)
}

/** Whether node `u` wants the key, by its preferred content, with `sizes` as the live repository sizes. */
export function wants(input: Omit<PlacementInput, 'committed' | 'reserved' | 'nodes'>, u: Uuid, sizes: ReadonlyMap<string, number>, opts: { rebalance?: boolean } = {}): boolean {
  const p = input.policy
  return isPreferredContent(
    { wanted: p.preferredContent.get(u), required: p.requiredContent.get(u) },
    {
      uuid: u,
      key: input.key,
      file: input.file,
      locations: input.locations,
      groups: p.groups,
      groupWanted: p.groupPreferredContent,
      trust: p.trust,
      maxSizes: p.maxSize,
      repoSizes: sizes,
      rebalance: opts.rebalance ?? false,
    },
    input.unconfiguredWants ?? true,
  )
}

/**
 * Spec §3.4 with the maxsize rule above: the nodes lacking the key that want it and have
 * room; else every node lacking it that has room; else (all hold it) every node.
 */
export function decidePlacement(input: PlacementInput): PlacementDecision {
  const lacking = input.nodes.filter((u) => !input.locations.has(u))
  if (lacking.length === 0) return { kind: 'held', targets: [...input.nodes] }
  const size = input.key.size ?? 0
  const sizes = liveSizes(input.committed, input.reserved)
  const roomy = lacking.filter((u) => hasRoom(input.policy, sizes, u, size))
  if (roomy.length === 0) return { kind: 'full', lacking }
  const wanting = roomy.filter((u) => wants(input, u, sizes))
  const targets = wanting.length > 0 ? wanting : roomy
  return { kind: 'send', targets, wanted: wanting.length > 0, reserve: size > 0 ? targets : [], size }
}
