// Balanced selection among a group's repositories (spec §7.5; git-annex Annex/Balanced.hs and
// the balanced terms of Limit.hs, 10.20250416). Pure: sizes and locations come from the caller.
import { createHmac } from 'node:crypto'
import { serializeKey, type Key } from '../keys/key.js'

/** Byte order of UUID strings, as git-annex sorts its Set UUID (ASCII, so code units agree). */
export const byUuid = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

const sortedUnique = (xs: Iterable<string>): string[] => [...new Set(xs)].sort(byUuid)

/**
 * The number a key hashes to for a group: HMAC-SHA256 keyed by the concatenation of all the
 * group's member UUIDs in ascending order, over the serialized key, read big-endian.
 */
export function balancedHash(members: Iterable<string>, key: Key): bigint {
  const mac = createHmac('sha256', sortedUnique(members).join('')).update(serializeKey(key)).digest('hex')
  return BigInt(`0x${mac}`)
}

/**
 * The `n` picks for `key` among `candidates` (a subset of `members`): candidates sorted
 * ascending, picks C[(N + i) mod |C|] for i = 0..n−1. A pick repeats when n > |C|, as in
 * git-annex, so the distinct picks are min(n, |C|). No candidates (or n ≤ 0) → no picks.
 */
export function balancedPick(members: Iterable<string>, candidates: Iterable<string>, key: Key, n: number): string[] {
  const c = sortedUnique(candidates)
  if (c.length === 0 || n <= 0) return []
  const base = balancedHash(members, key)
  const m = BigInt(c.length)
  const out: string[] = []
  for (let i = 0; i < n; i++) out.push(c[Number((base + BigInt(i)) % m)]!)
  return out
}

/** Limit.hs repoHasSpace: a repository already holding the key only has to be within its maxsize. */
export function repoHasSpace(keySize: number, inRepo: boolean, repoSize: number, maxSize: number): boolean {
  return inRepo ? repoSize <= maxSize : repoSize + keySize <= maxSize
}

export interface SizeView {
  /** maxsize.log values; a repository without one is never full. */
  readonly maxSizes: ReadonlyMap<string, number>
  /**
   * Bytes of annexed content each repository holds (plus in-flight additions). Missing means 0:
   * git-annex starts every UUID in uuid.log at 0, so a group member is never "unknown".
   */
  readonly repoSizes: ReadonlyMap<string, number>
}

export interface BalanceOptions {
  /** git-annex's --rebalance. */
  readonly rebalance?: boolean
  /** annex.fullybalancedthreshhold as a fraction (default 0.9). */
  readonly threshold?: number
}

const sizeOf = (s: SizeView, u: string): number => s.repoSizes.get(u) ?? 0

/**
 * Candidates for `fullybalanced=g:n`: the members with space for the key. `locations` is the
 * key's logged location set (dead repositories included, as git-annex's loggedLocations).
 * Under rebalance with n > 1 and too few members below the threshold, the size-balanced rule.
 */
export function fullyBalancedCandidates(
  members: ReadonlySet<string>,
  key: Key,
  n: number,
  locations: ReadonlySet<string>,
  sizes: SizeView,
  opts: BalanceOptions = {},
): string[] {
  if (opts.rebalance && n > 1) {
    const t = opts.threshold ?? 0.9
    let toofull = 0
    for (const u of members) {
      const max = sizes.maxSizes.get(u)
      if (max !== undefined && max !== 0 && sizeOf(sizes, u) >= max * t) toofull++
    }
    if (n > members.size - toofull) return fullySizeBalancedCandidates(members, key, n, locations, sizes)
  }
  const keySize = key.size ?? 0
  return [...members].filter((u) => {
    const max = sizes.maxSizes.get(u)
    return max === undefined || repoHasSpace(keySize, locations.has(u), sizeOf(sizes, u), max)
  })
}

/**
 * Candidates for `fullysizebalanced=g:n`: members with a maxsize > 0 and space for the key,
 * ranked by free fraction (counting the key as free if the repository holds it), most free
 * first, ties to the higher UUID; the top n.
 */
export function fullySizeBalancedCandidates(
  members: ReadonlySet<string>,
  key: Key,
  n: number,
  locations: ReadonlySet<string>,
  sizes: SizeView,
): string[] {
  const keySize = key.size ?? 0
  const ranked: Array<[string, number]> = []
  for (const u of sortedUnique(members)) {
    const max = sizes.maxSizes.get(u)
    if (max === undefined || max <= 0) continue
    const used = sizeOf(sizes, u)
    const inRepo = locations.has(u)
    if (!repoHasSpace(keySize, inRepo, used, max)) continue
    ranked.push([u, (max - used + (inRepo ? keySize : 0)) / max])
  }
  // git-annex: take n . reverse . sortOn snd (a stable sort), so equal fractions keep
  // descending UUID order.
  ranked.sort((a, b) => a[1] - b[1] || byUuid(a[0], b[0]))
  ranked.reverse()
  return ranked.slice(0, Math.max(0, n)).map(([u]) => u)
}
