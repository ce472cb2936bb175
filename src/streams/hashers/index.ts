// Every digest git-annex 10.20250416 keys can name (Backend/Hash.hs `hashes`), and every way
// we can compute each: node:crypto, hash-wasm, or our TypeScript code. Choosing among them is
// src/keys/backend.ts's job; this module only knows what exists and adapts it to `Hasher`.
import { createHash } from 'node:crypto'
import {
  createBLAKE2b,
  createBLAKE2s,
  createMD5,
  createSHA1,
  createSHA224,
  createSHA256,
  createSHA3,
  createSHA384,
  createSHA512,
  type IHasher,
} from 'hash-wasm'
import { blake2bp, blake2sp } from './blake2.js'
import { skein256, skein512 } from './skein.js'
import type { Hasher, Implementation, StatefulHasher } from './types.js'

export type { Hasher, HasherKind, Implementation } from './types.js'

export const HASH_ALGORITHMS = [
  'SHA256', 'SHA512', 'SHA224', 'SHA384',
  'SHA3_256', 'SHA3_512', 'SHA3_224', 'SHA3_384',
  'SKEIN256', 'SKEIN512',
  'BLAKE2B256', 'BLAKE2B512', 'BLAKE2B160', 'BLAKE2B224', 'BLAKE2B384',
  'BLAKE2BP512',
  'BLAKE2S256', 'BLAKE2S160', 'BLAKE2S224',
  'BLAKE2SP256', 'BLAKE2SP224',
  'SHA1', 'MD5',
] as const

/** A hash algorithm, named as its backend is without the `E` suffix. */
export type HashAlgorithm = (typeof HASH_ALGORITHMS)[number]

// OpenSSL names. BLAKE2 only at full width: OpenSSL 3's blake2b512/blake2s256 take no output
// length through node:crypto, and a truncated 512-bit digest is not BLAKE2b-256.
const NATIVE: Partial<Record<HashAlgorithm, string>> = {
  SHA256: 'sha256',
  SHA512: 'sha512',
  SHA224: 'sha224',
  SHA384: 'sha384',
  SHA3_256: 'sha3-256',
  SHA3_512: 'sha3-512',
  SHA3_224: 'sha3-224',
  SHA3_384: 'sha3-384',
  BLAKE2B512: 'blake2b512',
  BLAKE2S256: 'blake2s256',
  SHA1: 'sha1',
  MD5: 'md5',
}

const WASM: Partial<Record<HashAlgorithm, () => Promise<IHasher>>> = {
  SHA256: createSHA256,
  SHA512: createSHA512,
  SHA224: createSHA224,
  SHA384: createSHA384,
  SHA3_256: () => createSHA3(256),
  SHA3_512: () => createSHA3(512),
  SHA3_224: () => createSHA3(224),
  SHA3_384: () => createSHA3(384),
  BLAKE2B256: () => createBLAKE2b(256),
  BLAKE2B512: () => createBLAKE2b(512),
  BLAKE2B160: () => createBLAKE2b(160),
  BLAKE2B224: () => createBLAKE2b(224),
  BLAKE2B384: () => createBLAKE2b(384),
  BLAKE2S256: () => createBLAKE2s(256),
  BLAKE2S160: () => createBLAKE2s(160),
  BLAKE2S224: () => createBLAKE2s(224),
  SHA1: createSHA1,
  MD5: createMD5,
}

const TS: Partial<Record<HashAlgorithm, () => StatefulHasher>> = {
  SKEIN256: skein256,
  SKEIN512: skein512,
  BLAKE2BP512: () => blake2bp(512),
  BLAKE2SP256: () => blake2sp(256),
  BLAKE2SP224: () => blake2sp(224),
}

/** The implementations that exist for `algo`, in no particular order of speed. */
export function implementationsOf(algo: HashAlgorithm): Implementation[] {
  const out: Implementation[] = []
  if (NATIVE[algo]) out.push('native')
  if (WASM[algo]) out.push('wasm')
  if (TS[algo]) out.push('ts')
  return out
}

// A hash-wasm hasher costs ~145 µs to instantiate and ~10 µs to reinitialise (measured here),
// which matters for many small objects, so finished instances are kept for reuse. One that is
// abandoned mid-stream (a failed upload) is simply never returned and is garbage collected.
const POOL_MAX = 16
const pools = new Map<HashAlgorithm, IHasher[]>()

async function acquireWasm(algo: HashAlgorithm): Promise<IHasher> {
  const h = pools.get(algo)?.pop() ?? (await WASM[algo]!())
  return h.init()
}

function releaseWasm(algo: HashAlgorithm, h: IHasher): void {
  let pool = pools.get(algo)
  if (!pool) pools.set(algo, (pool = []))
  if (pool.length < POOL_MAX) pool.push(h)
}

class WasmHasher implements Hasher {
  readonly implementation = 'wasm'
  private h: IHasher | undefined
  constructor(
    private readonly algo: HashAlgorithm,
    h: IHasher,
  ) {
    this.h = h
  }
  update(data: Uint8Array): void {
    this.live().update(data)
  }
  digest(): string {
    const h = this.live()
    const hex = h.digest('hex')
    this.h = undefined
    releaseWasm(this.algo, h)
    return hex
  }
  save(): Uint8Array {
    return this.live().save()
  }
  private live(): IHasher {
    if (!this.h) throw new Error('hasher used after digest()')
    return this.h
  }
}

class NativeHasher implements Hasher {
  readonly implementation = 'native'
  private readonly h
  constructor(name: string) {
    this.h = createHash(name)
  }
  update(data: Uint8Array): void {
    this.h.update(data)
  }
  digest(): string {
    return this.h.digest('hex')
  }
}

class TsHasher implements Hasher {
  readonly implementation = 'ts'
  constructor(private readonly h: StatefulHasher) {}
  update(data: Uint8Array): void {
    this.h.update(data)
  }
  digest(): string {
    return this.h.digest()
  }
  save(): Uint8Array {
    return this.h.save()
  }
}

/** A fresh hasher for `algo` computed by exactly `impl`; throws if that pairing does not exist. */
export async function createImplementation(algo: HashAlgorithm, impl: Implementation): Promise<Hasher> {
  switch (impl) {
    case 'native': {
      const name = NATIVE[algo]
      if (!name) break
      return new NativeHasher(name)
    }
    case 'wasm': {
      if (!WASM[algo]) break
      return new WasmHasher(algo, await acquireWasm(algo))
    }
    case 'ts': {
      const make = TS[algo]
      if (!make) break
      return new TsHasher(make())
    }
  }
  throw new RangeError(`no ${impl} implementation of ${algo}`)
}

/**
 * Continues from `Hasher.save()` output. The state belongs to the implementation that
 * produced it (hash-wasm checks its own format and throws on anything else).
 */
export async function resumeImplementation(algo: HashAlgorithm, impl: 'wasm' | 'ts', state: Uint8Array): Promise<Hasher> {
  if (impl === 'wasm') {
    if (!WASM[algo]) throw new RangeError(`no wasm implementation of ${algo}`)
    const h = await acquireWasm(algo)
    h.load(state)
    return new WasmHasher(algo, h)
  }
  const make = TS[algo]
  if (!make) throw new RangeError(`no ts implementation of ${algo}`)
  const h = make()
  h.load(state)
  return new TsHasher(h)
}
