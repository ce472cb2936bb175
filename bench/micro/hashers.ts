// Throughput of every implementation of every git-annex hash, as the verifier drives them:
// 64 KiB chunks (a typical socket read) into update(). Its output is what the AUTO table in
// src/keys/backend.ts records. Run: npx tsc -p . && node dist/bench/micro/hashers.js [--ms 500]
import { randomBytes } from 'node:crypto'
import { createImplementation, HASH_ALGORITHMS, implementationsOf, type HashAlgorithm, type Implementation } from '../../src/streams/hashers/index.js'

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name)
  return i >= 0 ? Number(process.argv[i + 1]) : dflt
}
const MS = arg('--ms', 500)
const CHUNK = arg('--chunk', 64 * 1024)
const chunk = randomBytes(CHUNK)
const only = process.argv.slice(2).filter((a) => /^[A-Z]/.test(a)) as HashAlgorithm[]

async function throughput(algo: HashAlgorithm, impl: Implementation): Promise<number> {
  // Warm up the JIT (and the wasm module cache) before timing.
  const warm = await createImplementation(algo, impl)
  for (let i = 0; i < 32; i++) warm.update(chunk)
  warm.digest()
  let best = 0
  // Best of three windows: the machine is shared, and the minimum noise is the useful figure.
  for (let round = 0; round < 3; round++) {
    const h = await createImplementation(algo, impl)
    let bytes = 0
    const t0 = performance.now()
    let t = t0
    while (t - t0 < MS / 3) {
      for (let i = 0; i < 8; i++) h.update(chunk)
      bytes += 8 * CHUNK
      t = performance.now()
    }
    h.digest()
    best = Math.max(best, bytes / 1e6 / ((t - t0) / 1000))
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
console.log(`node ${process.version}, ${CHUNK} B chunks, best of 3 × ${Math.round(MS / 3)} ms; MB/s (µs per 1 KiB object)`)
console.log(`${pad('algorithm', 12)} ${IMPLS.map((i) => pad(i, 18)).join(' ')} fastest`)
for (const algo of only.length ? only : HASH_ALGORITHMS) {
  const have = implementationsOf(algo)
  const cells: string[] = []
  let fastest: Implementation | undefined
  let top = 0
  for (const impl of IMPLS) {
    if (!have.includes(impl)) {
      cells.push(pad('-', 18))
      continue
    }
    const mbs = await throughput(algo, impl)
    const us = await perObjectMicros(algo, impl)
    cells.push(pad(`${mbs.toFixed(0)} (${us.toFixed(1)} µs)`, 18))
    if (mbs > top) {
      top = mbs
      fastest = impl
    }
  }
  console.log(`${pad(algo, 12)} ${cells.join(' ')} ${fastest}`)
}
