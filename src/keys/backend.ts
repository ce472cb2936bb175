// Backend → hash algorithm → hasher (spec §5; Backend/Hash.hs, Types/Key.hs parseKeyVariety).
// Which digest a key names, what the key says it should be, and the fastest way to compute it.
import {
  createImplementation,
  HASH_ALGORITHMS,
  implementationsOf,
  resumeImplementation,
  type HashAlgorithm,
  type Hasher,
  type HasherKind,
  type Implementation,
} from '../streams/hashers/index.js'
import type { Key } from './key.js'

export { HASH_ALGORITHMS, implementationsOf }
export type { HashAlgorithm, Hasher, HasherKind, Implementation }

const ALGORITHMS: ReadonlySet<string> = new Set(HASH_ALGORITHMS)

/**
 * The hash a hash backend's keys are named by, or undefined for other backends (see digestOf
 * for GITBUNDLE). Names match exactly, as parseKeyVariety does: `sha256` is an unknown backend.
 */
export function hashAlgorithm(backend: string): HashAlgorithm | undefined {
  if (ALGORITHMS.has(backend)) return backend as HashAlgorithm
  if (backend.endsWith('E')) {
    const base = backend.slice(0, -1)
    if (ALGORITHMS.has(base)) return base as HashAlgorithm
  }
  return undefined
}

/**
 * The digest `key` promises for its content, as git-annex checks it on receipt
 * (Annex/Verify.hs verifyKeyContent, via the key's backend), or undefined when nothing can
 * be checked:
 * - hash backends: the name up to its first '.' (Backend/Hash.hs keyHash). A chunk key
 *   (`-S…-C…`) is verified by its backend like any other: its name is the digest of the
 *   whole object, so only the whole object verifies (a P2P upload of one chunk's bytes is
 *   refused, as git-annex refuses it);
 * - GITBUNDLE: SHA256 of the bundle, the name after its last '-' (Backend/GitRemoteAnnex.hs);
 * - WORM, URL, VURL, GITMANIFEST, external `X…` and unknown backends carry none.
 */
export function digestOf(key: Key): { readonly algorithm: HashAlgorithm; readonly expected: string } | undefined {
  if (key.backend === 'GITBUNDLE') {
    const dash = key.name.lastIndexOf('-')
    return { algorithm: 'SHA256', expected: key.name.slice(dash + 1) }
  }
  const algorithm = hashAlgorithm(key.backend)
  if (algorithm === undefined) return undefined
  const dot = key.name.indexOf('.')
  return { algorithm, expected: dot < 0 ? key.name : key.name.slice(0, dot) }
}

/** digestOf(key)'s expected digest. */
export function expectedDigest(key: Key): string | undefined {
  return digestOf(key)?.expected
}

/**
 * Backend/Hash.hs sameCheckSum: exact, case-sensitive comparison with the key's digest; a
 * leading '\' in the key (left by an old git-annex bug) is still accepted.
 */
export function digestMatches(expected: string, computedHex: string): boolean {
  return expected === computedHex || expected === `\\${computedHex}`
}

/**
 * The implementation 'auto' uses: the fastest measured by bench/micro/hashers.ts (node v20.20.2,
 * x86-64 Xeon, 2 vCPUs shared with other jobs, 64 KiB updates, best of 5 interleaved 400 ms
 * windows). MB/s, native (node:crypto) / wasm (hash-wasm) / ts (ours):
 *
 *   SHA256   1463 / 275       SHA3_256  422 / 276      BLAKE2B512  823 / 750    SHA1  1540 / 620
 *   SHA512    638 / 388       SHA3_512  222 / 150      BLAKE2B256    - / 714    MD5    627 / 576
 *   SHA224   1442 / 270       SHA3_224  418 / 280      BLAKE2B384    - / 715
 *   SHA384    615 / 317       SHA3_384  315 / 219      BLAKE2B224    - / 745
 *   SKEIN256    ts 64         SKEIN512     ts 66       BLAKE2B160    - / 698
 *   BLAKE2BP512 ts 83         BLAKE2SP256  ts 160     BLAKE2S256  490 / 458
 *   BLAKE2SP224 ts 174                                BLAKE2S224    - / 455    BLAKE2S160  - / 445
 *
 * OpenSSL wins wherever it has the algorithm (SHA-256 by 5x thanks to SHA-NI); hash-wasm
 * covers the BLAKE2 widths OpenSSL lacks; Skein and the BLAKE2 tree modes exist only in
 * TypeScript. Per-object setup is 2-7 µs for native and wasm (pooled), 20-70 µs for ts.
 */
export const AUTO: Readonly<Record<HashAlgorithm, Implementation>> = Object.freeze({
  SHA256: 'native',
  SHA512: 'native',
  SHA224: 'native',
  SHA384: 'native',
  SHA3_256: 'native',
  SHA3_512: 'native',
  SHA3_224: 'native',
  SHA3_384: 'native',
  SKEIN256: 'ts',
  SKEIN512: 'ts',
  BLAKE2B256: 'wasm',
  BLAKE2B512: 'native',
  BLAKE2B160: 'wasm',
  BLAKE2B224: 'wasm',
  BLAKE2B384: 'wasm',
  BLAKE2BP512: 'ts',
  BLAKE2S256: 'native',
  BLAKE2S160: 'wasm',
  BLAKE2S224: 'wasm',
  BLAKE2SP256: 'ts',
  BLAKE2SP224: 'ts',
  SHA1: 'native',
  MD5: 'native',
})

// When the requested kind does not exist for an algorithm, the nearest that does is used, so
// that one `hasher` setting works for every key.
const PREFERENCE: Record<Exclude<HasherKind, 'auto'>, Implementation[]> = {
  native: ['native', 'wasm', 'ts'],
  wasm: ['wasm', 'ts', 'native'],
}

/** The implementation `kind` resolves to for `algo`. */
export function implementationFor(algo: HashAlgorithm, kind: HasherKind = 'auto'): Implementation {
  if (kind === 'auto') return AUTO[algo]
  const have = implementationsOf(algo)
  const impl = PREFERENCE[kind].find((i) => have.includes(i))
  if (!impl) throw new RangeError(`no implementation of ${algo}`)
  return impl
}

export function createHasher(algo: HashAlgorithm, kind: HasherKind = 'auto'): Promise<Hasher> {
  return createImplementation(algo, implementationFor(algo, kind))
}

/** Continues a hash from `Hasher.save()`; `impl` is the `implementation` of the hasher that saved it. */
export function resumeHasher(algo: HashAlgorithm, impl: 'wasm' | 'ts', state: Uint8Array): Promise<Hasher> {
  return resumeImplementation(algo, impl, state)
}
