// The one shape every digest implementation is adapted to, whatever computes it.

/**
 * 'native' = node:crypto (OpenSSL), 'wasm' = hash-wasm, 'auto' = whichever measured faster
 * for the algorithm (src/keys/backend.ts). A kind the algorithm lacks falls back to another:
 * Skein and the BLAKE2 tree modes exist only in TypeScript ('ts').
 */
export type HasherKind = 'wasm' | 'native' | 'auto'

/** What actually computes a digest. */
export type Implementation = 'native' | 'wasm' | 'ts'

export interface Hasher {
  readonly implementation: Implementation
  /** Hashes `data` in place; the bytes are neither copied (beyond what the engine needs) nor kept. */
  update(data: Uint8Array): void
  /** Lowercase hex, as git-annex writes digests into key names. Call once. */
  digest(): string
  /**
   * The running state, to continue later without rehashing the prefix (resumed uploads).
   * Absent for node:crypto, whose state cannot be exported.
   */
  save?(): Uint8Array
}

/** The TypeScript implementations' common surface before adaptation. */
export interface StatefulHasher {
  update(data: Uint8Array): void
  digest(): string
  save(): Uint8Array
  load(state: Uint8Array): void
}
