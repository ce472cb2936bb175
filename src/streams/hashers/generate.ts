// Writes unrolled.ts: the BLAKE2 compression functions and Threefish block ciphers with every
// round spelled out over local variables. Loops over typed arrays ran 4-10x slower in V8 (the
// state round-trips through memory and rotation amounts stay variable); V8 keeps these locals
// in registers. The code is generated because hand-unrolling ~900 lines of 64-bit arithmetic
// invites typos; test/keys/backend.test.ts checks that unrolled.ts is this file's output.
// Run: npx tsc -p . && node dist/src/streams/hashers/generate.js
import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

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
// The column then diagonal steps of one BLAKE2 round.
const STEPS = [
  [0, 4, 8, 12], [1, 5, 9, 13], [2, 6, 10, 14], [3, 7, 11, 15],
  [0, 5, 10, 15], [1, 6, 11, 12], [2, 7, 8, 13], [3, 4, 9, 14],
]
// SHA-256 / SHA-512 initial values, which BLAKE2s / BLAKE2b use as IV.
const IV32 = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
const IV64_LO = [0xf3bcc908, 0x84caa73b, 0xfe94f82b, 0x5f1d36f1, 0xade682d1, 0x2b3e6c1f, 0xfb41bd6b, 0x137e2179]
// Threefish rotation constants R[d mod 8][j] and word permutations (Skein 1.3 Tables 3, 4).
const R256 = [[14, 16], [52, 57], [23, 40], [5, 37], [25, 33], [46, 12], [58, 22], [32, 32]]
const R512 = [
  [46, 36, 19, 37], [33, 27, 14, 42], [17, 49, 36, 39], [44, 9, 54, 56],
  [39, 30, 34, 24], [13, 50, 10, 17], [25, 29, 39, 43], [8, 35, 56, 22],
]
const PI256 = [0, 3, 2, 1]
const PI512 = [2, 1, 4, 7, 6, 5, 0, 3]

const i32 = (n: number) => String(n | 0)
const carry = '((l / 4294967296) | 0)'

/** `dst += a (+ b)` on (lo, hi) locals; `extra` is an int32 or small non-negative number. */
function add64(dst: string, srcs: string[], extraLo?: string): string {
  const lo = [dst, ...srcs].map((s) => `(${s}l >>> 0)`)
  if (extraLo) lo.push(extraLo)
  const hi = [dst, ...srcs].map((s) => `${s}h`)
  return `l = ${lo.join(' + ')}; ${dst}h = (${hi.join(' + ')} + ${carry}) | 0; ${dst}l = l | 0`
}

function blake2s(): string {
  const out: string[] = []
  out.push('export function blake2sCompress(h: Int32Array, m: Int32Array, t0: number, t1: number, f0: number, f1: number): void {')
  out.push(`  const ${Array.from({ length: 16 }, (_, i) => `m${i} = m[${i}]!`).join(', ')}`)
  out.push(`  let ${Array.from({ length: 8 }, (_, i) => `v${i} = h[${i}]!`).join(', ')}`)
  const tail = IV32.map((iv, i) => {
    const x = i === 4 ? ' ^ t0' : i === 5 ? ' ^ t1' : i === 6 ? ' ^ f0' : i === 7 ? ' ^ f1' : ''
    return `v${i + 8} = ${i32(iv)}${x}`
  })
  out.push(`  let ${tail.join(', ')}`)
  for (let r = 0; r < 10; r++) {
    out.push(`  // round ${r}`)
    STEPS.forEach(([a, b, c, d], k) => {
      const x = `m${SIGMA[r]![2 * k]}`
      const y = `m${SIGMA[r]![2 * k + 1]}`
      out.push(`  v${a} = (v${a} + v${b} + ${x}) | 0; v${d} ^= v${a}; v${d} = (v${d} >>> 16) | (v${d} << 16)`)
      out.push(`  v${c} = (v${c} + v${d}) | 0; v${b} ^= v${c}; v${b} = (v${b} >>> 12) | (v${b} << 20)`)
      out.push(`  v${a} = (v${a} + v${b} + ${y}) | 0; v${d} ^= v${a}; v${d} = (v${d} >>> 8) | (v${d} << 24)`)
      out.push(`  v${c} = (v${c} + v${d}) | 0; v${b} ^= v${c}; v${b} = (v${b} >>> 7) | (v${b} << 25)`)
    })
  }
  for (let i = 0; i < 8; i++) out.push(`  h[${i}] = h[${i}]! ^ v${i} ^ v${i + 8}`)
  out.push('}')
  return out.join('\n')
}

// BLAKE2b keeps its 12-round loop: fully unrolled it exceeds what TurboFan will optimise.
function blake2b(): string {
  const out: string[] = []
  const sig = Array.from({ length: 12 }, (_, r) => SIGMA[r % 10]!.map((x) => 2 * x)).flat()
  out.push(`const SIGMA_B = Uint8Array.from([${sig.join(', ')}])`)
  out.push('')
  out.push('export function blake2bCompress(h: Int32Array, m: Int32Array, t0: number, t1: number, f0: number, f1: number): void {')
  out.push(`  let ${Array.from({ length: 8 }, (_, i) => `v${i}l = h[${2 * i}]!, v${i}h = h[${2 * i + 1}]!`).join(', ')}`)
  const hi = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
  const tail = IV64_LO.map((lo, i) => {
    const xl = i === 4 ? ' ^ t0' : i === 6 ? ' ^ f0' : i === 7 ? ' ^ f1' : ''
    const xh = i === 4 ? ' ^ t1' : i === 6 ? ' ^ f0' : i === 7 ? ' ^ f1' : ''
    return `v${i + 8}l = ${i32(lo)}${xl}, v${i + 8}h = ${i32(hi[i]!)}${xh}`
  })
  out.push(`  let ${tail.join(', ')}`)
  out.push('  let l = 0, tl = 0, th = 0, x = 0, y = 0')
  out.push('  for (let s = 0; s < 192; s += 16) {')
  STEPS.forEach(([a, b, c, d], k) => {
    const A = `v${a}`, B = `v${b}`, C = `v${c}`, D = `v${d}`
    out.push(`    x = SIGMA_B[s + ${2 * k}]!; y = SIGMA_B[s + ${2 * k + 1}]!`)
    out.push(`    l = (${A}l >>> 0) + (${B}l >>> 0) + (m[x]! >>> 0); ${A}h = (${A}h + ${B}h + m[x + 1]! + ${carry}) | 0; ${A}l = l | 0`)
    out.push(`    tl = ${D}l ^ ${A}l; ${D}l = ${D}h ^ ${A}h; ${D}h = tl`)
    out.push(`    ${add64(C, [D])}`)
    out.push(`    tl = ${B}l ^ ${C}l; th = ${B}h ^ ${C}h; ${B}l = (tl >>> 24) | (th << 8); ${B}h = (th >>> 24) | (tl << 8)`)
    out.push(`    l = (${A}l >>> 0) + (${B}l >>> 0) + (m[y]! >>> 0); ${A}h = (${A}h + ${B}h + m[y + 1]! + ${carry}) | 0; ${A}l = l | 0`)
    out.push(`    tl = ${D}l ^ ${A}l; th = ${D}h ^ ${A}h; ${D}l = (tl >>> 16) | (th << 16); ${D}h = (th >>> 16) | (tl << 16)`)
    out.push(`    ${add64(C, [D])}`)
    out.push(`    tl = ${B}l ^ ${C}l; th = ${B}h ^ ${C}h; ${B}l = (tl << 1) | (th >>> 31); ${B}h = (th << 1) | (tl >>> 31)`)
  })
  out.push('  }')
  for (let i = 0; i < 8; i++) {
    out.push(`  h[${2 * i}] = h[${2 * i}]! ^ v${i}l ^ v${i + 8}l; h[${2 * i + 1}] = h[${2 * i + 1}]! ^ v${i}h ^ v${i + 8}h`)
  }
  out.push('}')
  return out.join('\n')
}

/** `x = rotl64(x, r)` on (lo, hi) locals, r constant. */
function rotl(x: string, r: number): string {
  if (r === 32) return `tl = ${x}l; ${x}l = ${x}h; ${x}h = tl`
  if (r < 32) {
    return `tl = (${x}l << ${r}) | (${x}h >>> ${32 - r}); ${x}h = (${x}h << ${r}) | (${x}l >>> ${32 - r}); ${x}l = tl`
  }
  const q = r - 32
  return `tl = (${x}h << ${q}) | (${x}l >>> ${32 - q}); ${x}h = (${x}l << ${q}) | (${x}h >>> ${32 - q}); ${x}l = tl`
}

/**
 * Threefish-256/512 as one UBI step: chain := E(chain, tweak, m) ^ m. The 8-round body (two
 * key injections) runs 9 times; instead of indexing the key schedule modulo 9 and the tweak
 * modulo 3, the key and tweak locals rotate by one word after every injection.
 */
function threefish(nw: 4 | 8): string {
  const R = nw === 4 ? R256 : R512
  const pi = nw === 4 ? PI256 : PI512
  const words = (p: string, n: number) => Array.from({ length: n }, (_, i) => `${p}${i}`)
  const x = words('x', nw)
  const k = words('k', nw + 1)
  const out: string[] = []
  out.push(`export function threefish${nw * 64}(chain: Int32Array, m: Int32Array, tweak: Int32Array): void {`)
  out.push(`  let ${x.map((w, i) => `${w}l = m[${2 * i}]!, ${w}h = m[${2 * i + 1}]!`).join(', ')}`)
  out.push(`  let ${k.slice(0, nw).map((w, i) => `${w}l = chain[${2 * i}]!, ${w}h = chain[${2 * i + 1}]!`).join(', ')}`)
  // C240 = 0x1BD11BDAA9FC1A22 makes the extra key word the parity of the others.
  out.push(`  let ${k[nw]}l = ${i32(0xa9fc1a22)} ^ ${k.slice(0, nw).map((w) => `${w}l`).join(' ^ ')}`)
  out.push(`  let ${k[nw]}h = ${i32(0x1bd11bda)} ^ ${k.slice(0, nw).map((w) => `${w}h`).join(' ^ ')}`)
  out.push('  let t0l = tweak[0]!, t0h = tweak[1]!, t1l = tweak[2]!, t1h = tweak[3]!')
  out.push('  let t2l = t0l ^ t1l, t2h = t0h ^ t1h')
  out.push('  let l = 0, tl = 0, th = 0')

  const inject = (s: string): string[] => {
    const lines = x.map((w, i) => {
      if (i === nw - 3) return `  ${add64(w, [k[i]!, 't0'])}`
      if (i === nw - 2) return `  ${add64(w, [k[i]!, 't1'])}`
      if (i === nw - 1) return `  ${add64(w, [k[i]!], s)}`
      return `  ${add64(w, [k[i]!])}`
    })
    lines.push(`  tl = ${k[0]}l; th = ${k[0]}h`)
    for (let i = 0; i < nw; i++) lines.push(`  ${k[i]}l = ${k[i + 1]}l; ${k[i]}h = ${k[i + 1]}h`)
    lines.push(`  ${k[nw]}l = tl; ${k[nw]}h = th`)
    lines.push('  tl = t0l; th = t0h; t0l = t1l; t0h = t1h; t1l = t2l; t1h = t2h; t2l = tl; t2h = th')
    return lines.map((s) => `  ${s}`)
  }

  // Where each logical word lives: after the 4 rounds between injections it is home again.
  let pos = x.map((_, i) => i)
  const rounds = (d0: number): string[] => {
    const lines: string[] = []
    for (let d = d0; d < d0 + 4; d++) {
      lines.push(`    // round ${d} (mod 8)`)
      for (let j = 0; j < nw / 2; j++) {
        const a = x[pos[2 * j]!]!
        const b = x[pos[2 * j + 1]!]!
        lines.push(`    ${add64(a, [b])}`)
        lines.push(`    ${rotl(b, R[d]![j]!)}; ${b}l ^= ${a}l; ${b}h ^= ${a}h`)
      }
      pos = pi.map((p) => pos[p]!)
    }
    if (pos.some((p, i) => p !== i)) throw new Error('Threefish permutation does not return home after 4 rounds')
    return lines
  }

  out.push('  for (let s = 0; s < 18; s += 2) {')
  out.push(...inject('s'))
  out.push(...rounds(0))
  out.push(...inject('s + 1'))
  out.push(...rounds(4))
  out.push('  }')
  out.push(...inject('18').map((s) => s.slice(2)))
  for (let i = 0; i < nw; i++) {
    out.push(`  chain[${2 * i}] = ${x[i]}l ^ m[${2 * i}]!; chain[${2 * i + 1}] = ${x[i]}h ^ m[${2 * i + 1}]!`)
  }
  out.push('}')
  return out.join('\n')
}

export function generate(): string {
  return [
    '// GENERATED by src/streams/hashers/generate.ts; do not edit. 64-bit words are (lo, hi) int32 pairs.',
    '/* eslint-disable */',
    '',
    blake2s(),
    '',
    blake2b(),
    '',
    threefish(4),
    '',
    threefish(8),
    '',
  ].join('\n')
}

/** Where the generated file lives in the source tree (this module runs from dist/). */
export const UNROLLED_SOURCE = fileURLToPath(new URL('../../../../src/streams/hashers/unrolled.ts', import.meta.url))

if (process.argv[1] === fileURLToPath(import.meta.url)) writeFileSync(UNROLLED_SOURCE, generate())
