// BLAKE2b/BLAKE2s with a full parameter block, and the BLAKE2bp/BLAKE2sp tree modes built on
// them (RFC 7693 for the cores; the BLAKE2 paper §2.9 and the reference blake2bp.c/blake2sp.c
// for the trees). hash-wasm and node:crypto only expose sequential BLAKE2 with default
// parameters; the tree modes need fanout, depth, node offset, node depth, inner length and the
// last-node flag, so git-annex's BLAKE2BP512 / BLAKE2SP224 / BLAKE2SP256 backends need this.
import type { StatefulHasher } from './types.js'
import { blake2bCompress, blake2sCompress } from './unrolled.js'

// IVs as int32 (lo, hi) halves for BLAKE2b; they are SHA-512's / SHA-256's initial values.
const IV_B = Int32Array.from([
  0xf3bcc908, 0x6a09e667, 0x84caa73b, 0xbb67ae85, 0xfe94f82b, 0x3c6ef372, 0x5f1d36f1, 0xa54ff53a,
  0xade682d1, 0x510e527f, 0x2b3e6c1f, 0x9b05688c, 0xfb41bd6b, 0x1f83d9ab, 0x137e2179, 0x5be0cd19,
])
const IV_S = Int32Array.from([
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
])

/** The BLAKE2 parameter block fields used by the tree modes (all others are zero). */
export interface Blake2Params {
  digestLength: number
  fanout?: number
  depth?: number
  nodeOffset?: number
  nodeDepth?: number
  innerLength?: number
  lastNode?: boolean
}

const le32 = (b: Uint8Array, o: number) => b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)

abstract class Blake2Core {
  protected readonly h: Int32Array
  protected readonly buf: Uint8Array
  protected bufLen = 0
  /** Bytes compressed so far; a JS number is exact far past any object size (2^53). */
  protected t = 0
  constructor(
    protected readonly blockBytes: number,
    hWords: number,
    readonly digestLength: number,
    protected readonly lastNode: boolean,
  ) {
    this.h = new Int32Array(hWords)
    this.buf = new Uint8Array(blockBytes)
  }

  protected abstract compress(src: Uint8Array, off: number, last: boolean): void

  update(data: Uint8Array, off = 0, len = data.length - off): void {
    const B = this.blockBytes
    if (len <= 0) return
    // The final block must be compressed with the final flag, so a full block is only
    // compressed once more input proves it is not the last.
    const fill = B - this.bufLen
    if (len > fill) {
      this.buf.set(data.subarray(off, off + fill), this.bufLen)
      this.t += B
      this.compress(this.buf, 0, false)
      this.bufLen = 0
      off += fill
      len -= fill
      while (len > B) {
        this.t += B
        this.compress(data, off, false)
        off += B
        len -= B
      }
    }
    this.buf.set(data.subarray(off, off + len), this.bufLen)
    this.bufLen += len
  }

  digestBytes(length = this.digestLength): Uint8Array {
    this.t += this.bufLen
    this.buf.fill(0, this.bufLen)
    this.compress(this.buf, 0, true)
    const out = new Uint8Array(this.h.length * 4)
    for (let i = 0; i < this.h.length; i++) {
      const w = this.h[i]!
      out[4 * i] = w
      out[4 * i + 1] = w >>> 8
      out[4 * i + 2] = w >>> 16
      out[4 * i + 3] = w >>> 24
    }
    return out.subarray(0, length)
  }

  /** h, t, buffer: enough to continue hashing later (resumed uploads). */
  saveCore(): Uint8Array {
    const out = new Uint8Array(this.h.length * 4 + 8 + 4 + this.blockBytes)
    const dv = new DataView(out.buffer)
    for (let i = 0; i < this.h.length; i++) dv.setInt32(4 * i, this.h[i]!, true)
    const o = this.h.length * 4
    dv.setFloat64(o, this.t, true)
    dv.setUint32(o + 8, this.bufLen, true)
    out.set(this.buf, o + 12)
    return out
  }

  loadCore(state: Uint8Array): void {
    if (state.length !== this.h.length * 4 + 12 + this.blockBytes) throw new Error('BLAKE2 state of the wrong size')
    const dv = new DataView(state.buffer, state.byteOffset, state.byteLength)
    for (let i = 0; i < this.h.length; i++) this.h[i] = dv.getInt32(4 * i, true)
    const o = this.h.length * 4
    this.t = dv.getFloat64(o, true)
    this.bufLen = dv.getUint32(o + 8, true)
    this.buf.set(state.subarray(o + 12))
  }
}

export class Blake2b extends Blake2Core {
  private readonly m = new Int32Array(32)

  constructor(p: Blake2Params) {
    super(128, 16, p.digestLength, p.lastNode ?? false)
    if (!(p.digestLength >= 1 && p.digestLength <= 64)) throw new RangeError('BLAKE2b digest length must be 1..64')
    // Parameter block (RFC 7693 §2.5, BLAKE2 paper Table 2), XORed into the IV word by word.
    const P = new Uint8Array(64)
    P[0] = p.digestLength
    P[2] = p.fanout ?? 1
    P[3] = p.depth ?? 1
    writeLE(P, 8, p.nodeOffset ?? 0, 8)
    P[16] = p.nodeDepth ?? 0
    P[17] = p.innerLength ?? 0
    for (let i = 0; i < 16; i++) this.h[i] = IV_B[i]! ^ le32(P, 4 * i)
  }

  protected compress(src: Uint8Array, off: number, last: boolean): void {
    const m = this.m
    for (let i = 0; i < 32; i++) m[i] = le32(src, off + 4 * i)
    const f = last ? -1 : 0
    blake2bCompress(this.h, m, this.t | 0, (this.t / 4294967296) | 0, f, last && this.lastNode ? -1 : 0)
  }
}

export class Blake2s extends Blake2Core {
  private readonly m = new Int32Array(16)

  constructor(p: Blake2Params) {
    super(64, 8, p.digestLength, p.lastNode ?? false)
    if (!(p.digestLength >= 1 && p.digestLength <= 32)) throw new RangeError('BLAKE2s digest length must be 1..32')
    const P = new Uint8Array(32)
    P[0] = p.digestLength
    P[2] = p.fanout ?? 1
    P[3] = p.depth ?? 1
    writeLE(P, 8, p.nodeOffset ?? 0, 6)
    P[14] = p.nodeDepth ?? 0
    P[15] = p.innerLength ?? 0
    for (let i = 0; i < 8; i++) this.h[i] = IV_S[i]! ^ le32(P, 4 * i)
  }

  protected compress(src: Uint8Array, off: number, last: boolean): void {
    const m = this.m
    for (let i = 0; i < 16; i++) m[i] = le32(src, off + 4 * i)
    const f = last ? -1 : 0
    blake2sCompress(this.h, m, this.t | 0, (this.t / 4294967296) | 0, f, last && this.lastNode ? -1 : 0)
  }
}

function writeLE(b: Uint8Array, off: number, n: number, bytes: number): void {
  for (let i = 0; i < bytes; i++) {
    b[off + i] = n % 256
    n = Math.floor(n / 256)
  }
}

/**
 * The parallel tree mode: P leaves hash the input's blocks round-robin (leaf i gets blocks
 * i, i+P, …), then a root hashes the P leaf digests. Parameters follow the reference
 * blake2bp.c/blake2sp.c that cryptonite (hence git-annex) compiles: fanout P, depth 2,
 * inner length = the core's full digest size, leaves at node depth 0 with their index as
 * node offset, root at depth 1, and the last leaf and the root flagged as last nodes.
 */
class Blake2Tree implements StatefulHasher {
  private readonly leaves: Blake2Core[]
  private readonly root: Blake2Core
  /** Position inside the current round of P blocks. */
  private pos = 0

  constructor(
    make: (p: Blake2Params) => Blake2Core,
    private readonly blockBytes: number,
    private readonly innerLength: number,
    readonly digestLength: number,
    private readonly degree: number,
  ) {
    const common = { digestLength, fanout: degree, depth: 2, innerLength }
    this.leaves = Array.from({ length: degree }, (_, i) =>
      make({ ...common, nodeOffset: i, nodeDepth: 0, lastNode: i === degree - 1 }),
    )
    this.root = make({ ...common, nodeOffset: 0, nodeDepth: 1, lastNode: true })
  }

  update(data: Uint8Array): void {
    const B = this.blockBytes
    const round = B * this.degree
    let off = 0
    let len = data.length
    while (len > 0) {
      const leaf = (this.pos / B) | 0
      const n = Math.min(len, B - (this.pos % B))
      this.leaves[leaf]!.update(data, off, n)
      off += n
      len -= n
      this.pos = (this.pos + n) % round
    }
  }

  digest(): string {
    for (const leaf of this.leaves) {
      // A leaf's parameter block names the tree's digest length, but the leaf emits the full
      // inner length (reference blake2bp_init_leaf_param sets S->outlen = inner_length).
      this.root.update(leaf.digestBytes(this.innerLength))
    }
    return Buffer.from(this.root.digestBytes()).toString('hex')
  }

  save(): Uint8Array {
    const parts = [...this.leaves, this.root].map((c) => c.saveCore())
    const out = new Uint8Array(4 + parts.reduce((n, p) => n + p.length, 0))
    new DataView(out.buffer).setUint32(0, this.pos, true)
    let o = 4
    for (const p of parts) {
      out.set(p, o)
      o += p.length
    }
    return out
  }

  load(state: Uint8Array): void {
    const cores = [...this.leaves, this.root]
    const each = (state.length - 4) / cores.length
    if (!Number.isInteger(each)) throw new Error('BLAKE2 tree state of the wrong size')
    this.pos = new DataView(state.buffer, state.byteOffset, state.byteLength).getUint32(0, true)
    cores.forEach((c, i) => c.loadCore(state.subarray(4 + i * each, 4 + (i + 1) * each)))
  }
}

/** BLAKE2bp: 4 BLAKE2b leaves over 128-byte blocks. */
export function blake2bp(bits: number): StatefulHasher {
  return new Blake2Tree((p) => new Blake2b(p), 128, 64, bits / 8, 4)
}

/** BLAKE2sp: 8 BLAKE2s leaves over 64-byte blocks. */
export function blake2sp(bits: number): StatefulHasher {
  return new Blake2Tree((p) => new Blake2s(p), 64, 32, bits / 8, 8)
}

/** Sequential BLAKE2b/BLAKE2s with default parameters, for cross-checking the cores. */
export function blake2bSequential(bits: number): StatefulHasher {
  return wrapCore(new Blake2b({ digestLength: bits / 8 }))
}
export function blake2sSequential(bits: number): StatefulHasher {
  return wrapCore(new Blake2s({ digestLength: bits / 8 }))
}

function wrapCore(core: Blake2Core): StatefulHasher {
  return {
    update: (data) => core.update(data),
    digest: () => Buffer.from(core.digestBytes()).toString('hex'),
    save: () => core.saveCore(),
    load: (s) => core.loadCore(s),
  }
}
