// Skein-256-256 and Skein-512-512 (Skein 1.3, the final SHA-3 round submission), which
// git-annex's SKEIN256/SKEIN512 backends compute through cryptonite. Neither node:crypto nor
// hash-wasm has Skein. The Threefish block cipher itself is generated (unrolled.ts).
import type { StatefulHasher } from './types.js'
import { threefish256, threefish512 } from './unrolled.js'

const TYPE_CFG = 4
const TYPE_MSG = 48
const TYPE_OUT = 63
// Bits of the tweak's high word, seen from its upper 32-bit half: type at 56..61, First at 62,
// Final at 63 (as int32, hence negative).
const FIRST = 0x40000000
const FINAL = 0x80000000 | 0

function readWords(dst: Int32Array, src: Uint8Array, off: number): void {
  for (let i = 0; i < dst.length; i++, off += 4) {
    dst[i] = src[off]! | (src[off + 1]! << 8) | (src[off + 2]! << 16) | (src[off + 3]! << 24)
  }
}

const IV_CACHE = new Map<string, Int32Array>()

export class Skein implements StatefulHasher {
  private readonly ubi: (chain: Int32Array, m: Int32Array, tweak: Int32Array) => void
  private readonly B: number
  private readonly chain: Int32Array
  private readonly m: Int32Array
  private readonly tweak = new Int32Array(4)
  private readonly buf: Uint8Array
  private bufLen = 0
  /** Message bytes processed so far (UBI position); exact as a JS number up to 2^53. */
  private pos = 0
  private first = true

  constructor(
    stateBits: 256 | 512,
    private readonly outBits: number,
  ) {
    this.ubi = stateBits === 256 ? threefish256 : threefish512
    this.B = stateBits / 8
    this.m = new Int32Array(stateBits / 32)
    this.buf = new Uint8Array(this.B)
    this.chain = Int32Array.from(this.iv(stateBits, outBits))
  }

  private step(chain: Int32Array, pos: number, t1hi: number): void {
    const tw = this.tweak
    tw[0] = pos | 0
    tw[1] = (pos / 4294967296) | 0
    tw[2] = 0
    tw[3] = t1hi
    this.ubi(chain, this.m, tw)
  }

  // The configuration UBI depends only on the sizes, so it is computed once per variant.
  private iv(stateBits: number, outBits: number): Int32Array {
    const id = `${stateBits}-${outBits}`
    let iv = IV_CACHE.get(id)
    if (!iv) {
      const cfg = new Uint8Array(this.B)
      cfg.set([0x53, 0x48, 0x41, 0x33, 1, 0, 0, 0]) // schema "SHA3", version 1
      new DataView(cfg.buffer).setUint32(8, outBits, true)
      iv = new Int32Array(stateBits / 32)
      readWords(this.m, cfg, 0)
      this.step(iv, 32, (TYPE_CFG << 24) | FIRST | FINAL)
      IV_CACHE.set(id, iv)
    }
    return iv
  }

  private block(src: Uint8Array, off: number, bytes: number, final: boolean): void {
    this.pos += bytes
    readWords(this.m, src, off)
    this.step(this.chain, this.pos, (TYPE_MSG << 24) | (this.first ? FIRST : 0) | (final ? FINAL : 0))
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
    this.step(this.chain, 8, (TYPE_OUT << 24) | FIRST | FINAL)
    const out = Buffer.alloc(this.B)
    for (let i = 0; i < this.chain.length; i++) out.writeInt32LE(this.chain[i]!, 4 * i)
    return out.toString('hex', 0, this.outBits / 8)
  }

  save(): Uint8Array {
    const out = new Uint8Array(this.chain.length * 4 + 8 + 4 + 1 + this.B)
    const dv = new DataView(out.buffer)
    this.chain.forEach((w, i) => dv.setInt32(4 * i, w, true))
    const o = this.chain.length * 4
    dv.setFloat64(o, this.pos, true)
    dv.setUint32(o + 8, this.bufLen, true)
    out[o + 12] = this.first ? 1 : 0
    out.set(this.buf, o + 13)
    return out
  }

  load(state: Uint8Array): void {
    if (state.length !== this.chain.length * 4 + 13 + this.B) throw new Error('Skein state of the wrong size')
    const dv = new DataView(state.buffer, state.byteOffset, state.byteLength)
    for (let i = 0; i < this.chain.length; i++) this.chain[i] = dv.getInt32(4 * i, true)
    const o = this.chain.length * 4
    this.pos = dv.getFloat64(o, true)
    this.bufLen = dv.getUint32(o + 8, true)
    this.first = state[o + 12] === 1
    this.buf.set(state.subarray(o + 13))
  }
}

export const skein256 = (): StatefulHasher => new Skein(256, 256)
export const skein512 = (): StatefulHasher => new Skein(512, 512)
