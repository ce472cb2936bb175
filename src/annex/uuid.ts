// Repository UUIDs and trust levels as git-annex has them (Types/UUID.hs, Types/Cluster.hs,
// Types/TrustLevel.hs, Logs/Trust/Pure.hs): one module for the branch logs, the gateway,
// placement and the remotes.

export type Uuid = string & { readonly __uuid: true }
export const asUuid = (s: string): Uuid => s as Uuid

/**
 * Types/Cluster.hs isClusterUUID: a cluster's UUID starts with `ac` and has `8` (the
 * version digit) at index 14, which no regular repository UUID has (spec §3.1).
 */
export function isClusterUuid(u: string): boolean {
  return u.startsWith('ac') && u[14] === '8'
}

export type TrustLevel = 'dead' | 'untrusted' | 'semitrusted' | 'trusted'

/** Types/TrustLevel.hs's Ord: dead < untrusted < semitrusted < trusted. */
export const TRUST_ORDER: Readonly<Record<TrustLevel, number>> = { dead: 0, untrusted: 1, semitrusted: 2, trusted: 3 }

export const isTrustLevel = (s: string): s is TrustLevel => Object.hasOwn(TRUST_ORDER, s)

/** Types/TrustLevel.hs readTrustLevel (remote.<name>.annex-trustlevel, `copies=trusted:2`). */
export function readTrustLevel(s: string): TrustLevel | undefined {
  return isTrustLevel(s) ? s : undefined
}

/**
 * Logs/Trust/Pure.hs trustLevelParser (trust.log values): one character (`1`, `0`, `X`,
 * anything else semitrusted), or nothing, which means trusted (the log once listed only
 * trusted repositories).
 */
export function parseTrustValue(v: string): TrustLevel | undefined {
  if (v === '') return 'trusted'
  if ([...v].length !== 1) return undefined
  return v === '1' ? 'trusted' : v === '0' ? 'untrusted' : v === 'X' ? 'dead' : 'semitrusted'
}
