// --young-generation (src/config/young-generation.ts): V8's young generation is kept at the
// cap from inside the process, on Node 20 and 24 alike, while a workload that grows it
// without the cap (to 16 MiB per semi-space on Node 20, 64 on Node 24) runs.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { test } from 'node:test'
import { promisify } from 'node:util'
import { PROJECT_ROOT } from '../helpers/annex.js'
import { allocationRounds, settledMiB } from '../helpers/young-generation.js'

const run = promisify(execFile)
const MODULE = join(PROJECT_ROOT, 'dist/src/config/young-generation.js')

/** The semi-space size (MiB) after each round of allocationRounds in a fresh process, `cap` set first unless undefined. */
async function semiSpaces(cap: number | undefined): Promise<number[]> {
  const script = `
    const m = await import(${JSON.stringify(MODULE)})
    ${cap === undefined ? '' : `m.capYoungGeneration(${cap})`}
    process.stdout.write(JSON.stringify(await ${allocationRounds('m.semiSpaceBytes() / 2 ** 20')}))`
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { timeout: 300_000 })
  return JSON.parse(stdout) as number[]
}

test('the young generation stays at the cap where it grows to 16 MiB or more without it', { timeout: 900_000 }, async () => {
  const free = await semiSpaces(undefined)
  assert.ok(Math.max(...free) >= 16, `without a cap the workload grows the young generation (${Math.max(...free)} MiB per semi-space)`)
  for (const cap of [2, 8]) {
    const capped = await semiSpaces(cap)
    // Once grown to the cap it stays there.
    assert.ok(settledMiB(capped) <= cap, `--young-generation ${cap}: ${settledMiB(capped)} MiB per semi-space (samples ${JSON.stringify(capped.slice(150))})`)
  }
  // 0: V8's own limit, as without the setting.
  const zero = await semiSpaces(0)
  assert.ok(Math.max(...zero) >= 16, `--young-generation 0 leaves V8's limit (${Math.max(...zero)} MiB)`)
})
