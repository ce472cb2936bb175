import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { ewma, rankHolders } from '../../src/placement/node-choice.js'

const node = (uuid: string, cost: number, inFlight: number, throughput?: number) => ({ uuid, cost, inFlight, throughput })

test('cost ranks first, then fewest in flight, then best throughput; unmeasured nodes get tried', () => {
  const ranked = rankHolders([
    node('a', 200, 0, 900),
    node('b', 100, 3, 500),
    node('c', 100, 1, 100),
    node('d', 100, 1, 800),
    node('e', 100, 1, undefined),
  ]).map((n) => n.uuid)
  assert.deepEqual(ranked, ['e', 'd', 'c', 'b', 'a'])
})

test('at equal cost the node fewer gateways away ranks first, before load; cost still ranks above hops', () => {
  const ranked = rankHolders([
    { uuid: 'via-gw', cost: 100, hops: 2, inFlight: 0, throughput: 900 },
    { uuid: 'direct', cost: 100, inFlight: 5, throughput: 10 },
    { uuid: 'two-gws', cost: 100, hops: 3, inFlight: 0, throughput: undefined },
    { uuid: 'cheap-far', cost: 50, hops: 3, inFlight: 9, throughput: 1 },
  ]).map((n) => n.uuid)
  assert.deepEqual(ranked, ['cheap-far', 'direct', 'via-gw', 'two-gws'])
})

test('ranking is a permutation and respects cost order', () => {
  const arb = fc.array(
    fc.record({ uuid: fc.uuid(), cost: fc.integer({ min: 0, max: 300 }), inFlight: fc.nat(10), throughput: fc.option(fc.nat(1e9), { nil: undefined }) }),
    { maxLength: 12 },
  )
  fc.assert(
    fc.property(arb, (nodes) => {
      const r = rankHolders(nodes)
      assert.equal(r.length, nodes.length)
      assert.deepEqual(new Set(r), new Set(nodes))
      for (let i = 1; i < r.length; i++) assert.ok(r[i - 1]!.cost <= r[i]!.cost)
    }),
  )
})

test('ewma starts at the first sample and moves toward new ones', () => {
  assert.equal(ewma(undefined, 100), 100)
  assert.equal(ewma(100, 200, 0.5), 150)
})
