// The rebalance plan (src/placement/rebalance.ts) on generated clusters: random nodes,
// maxsizes, balanced expressions, keys and where they are. Properties:
// - one run: when the plan settles (it does on every generated case here), carrying it out
//   and planning again moves nothing;
// - safety: no key loses its last cluster copy or falls below numcopies (or below the copies
//   it had, if fewer), required content stays, no node is pushed over its maxsize;
// - the result is what the expressions want: every node holds a key exactly when it wants
//   it, except copies kept for numcopies and keys a wanted node has no room for.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { parseKey, serializeKey, type Key } from '../../src/keys/key.js'
import { asUuid, type Uuid } from '../../src/remotes/remote.js'
import type { PlacementPolicy } from '../../src/placement/decide.js'
import { countedCopies, planRebalance, type RebalanceInput, type RebalancePlan } from '../../src/placement/rebalance.js'
import { wants } from '../../src/placement/decide.js'

const RUNS = Number(process.env['FC_RUNS'] ?? 1000)
const replay = process.env['FC_SEED'] === undefined ? {} : { seed: Number(process.env['FC_SEED']), path: process.env['FC_PATH'] }

const uuid = (i: number): Uuid => asUuid(`44444444-4444-4444-8444-${i.toString(16).padStart(12, '0')}`)
/** A repository outside the cluster (a client) that may hold copies too. */
const OUTSIDE = asUuid('55555555-5555-4555-8555-000000000001')

interface Case {
  readonly nodes: ReadonlyArray<{ readonly maxSize: number | undefined }>
  readonly expression: string
  readonly keys: ReadonlyArray<{ readonly size: number; readonly at: readonly number[]; readonly outside: boolean }>
  readonly numCopies: number
}

function policyOf(c: Case): PlacementPolicy {
  const all = new Set(['g'])
  const maxSize = new Map<string, number>()
  c.nodes.forEach((n, i) => n.maxSize !== undefined && maxSize.set(uuid(i), n.maxSize))
  return {
    preferredContent: new Map(c.nodes.map((_, i) => [uuid(i), c.expression])),
    requiredContent: new Map(),
    groups: new Map(c.nodes.map((_, i) => [uuid(i), all])),
    groupPreferredContent: new Map(),
    trust: new Map(),
    maxSize,
  }
}

interface State {
  readonly keys: Key[]
  readonly locations: Array<Set<string>>
}

function stateOf(c: Case): State {
  const keys = c.keys.map((k, i) => parseKey(`WORM-s${k.size}--r${i}`))
  const locations = c.keys.map((k) => new Set<string>([...k.at.map((n) => uuid(n % c.nodes.length)), ...(k.outside ? [OUTSIDE] : [])]))
  return { keys, locations }
}

function sizesOf(s: State): Map<string, number> {
  const out = new Map<string, number>()
  s.keys.forEach((k, i) => {
    for (const u of s.locations[i]!) out.set(u, (out.get(u) ?? 0) + (k.size ?? 0))
  })
  return out
}

function inputOf(c: Case, s: State): RebalanceInput {
  return {
    policy: policyOf(c),
    nodes: c.nodes.map((_, i) => uuid(i)),
    keys: s.keys.map((key, i) => ({ key, locations: s.locations[i]! })),
    committed: sizesOf(s),
    numCopies: c.numCopies,
  }
}

function apply(s: State, plan: RebalancePlan): State {
  const locations = s.locations.map((l) => new Set(l))
  const index = new Map(s.keys.map((k, i) => [serializeKey(k), i]))
  for (const m of plan.moves) {
    const i = index.get(serializeKey(m.key))!
    for (const u of m.add) locations[i]!.add(u)
    for (const u of m.drop) locations[i]!.delete(u)
  }
  return { keys: s.keys, locations }
}

const EXPRESSIONS = ['sizebalanced=g:1', 'sizebalanced=g:2', 'balanced=g:1', 'balanced=g:2', 'fullysizebalanced=g:1', 'balanced=g:1 or largerthan=20']

const caseArb: fc.Arbitrary<Case> = fc
  .record({
    nodes: fc.array(fc.record({ maxSize: fc.option(fc.integer({ min: 0, max: 200 }), { nil: undefined, freq: 5 }) }), { minLength: 1, maxLength: 5 }),
    expression: fc.constantFrom(...EXPRESSIONS),
    keys: fc.array(fc.record({ size: fc.integer({ min: 1, max: 30 }), at: fc.array(fc.nat(), { maxLength: 3 }), outside: fc.boolean() }), { maxLength: 30 }),
    numCopies: fc.integer({ min: 1, max: 3 }),
  })

function check(c: Case): void {
  const s0 = stateOf(c)
  const input = inputOf(c, s0)
  const plan = planRebalance(input)
  stats.runs++
  if (!plan.settled) stats.unsettled++
  const s1 = apply(s0, plan)
  const sizes0 = sizesOf(s0)
  const sizes1 = sizesOf(s1)
  assert.deepEqual([...sizes1].sort(), [...plan.sizes].filter(([, v]) => v !== 0).sort(), 'the plan reports the sizes it leads to')
  // One run: nothing left to move.
  if (plan.settled) assert.deepEqual(planRebalance(inputOf(c, s1)).moves.map((m) => serializeKey(m.key)), [], 'a second run moves nothing')
  const policy = input.policy
  const nodes = c.nodes.map((_, i) => uuid(i))
  for (const u of nodes) {
    const max = policy.maxSize.get(u)
    if (max !== undefined) assert.ok((sizes1.get(u) ?? 0) <= Math.max(max, sizes0.get(u) ?? 0), `${u} pushed over its maxsize`)
  }
  s0.keys.forEach((k, i) => {
    const before = s0.locations[i]!
    const after = s1.locations[i]!
    const cb = nodes.filter((u) => before.has(u)).length
    const ca = nodes.filter((u) => after.has(u)).length
    if (cb > 0) assert.ok(ca > 0, `${serializeKey(k)} lost its last cluster copy`)
    assert.ok(countedCopies(policy, nodes, after) >= Math.min(countedCopies(policy, nodes, before), c.numCopies), `${serializeKey(k)} fell below numcopies`)
    if (cb === 0) return assert.equal(ca, 0, `${serializeKey(k)}: placed though no node held it`)
    if (!plan.settled) return
    // What the expressions want: a holder that does not want the key is kept only for copies.
    const wanting = nodes.filter((u) => wants({ policy, key: k, locations: after, unconfiguredWants: false }, u, sizes1, { rebalance: true }))
    if (wanting.length === 0) return
    const lacking = wanting.filter((u) => !after.has(u))
    assert.ok(lacking.length === 0 || plan.short.some((x) => serializeKey(x) === serializeKey(k)), `${serializeKey(k)}: ${lacking.join(',')} want it and did not get it`)
    const extra = nodes.filter((u) => after.has(u) && !wanting.includes(u))
    if (extra.length > 0) {
      const kept = countedCopies(policy, nodes, after) - 1 < c.numCopies || ca - 1 < Math.min(cb, wanting.length)
      assert.ok(kept, `${serializeKey(k)} still on ${extra.join(',')}, which do not want it`)
    }
  })
}

const stats = { runs: 0, unsettled: 0 }

test('rebalance plans settle in one run, keep every copy numcopies needs and never overfill', (t) => {
  fc.assert(fc.property(caseArb, check), { numRuns: RUNS, ...replay })
  t.diagnostic(`${stats.unsettled} of ${stats.runs} generated clusters have no stable placement (left as they were)`)
  // Clusters without a fixed point exist (hash-balanced over nearly full nodes) but are the exception.
  assert.ok(stats.unsettled < stats.runs / 20, JSON.stringify(stats))
})

test('sizebalanced=g:1 settles whenever the nodes have the same maxsize', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 5 }),
      fc.integer({ min: 20, max: 300 }),
      fc.array(fc.record({ size: fc.integer({ min: 1, max: 30 }), at: fc.array(fc.nat(), { minLength: 1, maxLength: 2 }), outside: fc.boolean() }), { maxLength: 40 }),
      (n, max, keys) => {
        const c: Case = { nodes: Array.from({ length: n }, () => ({ maxSize: max })), expression: 'sizebalanced=g:1', keys, numCopies: 1 }
        const plan = planRebalance(inputOf(c, stateOf(c)))
        assert.ok(plan.settled, `no fixed point after ${plan.passes} passes`)
        check(c)
      },
    ),
    { numRuns: RUNS, ...replay },
  )
})

test('a fourth node added to three full ones: one run fills it to the same level, a second moves nothing', () => {
  // 3 nodes of 1000 bytes each about 90% full of 10-byte keys, sizebalanced=g:1; node 3 new and empty.
  const keys: Case['keys'] = Array.from({ length: 270 }, (_, i) => ({ size: 10, at: [i % 3], outside: false }))
  const c: Case = { nodes: [{ maxSize: 1000 }, { maxSize: 1000 }, { maxSize: 1000 }, { maxSize: 1000 }], expression: 'sizebalanced=g:1', keys, numCopies: 1 }
  const s0 = stateOf(c)
  const plan = planRebalance(inputOf(c, s0))
  assert.ok(plan.settled)
  // Every move is one copy to the new node and one drop from an old one.
  for (const m of plan.moves) {
    assert.deepEqual(m.add, [uuid(3)])
    assert.equal(m.drop.length, 1)
  }
  const sizes = sizesOf(apply(s0, plan))
  const fills = [0, 1, 2, 3].map((i) => sizes.get(uuid(i)) ?? 0)
  assert.ok(Math.max(...fills) - Math.min(...fills) <= 10, `fills ${fills.join(' ')}`)
  assert.equal(fills.reduce((a, b) => a + b), 2700)
  assert.deepEqual(planRebalance(inputOf(c, apply(s0, plan))).moves, [])
})

test('nothing wanted, nothing moved; a node without preferred content keeps what it has', () => {
  const c: Case = { nodes: [{ maxSize: 100 }, { maxSize: 100 }], expression: 'include=*.nomatch', keys: [{ size: 5, at: [0], outside: false }], numCopies: 1 }
  assert.deepEqual(planRebalance(inputOf(c, stateOf(c))).moves, [])
  const mixed = inputOf({ ...c, expression: 'sizebalanced=g:1' }, stateOf(c))
  // Node 0 has no expression: it keeps its copy, whoever else wants one.
  const policy = { ...mixed.policy, preferredContent: new Map([[uuid(1), 'sizebalanced=g:1']]) }
  for (const m of planRebalance({ ...mixed, policy }).moves) assert.deepEqual(m.drop, [])
})
