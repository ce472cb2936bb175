// BLAKE2b/BLAKE2s with a full parameter block, and the BLAKE2bp/BLAKE2sp tree modes built on
// them (RFC 7693 for the cores; the BLAKE2 paper §2.9 and the reference blake2bp.c/blake2sp.c
// for the trees). hash-wasm and node:crypto only expose sequential BLAKE2 with default
// parameters; the tree modes need fanout, depth, node offset, node depth, inner length and the
// last-node flag, so git-annex's BLAKE2BP512 / BLAKE2SP224 / BLAKE2SP256 backends need this.
import type { StatefulHasher } from './types.js'

const SIGMA = [
  [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
  [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
  [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
  [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
  [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
  [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
  [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
  [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
  [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
  [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
]
// Flattened and doubled for BLAKE2b, whose message words are (lo, hi) pairs of 32-bit halves.
const SIGMA_B = Uint8Array.from(Array.from({ length: 12 }, (_, r) => SIGMA[r % 10]!.map((x) => 2 * x)).flat())
const SIGMA_S = Uint8Array.from(SIGMA.flat())

// IVs as (lo, hi) 32-bit halves; they are SHA-512's / SHA-256's initial values.
const IV_B = Uint32Array.from([
  0xf3bcc908, 0x6a09e667, 0x84caa73b, 0xbb67ae85, 0xfe94f82b, 0x3c6ef372, 0x5f1d36f1, 0xa54ff53a,
  0xade682d1, 0x510e527f, 0x2b3e6c1f, 0x9b05688c, 0xfb41bd6b, 0x1f83d9ab, 0x137e2179, 0x5be0cd19,
])
const IV_S = Uint32Array.from([
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

const le32 = (b: Uint8Array, o: number) => (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0

abstract class Blake2Core {
  protected readonly h: Uint32Array
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
    this.h = new Uint32Array(hWords)
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
    for (let i = 0; i < this.h.length; i++) dv.setUint32(4 * i, this.h[i]!, true)
    let o = this.h.length * 4
    dv.setFloat64(o, this.t, true)
    dv.setUint32(o + 8, this.bufLen, true)
    out.set(this.buf, o + 12)
    return out
  }

  loadCore(state: Uint8Array): void {
    if (state.length !== this.h.length * 4 + 12 + this.blockBytes) throw new Error('BLAKE2 state of the wrong size')
    const dv = new DataView(state.buffer, state.byteOffset, state.byteLength)
    for (let i = 0; i < this.h.length; i++) this.h[i] = dv.getUint32(4 * i, true)
    const o = this.h.length * 4
    this.t = dv.getFloat64(o, true)
    this.bufLen = dv.getUint32(o + 8, true)
    this.buf.set(state.subarray(o + 12))
  }
}

export class Blake2b extends Blake2Core {
  private readonly v = new Uint32Array(32)
  private readonly m = new Uint32Array(32)

  constructor(p: Blake2Params) {
    super(128, 16, p.digestLength, p.lastNode ?? false)
    if (!(p.digestLength >= 1 && p.digestLength <= 64)) throw new RangeError('BLAKE2b digest length must be 1..64')
    // Parameter block (RFC 7693 §2.5, BLAKE2 paper Table 2), as eight little-endian words.
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
    const v = this.v
    const m = this.m
    const h = this.h
    for (let i = 0; i < 32; i++) m[i] = le32(src, off + 4 * i)
    for (let i = 0; i < 16; i++) {
      v[i] = h[i]!
      v[i + 16] = IV_B[i]!
    }
    const t = this.t
    v[24] = v[24]! ^ (t >>> 0)
    v[25] = v[25]! ^ (Math.floor(t / 0x100000000) >>> 0)
    if (last) {
      v[28] = ~v[28]!
      v[29] = ~v[29]!
      if (this.lastNode) {
        v[30] = ~v[30]!
        v[31] = ~v[31]!
      }
    }
    for (let r = 0; r < 12; r++) {
      const s = r * 16
      G64(v, m, 0, 8, 16, 24, SIGMA_B[s]!, SIGMA_B[s + 1]!)
      G64(v, m, 2, 10, 18, 26, SIGMA_B[s + 2]!, SIGMA_B[s + 3]!)
      G64(v, m, 4, 12, 20, 28, SIGMA_B[s + 4]!, SIGMA_B[s + 5]!)
      G64(v, m, 6, 14, 22, 30, SIGMA_B[s + 6]!, SIGMA_B[s + 7]!)
      G64(v, m, 0, 10, 20, 30, SIGMA_B[s + 8]!, SIGMA_B[s + 9]!)
      G64(v, m, 2, 12, 22, 24, SIGMA_B[s + 10]!, SIGMA_B[s + 11]!)
      G64(v, m, 4, 14, 16, 26, SIGMA_B[s + 12]!, SIGMA_B[s + 13]!)
      G64(v, m, 6, 8, 18, 28, SIGMA_B[s + 14]!, SIGMA_B[s + 15]!)
    }
    for (let i = 0; i < 16; i++) h[i] = h[i]! ^ v[i]! ^ v[i + 16]!
  }
}

// One BLAKE2b G on 64-bit words held as (lo at even, hi at odd) indexes of v and m.
function G64(v: Uint32Array, m: Uint32Array, a: number, b: number, c: number, d: number, x: number, y: number): void {
  let al = v[a]!, ah = v[a + 1]!, bl = v[b]!, bh = v[b + 1]!
  let cl = v[c]!, ch = v[c + 1]!, dl = v[d]!, dh = v[d + 1]!
  let s: number, tl: number, th: number

  // a = a + b + m[x]
  s = al + bl
  ah = (ah + bh + (s > 0xffffffff ? 1 : 0)) >>> 0
  al = s >>> 0
  s = al + m[x]!
  ah = (ah + m[x + 1]! + (s > 0xffffffff ? 1 : 0)) >>> 0
  al = s >>> 0
  // d = (d ^ a) >>> 32
  tl = dl ^ al
  dl = (dh ^ ah) >>> 0
  dh = tl >>> 0
  // c = c + d
  s = cl + dl
  ch = (ch + dh + (s > 0xffffffff ? 1 : 0)) >>> 0
  cl = s >>> 0
  // b = (b ^ c) >>> 24
  tl = bl ^ cl
  th = bh ^ ch
  bl = ((tl >>> 24) | (th << 8)) >>> 0
  bh = ((th >>> 24) | (tl << 8)) >>> 0
  // a = a + b + m[y]
  s = al + bl
  ah = (ah + bh + (s > 0xffffffff ? 1 : 0)) >>> 0
  al = s >>> 0
  s = al + m[y]!
  ah = (ah + m[y + 1]! + (s > 0xffffffff ? 1 : 0)) >>> 0
  al = s >>> 0
  // d = (d ^ a) >>> 16
  tl = dl ^ al
  th = dh ^ ah
  dl = ((tl >>> 16) | (th << 16)) >>> 0
  dh = ((th >>> 16) | (tl << 16)) >>> 0
  // c = c + d
  s = cl + dl
  ch = (ch + dh + (s > 0xffffffff ? 1 : 0)) >>> 0
  cl = s >>> 0
  // b = (b ^ c) >>> 63, i.e. <<< 1
  tl = bl ^ cl
  th = bh ^ ch
  bl = ((tl << 1) | (th >>> 31)) >>> 0
  bh = ((th << 1) | (tl >>> 31)) >>> 0

  v[a] = al; v[a + 1] = ah; v[b] = bl; v[b + 1] = bh
  v[c] = cl; v[c + 1] = ch; v[d] = dl; v[d + 1] = dh
}

export class Blake2s extends Blake2Core {
  private readonly v = new Uint32Array(16)
  private readonly m = new Uint32Array(16)

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
    const v = this.v
    const m = this.m
    const h = this.h
    for (let i = 0; i < 16; i++) m[i] = le32(src, off + 4 * i)
    for (let i = 0; i < 8; i++) {
      v[i] = h[i]!
      v[i + 8] = IV_S[i]!
    }
    const t = this.t
    v[12] = v[12]! ^ (t >>> 0)
    v[13] = v[13]! ^ (Math.floor(t / 0x100000000) >>> 0)
    if (last) {
      v[14] = ~v[14]!
      if (this.lastNode) v[15] = ~v[15]!
    }
    for (let r = 0; r < 10; r++) {
      const s = r * 16
      G32(v, m, 0, 4, 8, 12, SIGMA_S[s]!, SIGMA_S[s + 1]!)
      G32(v, m, 1, 5, 9, 13, SIGMA_S[s + 2]!, SIGMA_S[s + 3]!)
      G32(v, m, 2, 6, 10, 14, SIGMA_S[s + 4]!, SIGMA_S[s + 5]!)
      G32(v, m, 3, 7, 11, 15, SIGMA_S[s + 6]!, SIGMA_S[s + 7]!)
      G32(v, m, 0, 5, 10, 15, SIGMA_S[s + 8]!, SIGMA_S[s + 9]!)
      G32(v, m, 1, 6, 11, 12, SIGMA_S[s + 10]!, SIGMA_S[s + 11]!)
      G32(v, m, 2, 7, 8, 13, SIGMA_S[s + 12]!, SIGMA_S[s + 13]!)
      G32(v, m, 3, 4, 9, 14, SIGMA_S[s + 14]!, SIGMA_S[s + 15]!)
    }
    for (let i = 0; i < 8; i++) h[i] = h[i]! ^ v[i]! ^ v[i + 8]!
  }
}

function G32(v: Uint32Array, m: Uint32Array, a: number, b: number, c: number, d: number, x: number, y: number): void {
  let va = v[a]!, vb = v[b]!, vc = v[c]!, vd = v[d]!
  va = (va + vb + m[x]!) | 0
  vd ^= va
  vd = (vd >>> 16) | (vd << 16)
  vc = (vc + vd) | 0
  vb ^= vc
  vb = (vb >>> 12) | (vb << 20)
  va = (va + vb + m[y]!) | 0
  vd ^= va
  vd = (vd >>> 8) | (vd << 24)
  vc = (vc + vd) | 0
  vb ^= vc
  vb = (vb >>> 7) | (vb << 25)
  v[a] = va; v[b] = vb; v[c] = vc; v[d] = vd
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
    private readonly make: (p: Blake2Params) => Blake2Core,
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
