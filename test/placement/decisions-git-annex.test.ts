// Sequential placement decisions equal git-annex's. The simulator places uploads one at a
// time (one gateway, nothing in flight at any decision) with drops and maxsize changes in
// between; the state it reaches (nodes, their maxsize and preferred content, each key's
// locations) is then given to real git-annex: directory special remotes with the nodes'
// UUIDs, `group`, `wanted`, `maxsize`, files without content (`fromkey`) and locations
// (`setpresentkey`). For every key and node, `git annex find --want-get-by` must agree with
// the preferred content evaluation the decision used, and each decision's targets must be
// the wanting nodes lacking the key (or, when none wants it, every node lacking it with room).
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { test } from 'node:test'
import fc from 'fast-check'
import { serializeKey } from '../../src/keys/key.js'
import { decidePlacement, hasRoom, wants } from '../../src/placement/decide.js'
import { Simulation, type SimAction, type SimConfig } from '../../src/placement/simulator.js'
import { annex, makeRepo, sh, tempDir } from '../helpers/annex.js'

const SAMPLES = Number(process.env['PLACEMENT_GIT_ANNEX_SAMPLES'] ?? 8)

const EXPRESSIONS = ['sizebalanced=g:1', 'sizebalanced=g:2', 'balanced=g:1', 'balanced=g:2', 'fullysizebalanced=g:1', 'largerthan=12 or balanced=g:1', 'fullybalanced=g:2']

const sample = fc.record({
  nodes: fc.array(fc.record({ maxSize: fc.option(fc.integer({ min: 0, max: 90 }), { nil: undefined, freq: 5 }) }), { minLength: 2, maxLength: 4 }),
  expression: fc.constantFrom(...EXPRESSIONS),
  keySizes: fc.array(fc.option(fc.integer({ min: 1, max: 25 }), { nil: undefined, freq: 8 }), { minLength: 20, maxLength: 40 }),
  events: fc.array(
    fc.oneof(
      { weight: 8, arbitrary: fc.record({ t: fc.constant('upload' as const), key: fc.nat(), gw: fc.constant(0), outcome: fc.constant('stored' as const), failMask: fc.constant(0) }) },
      { weight: 1, arbitrary: fc.record({ t: fc.constant('drop' as const), key: fc.nat(), node: fc.nat() }) },
      { weight: 1, arbitrary: fc.record({ t: fc.constant('maxsize' as const), node: fc.nat(), value: fc.option(fc.integer({ min: 0, max: 90 }), { nil: undefined }) }) },
    ),
    { minLength: 10, maxLength: 40 },
  ),
})

test(`sequential decisions on ${SAMPLES} simulated cluster states equal git annex find --want-get-by`, async (t) => {
  const samples = fc.sample(sample, { numRuns: SAMPLES, seed: 12_2025 })
  let compared = 0
  let wanted = 0
  for (const [si, s] of samples.entries()) {
    const cfg: SimConfig = { nodes: s.nodes, expression: s.expression, gateways: 1, keySizes: s.keySizes, leaseMs: 30, atomic: true }
    const sim = new Simulation(cfg)
    // One upload at a time: each runs to its end before the next event.
    for (const e of s.events as SimAction[]) {
      sim.apply(e)
      while (sim.busy()) sim.apply({ t: 'step', pick: 0 })
    }
    const policy = sim.policy()
    const nodes = sim.nodeUuids()
    const committed = sim.committed()

    const root = await tempDir(t)
    const repo = await makeRepo(join(root, 'repo'), `sample ${si}`)
    const names = nodes.map((_, i) => `node${i}`)
    for (const [i, u] of nodes.entries()) {
      await sh(root, 'mkdir', [join(root, names[i]!)])
      await annex(repo, 'initremote', names[i]!, 'type=directory', `directory=${join(root, names[i]!)}`, 'encryption=none', `uuid=${u}`)
      await annex(repo, 'group', names[i]!, 'g')
      await annex(repo, 'wanted', names[i]!, s.expression)
      const max = policy.maxSize.get(u)
      if (max !== undefined) await annex(repo, 'maxsize', names[i]!, String(max))
    }
    const keys = sim.keyList()
    await sh(repo, 'git', ['annex', 'fromkey', '--force', '--batch'], { input: keys.map((k, i) => `${serializeKey(k)} f${i}\n`).join('') })
    const present = keys.flatMap((k) => [...sim.locationsOf(k)].map((u) => `${serializeKey(k)} ${u} 1\n`))
    if (present.length > 0) await sh(repo, 'git', ['annex', 'setpresentkey', '--batch'], { input: present.join('') })

    const bad: string[] = []
    for (const [i, u] of nodes.entries()) {
      const { stdout } = await annex(repo, 'find', `--want-get-by=${names[i]}`, '--format=${key}\\n')
      const theirs = new Set(stdout.split('\n').filter(Boolean))
      for (const k of keys) {
        const ours = wants({ policy, key: k, locations: sim.locationsOf(k) }, u, committed)
        compared++
        if (ours) wanted++
        if (ours !== theirs.has(serializeKey(k))) bad.push(`sample ${si} (${s.expression}; ${sim.describe()}): ${names[i]} ${serializeKey(k)} at [${[...sim.locationsOf(k)].map((x) => nodes.indexOf(x as never)).join(',')}] ours=${ours}`)
      }
    }
    // The decision for each key, with nothing in flight, is the rule of spec §3.4 over those answers.
    for (const k of keys) {
      const locations = sim.locationsOf(k)
      const d = decidePlacement({ policy, key: k, nodes, locations, committed, reserved: new Map() })
      const lacking = nodes.filter((u) => !locations.has(u))
      const roomy = lacking.filter((u) => hasRoom(policy, committed, u, k.size ?? 0))
      const wanting = roomy.filter((u) => wants({ policy, key: k, locations }, u, committed))
      const expected = lacking.length === 0 ? 'held' : roomy.length === 0 ? 'full' : (wanting.length > 0 ? wanting : roomy).join(',')
      const got = d.kind === 'send' ? d.targets.join(',') : d.kind
      if (got !== expected) bad.push(`sample ${si}: ${serializeKey(k)} decided ${got}, expected ${expected}`)
    }
    assert.deepEqual(bad.slice(0, 10), [], `${bad.length} disagreements`)
    t.diagnostic(`sample ${si}: ${s.expression}, ${nodes.length} nodes (${sim.describe()}), ${keys.length} keys`)
  }
  t.diagnostic(`${compared} decisions compared, ${wanted} wanted`)
  assert.ok(wanted > 0 && wanted < compared)
})
