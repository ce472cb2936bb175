import assert from 'node:assert/strict'
import { test } from 'node:test'
import { hopsVia } from '../../src/placement/hops.js'

const C = 'acc1fd67-8d0f-8481-9cbd-4febc456d43d'
const log = (entries: Record<string, string[]>) => new Map(Object.entries(entries).map(([g, us]) => [g, us.map((uuid) => ({ uuid }))]))

test('through a gateway that proxies nodes of the cluster itself: 2 hops', () => {
  assert.equal(hopsVia(log({ g1: [C, 'n1', 'n2'] }), 'g1', C), 2)
})

test('through a gateway that reaches the cluster only through another gateway: 3, and one more per gateway', () => {
  assert.equal(hopsVia(log({ g1: [C, 'g2'], g2: [C, 'n1'] }), 'g1', C), 3)
  assert.equal(hopsVia(log({ g1: [C, 'g2'], g2: [C, 'g3'], g3: [C, 'n1'] }), 'g1', C), 4)
  // The shortest way counts.
  assert.equal(hopsVia(log({ g1: [C, 'g2', 'g3'], g2: [C, 'g3'], g3: [C, 'n1'] }), 'g1', C), 3)
})

test('nothing known behind the gateway, or a loop of gateways: still at least 2, and bounded', () => {
  assert.equal(hopsVia(log({}), 'g1', C), 2)
  assert.equal(hopsVia(log({ g1: [C] }), 'g1', C), 2)
  const loop = hopsVia(log({ g1: [C, 'g2'], g2: [C, 'g1'] }), 'g1', C)
  assert.ok(loop >= 2 && loop <= 8, String(loop))
})
