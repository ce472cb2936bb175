// --young-generation (src/config/young-generation.ts): V8's young generation is kept at the
// cap from inside the process, on Node 20 and 24 alike, while a workload that grows it
// without the cap (to 16 MiB per semi-space on Node 20, 64 on Node 24) runs.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { test } from 'node:test'
import { promisify } from 'node:util'
import { PROJECT_ROOT } from '../helpers/annex.js'

const run = promisify(execFile)
const MODULE = join(PROJECT_ROOT, 'dist/src/config/young-generation.js')

/**
 * The semi-space size (MiB) sampled after each of 300 rounds of allocation in a fresh
 * process, `cap` set first unless undefined. Objects outlive a scavenge or two, which is
 * what makes V8 grow the young generation; the rounds yield to the event loop, as a server does.
 */
async function semiSpaces(cap: number | undefined): Promise<number[]> {
  const script = `
    const m = await import(${JSON.stringify(MODULE)})
    ${cap === undefined ? '' : `m.capYoungGeneration(${cap})`}
    const sizes = []
    let keep = []
    for (let round = 0; round < 300; round++) {
      for (let i = 0; i < 100000; i++) {
        const o = { a: i, b: [i] }
        if (i % 50 === 0) { keep.push(o); if (keep.length > 20000) keep = [] }
      }
      sizes.push(m.semiSpaceBytes() / 2 ** 20)
      await new Promise((r) => setImmediate(r))
    }
    process.stdout.write(JSON.stringify(sizes))`
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { timeout: 300_000 })
  return JSON.parse(stdout) as number[]
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

test('the young generation stays at the cap where it grows to 16 MiB or more without it', { timeout: 900_000 }, async () => {
  const free = await semiSpaces(undefined)
  assert.ok(Math.max(...free) >= 16, `without a cap the workload grows the young generation (${Math.max(...free)} MiB per semi-space)`)
  for (const cap of [2, 8]) {
    const capped = await semiSpaces(cap)
    // Once grown to the cap it stays there; a sample taken in the middle of a collection
    // can show pages V8 is moving, so the settled size is the median of the later rounds.
    const late = capped.slice(150)
    assert.ok(median(late) <= cap, `--young-generation ${cap}: ${median(late)} MiB per semi-space (samples ${JSON.stringify(late)})`)
  }
  // 0: V8's own limit, as without the setting.
  const zero = await semiSpaces(0)
  assert.ok(Math.max(...zero) >= 16, `--young-generation 0 leaves V8's limit (${Math.max(...zero)} MiB)`)
})
