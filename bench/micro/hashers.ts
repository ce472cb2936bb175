// Throughput of every implementation of every git-annex hash, as the verifier drives them:
// 64 KiB chunks (a typical socket read) into update(). Its output is what the AUTO table in
// src/keys/backend.ts records. Run: npx tsc -p . && node dist/bench/micro/hashers.js [--ms 500]
import { randomBytes } from 'node:crypto'
import { createImplementation, HASH_ALGORITHMS, implementationsOf, type HashAlgorithm, type Implementation } from '../../src/streams/hashers/index.js'

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name)
  return i >= 0 ? Number(process.argv[i + 1]) : dflt
}
const MS = arg('--ms', 1000)
const ROUNDS = arg('--rounds', 5)
const CHUNK = arg('--chunk', 64 * 1024)
const chunk = randomBytes(CHUNK)
const only = process.argv.slice(2).filter((a) => /^[A-Z]/.test(a)) as HashAlgorithm[]

/** MB/s of one timed window of `ms` milliseconds on an already warm implementation. */
async function window(algo: HashAlgorithm, impl: Implementation, ms: number): Promise<number> {
  const h = await createImplementation(algo, impl)
  let bytes = 0
  const t0 = performance.now()
  let t = t0
  while (t - t0 < ms) {
    for (let i = 0; i < 8; i++) h.update(chunk)
    bytes += 8 * CHUNK
    t = performance.now()
  }
  h.digest()
  return bytes / 1e6 / ((t - t0) / 1000)
}

/**
 * Best of ROUNDS windows per implementation, the implementations taking turns window by
 * window: on a shared machine load comes and goes, and interleaving exposes every
 * implementation to the same weather, so their ratio stays meaningful even when absolute
 * figures do not.
 */
async function throughputs(algo: HashAlgorithm, impls: Implementation[]): Promise<Map<Implementation, number>> {
  for (const impl of impls) {
    const warm = await createImplementation(algo, impl)
    for (let i = 0; i < 64; i++) warm.update(chunk)
    warm.digest()
  }
  const best = new Map<Implementation, number>(impls.map((i) => [i, 0]))
  for (let r = 0; r < ROUNDS; r++) {
    for (const impl of impls) best.set(impl, Math.max(best.get(impl)!, await window(algo, impl, MS / ROUNDS)))
  }
  return best
}

async function perObjectMicros(algo: HashAlgorithm, impl: Implementation): Promise<number> {
  const small = chunk.subarray(0, 1024)
  const n = 2000
  for (let i = 0; i < 100; i++) {
    const h = await createImplementation(algo, impl)
    h.update(small)
    h.digest()
  }
  const t0 = performance.now()
  for (let i = 0; i < n; i++) {
    const h = await createImplementation(algo, impl)
    h.update(small)
    h.digest()
  }
  return ((performance.now() - t0) * 1000) / n
}

const IMPLS: Implementation[] = ['native', 'wasm', 'ts']
const pad = (s: string, n: number) => s.padEnd(n)
console.log(`node ${process.version}, ${CHUNK} B chunks, best of ${ROUNDS} interleaved ${Math.round(MS / ROUNDS)} ms windows; MB/s (µs per 1 KiB object)`)
console.log(`${pad('algorithm', 12)} ${IMPLS.map((i) => pad(i, 18)).join(' ')} fastest`)
for (const algo of only.length ? only : HASH_ALGORITHMS) {
  const have = implementationsOf(algo)
  const mbs = await throughputs(algo, have)
  const cells: string[] = []
  for (const impl of IMPLS) {
    if (!have.includes(impl)) {
      cells.push(pad('-', 18))
      continue
    }
    const us = await perObjectMicros(algo, impl)
    cells.push(pad(`${mbs.get(impl)!.toFixed(0)} (${us.toFixed(1)} µs)`, 18))
  }
  const fastest = [...mbs].sort((a, b) => b[1] - a[1])[0]![0]
  console.log(`${pad(algo, 12)} ${cells.join(' ')} ${fastest}`)
}
