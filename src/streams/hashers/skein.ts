// Skein-256-256 and Skein-512-512 (Skein 1.3, the final SHA-3 round submission), which
// git-annex's SKEIN256/SKEIN512 backends compute through cryptonite. Neither node:crypto nor
// hash-wasm has Skein. 64-bit words are held as (lo, hi) pairs of 32-bit halves.
import type { StatefulHasher } from './types.js'

// Threefish rotation constants R[d mod 8][j] and word permutations π (Skein 1.3 Tables 3, 4).
const R256 = [[14, 16], [52, 57], [23, 40], [5, 37], [25, 33], [46, 12], [58, 22], [32, 32]]
const R512 = [
  [46, 36, 19, 37], [33, 27, 14, 42], [17, 49, 36, 39], [44, 9, 54, 56],
  [39, 30, 34, 24], [13, 50, 10, 17], [25, 29, 39, 43], [8, 35, 56, 22],
]
const PI256 = [0, 3, 2, 1]
const PI512 = [2, 1, 4, 7, 6, 5, 0, 3]

/**
 * Rather than moving words after every round, track where each logical word lives: the
 * permutation has order 4 (Threefish-512) or 2 (-256), so after the 4 rounds between key
 * injections every word is back home. Entries: physical index a, b and rotation, per round.
 */
function schedule(R: number[][], pi: number[]): Int32Array {
  const nw = pi.length
  let pos = pi.map((_, i) => i)
  const out: number[] = []
  for (let d = 0; d < 8; d++) {
    for (let j = 0; j < nw / 2; j++) out.push(pos[2 * j]!, pos[2 * j + 1]!, R[d]![j]!)
    pos = pi.map((p) => pos[p]!)
  }
  if (pos.some((p, i) => p !== i)) throw new Error('Threefish permutation does not return home')
  return Int32Array.from(out)
}
const SCHED256 = schedule(R256, PI256)
const SCHED512 = schedule(R512, PI512)

// C240 = 0x1BD11BDAA9FC1A22, the key schedule parity constant.
const C240_LO = 0xa9fc1a22
const C240_HI = 0x1bd11bda

const TYPE_CFG = 4
const TYPE_MSG = 48
const TYPE_OUT = 63
// Bits of the tweak's high word, seen from its upper 32-bit half: type at 56..61, First at 62,
// Final at 63.
const FIRST = 0x40000000
const FINAL = 0x80000000

class Threefish {
  readonly nw: number
  private readonly sched: Int32Array
  private readonly ks: Uint32Array
  private readonly ts = new Uint32Array(6)
  readonly x: Uint32Array

  constructor(nw: 4 | 8) {
    this.nw = nw
    this.sched = nw === 4 ? SCHED256 : SCHED512
    this.ks = new Uint32Array(2 * (nw + 1))
    this.x = new Uint32Array(2 * nw)
  }

  /** x := Threefish_key(tweak, m) ^ m, i.e. one UBI step; key and output are `chain`. */
  ubiBlock(chain: Uint32Array, m: Uint32Array, pos: number, t1hi: number): void {
    const nw = this.nw
    const ks = this.ks
    const ts = this.ts
    const x = this.x
    const sched = this.sched
    let pl = C240_LO
    let ph = C240_HI
    for (let i = 0; i < nw; i++) {
      ks[2 * i] = chain[2 * i]!
      ks[2 * i + 1] = chain[2 * i + 1]!
      pl ^= chain[2 * i]!
      ph ^= chain[2 * i + 1]!
    }
    ks[2 * nw] = pl
    ks[2 * nw + 1] = ph
    ts[0] = pos >>> 0
    ts[1] = Math.floor(pos / 0x100000000) >>> 0
    ts[2] = 0
    ts[3] = t1hi
    ts[4] = ts[0]! ^ ts[2]!
    ts[5] = ts[1]! ^ ts[3]!
    x.set(m)

    const per = nw / 2
    for (let s = 0; s < 18; s++) {
      inject(x, ks, ts, s, nw)
      // Four rounds; rotation constants repeat every 8, hence the odd/even half of the table.
      let e = (s & 1) * 4 * per * 3
      for (let r = 0; r < 4 * per; r++, e += 3) {
        const a = 2 * sched[e]!
        const b = 2 * sched[e + 1]!
        const rot = sched[e + 2]!
        const s0 = x[a]! + x[b]!
        const yh = (x[a + 1]! + x[b + 1]! + (s0 > 0xffffffff ? 1 : 0)) >>> 0
        const yl = s0 >>> 0
        const bl = x[b]!
        const bh = x[b + 1]!
        let rl: number, rh: number
        if (rot < 32) {
          rh = (bh << rot) | (bl >>> (32 - rot))
          rl = (bl << rot) | (bh >>> (32 - rot))
        } else if (rot === 32) {
          rh = bl
          rl = bh
        } else {
          const q = rot - 32
          rh = (bl << q) | (bh >>> (32 - q))
          rl = (bh << q) | (bl >>> (32 - q))
        }
        x[a] = yl
        x[a + 1] = yh
        x[b] = rl ^ yl
        x[b + 1] = rh ^ yh
      }
    }
    inject(x, ks, ts, 18, nw)
    for (let i = 0; i < 2 * nw; i++) chain[i] = x[i]! ^ m[i]!
  }
}

function inject(x: Uint32Array, ks: Uint32Array, ts: Uint32Array, s: number, nw: number): void {
  for (let i = 0; i < nw; i++) {
    const k = (s + i) % (nw + 1)
    let lo = ks[2 * k]!
    let hi = ks[2 * k + 1]!
    if (i === nw - 3) {
      const t = s % 3
      const a = lo + ts[2 * t]!
      hi = hi + ts[2 * t + 1]! + (a > 0xffffffff ? 1 : 0)
      lo = a >>> 0
    } else if (i === nw - 2) {
      const t = (s + 1) % 3
      const a = lo + ts[2 * t]!
      hi = hi + ts[2 * t + 1]! + (a > 0xffffffff ? 1 : 0)
      lo = a >>> 0
    } else if (i === nw - 1) {
      const a = lo + s
      hi = hi + (a > 0xffffffff ? 1 : 0)
      lo = a >>> 0
    }
    const a = x[2 * i]! + lo
    x[2 * i + 1] = x[2 * i + 1]! + hi + (a > 0xffffffff ? 1 : 0)
    x[2 * i] = a
  }
}

function readWords(dst: Uint32Array, src: Uint8Array, off: number): void {
  for (let i = 0; i < dst.length; i++, off += 4) {
    dst[i] = src[off]! | (src[off + 1]! << 8) | (src[off + 2]! << 16) | (src[off + 3]! << 24)
  }
}

const IV_CACHE = new Map<string, Uint32Array>()

export class Skein implements StatefulHasher {
  private readonly tf: Threefish
  private readonly B: number
  private readonly chain: Uint32Array
  private readonly m: Uint32Array
  private readonly buf: Uint8Array
  private bufLen = 0
  /** Message bytes processed so far (UBI position); exact as a JS number up to 2^53. */
  private pos = 0
  private first = true

  constructor(
    stateBits: 256 | 512,
    private readonly outBits: number,
  ) {
    const nw = stateBits / 64
    this.tf = new Threefish(nw as 4 | 8)
    this.B = stateBits / 8
    this.m = new Uint32Array(2 * nw)
    this.buf = new Uint8Array(this.B)
    this.chain = Uint32Array.from(this.iv(stateBits, outBits))
  }

  // The configuration UBI depends only on the sizes, so it is computed once per variant.
  private iv(stateBits: number, outBits: number): Uint32Array {
    const id = `${stateBits}-${outBits}`
    let iv = IV_CACHE.get(id)
    if (!iv) {
      const cfg = new Uint8Array(this.B)
      cfg.set([0x53, 0x48, 0x41, 0x33, 1, 0, 0, 0]) // schema "SHA3", version 1
      new DataView(cfg.buffer).setUint32(8, outBits, true)
      iv = new Uint32Array(2 * this.tf.nw)
      readWords(this.m, cfg, 0)
      this.tf.ubiBlock(iv, this.m, 32, (TYPE_CFG << 24) | FIRST | FINAL)
      IV_CACHE.set(id, iv)
    }
    return iv
  }

  private block(src: Uint8Array, off: number, bytes: number, final: boolean): void {
    this.pos += bytes
    readWords(this.m, src, off)
    const t1 = ((TYPE_MSG << 24) | (this.first ? FIRST : 0) | (final ? FINAL : 0)) >>> 0
    this.tf.ubiBlock(this.chain, this.m, this.pos, t1)
    this.first = false
  }

  update(data: Uint8Array): void {
    const B = this.B
    let off = 0
    let len = data.length
    if (len === 0) return
    // As in BLAKE2, a full block waits until more input shows it is not the final one.
    const fill = B - this.bufLen
    if (len > fill) {
      this.buf.set(data.subarray(0, fill), this.bufLen)
      this.block(this.buf, 0, B, false)
      this.bufLen = 0
      off = fill
      len -= fill
      while (len > B) {
        this.block(data, off, B, false)
        off += B
        len -= B
      }
    }
    this.buf.set(data.subarray(off, off + len), this.bufLen)
    this.bufLen += len
  }

  digest(): string {
    this.buf.fill(0, this.bufLen)
    this.block(this.buf, 0, this.bufLen, true)
    // Output stage: UBI over the 8-byte counter 0; one block covers outBits ≤ stateBits.
    this.m.fill(0)
    this.tf.ubiBlock(this.chain, this.m, 8, ((TYPE_OUT << 24) | FIRST | FINAL) >>> 0)
    const out = Buffer.alloc(this.B)
    for (let i = 0; i < this.chain.length; i++) out.writeUInt32LE(this.chain[i]!, 4 * i)
    return out.toString('hex', 0, this.outBits / 8)
  }

  save(): Uint8Array {
    const out = new Uint8Array(this.chain.length * 4 + 8 + 4 + 1 + this.B)
    const dv = new DataView(out.buffer)
    this.chain.forEach((w, i) => dv.setUint32(4 * i, w, true))
    let o = this.chain.length * 4
    dv.setFloat64(o, this.pos, true)
    dv.setUint32(o + 8, this.bufLen, true)
    out[o + 12] = this.first ? 1 : 0
    out.set(this.buf, o + 13)
    return out
  }

  load(state: Uint8Array): void {
    if (state.length !== this.chain.length * 4 + 13 + this.B) throw new Error('Skein state of the wrong size')
    const dv = new DataView(state.buffer, state.byteOffset, state.byteLength)
    for (let i = 0; i < this.chain.length; i++) this.chain[i] = dv.getUint32(4 * i, true)
    const o = this.chain.length * 4
    this.pos = dv.getFloat64(o, true)
    this.bufLen = dv.getUint32(o + 8, true)
    this.first = state[o + 12] === 1
    this.buf.set(state.subarray(o + 13))
  }
}

export const skein256 = (): StatefulHasher => new Skein(256, 256)
export const skein512 = (): StatefulHasher => new Skein(512, 512)
