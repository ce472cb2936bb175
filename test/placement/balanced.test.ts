// Balanced picking (spec §7.5, git-annex Annex/Balanced.hs): git-annex's own fixed vector,
// the size rules, and properties of the picker.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import fc from 'fast-check'
import { parseKey } from '../../src/keys/key.js'
import {
  balancedPick,
  fullyBalancedCandidates,
  fullySizeBalancedCandidates,
  repoHasSpace,
} from '../../src/placement/balanced.js'

describe('balancedPick', () => {
  test('git-annex prop_balanced_stable: UUIDs "1".."500", WORM--test', () => {
    const us = Array.from({ length: 500 }, (_, i) => String(i + 1))
    const k = parseKey('WORM--test')
    assert.deepEqual(balancedPick(us, us, k, 1), ['332'])
    assert.deepEqual(balancedPick(us, us, k, 3), ['332', '333', '334'])
  })
  test('no candidates or n ≤ 0: nothing', () => {
    assert.deepEqual(balancedPick(['a'], [], parseKey('WORM--a'), 1), [])
    assert.deepEqual(balancedPick(['a'], ['a'], parseKey('WORM--a'), 0), [])
  })
  test('picks exactly min(n, |candidates|) distinct members, all candidates', () => {
    const uuid = fc.uuid()
    fc.assert(
      fc.property(fc.uniqueArray(uuid, { minLength: 1, maxLength: 8 }), fc.nat({ max: 10 }), fc.string({ minLength: 1, maxLength: 20 }), (members, n, name) => {
        const key = parseKey(`WORM--${name.replace(/\s/g, '_')}`)
        const candidates = members.filter((_, i) => i % 3 !== 1)
        const picks = balancedPick(members, candidates, key, n)
        assert.equal(new Set(picks).size, Math.min(n, candidates.length))
        for (const p of picks) assert.ok(candidates.includes(p))
        // stable: same inputs, same answer, whatever the order they come in
        assert.deepEqual(balancedPick([...members].reverse(), [...candidates].reverse(), key, n), picks)
      }),
    )
  })
})

describe('sizes', () => {
  test('repoHasSpace', () => {
    assert.equal(repoHasSpace(10, false, 90, 100), true)
    assert.equal(repoHasSpace(11, false, 90, 100), false)
    assert.equal(repoHasSpace(11, true, 100, 100), true)
    assert.equal(repoHasSpace(1, false, 0, 0), false)
    assert.equal(repoHasSpace(0, false, 0, 0), true)
  })
  const k = parseKey('WORM-s100--c')
  const members = new Set(['a', 'b', 'c'])
  test('fullybalanced: members without a maxsize always have space', () => {
    const sizes = { maxSizes: new Map([['a', 1000], ['c', 0]]), repoSizes: new Map([['a', 950]]) }
    assert.deepEqual(fullyBalancedCandidates(members, k, 1, new Set(), sizes), ['b'])
    assert.deepEqual(fullyBalancedCandidates(members, k, 1, new Set(['a']), sizes), ['a', 'b'])
  })
  test('fullysizebalanced: most free first, ties to the higher UUID, only members with maxsize > 0', () => {
    const sizes = { maxSizes: new Map([['a', 1000], ['b', 1000], ['c', 500]]), repoSizes: new Map([['a', 500], ['b', 500], ['c', 100]]) }
    assert.deepEqual(fullySizeBalancedCandidates(members, k, 1, new Set(), sizes), ['c'])
    assert.deepEqual(fullySizeBalancedCandidates(members, k, 2, new Set(), sizes), ['c', 'b'])
    assert.deepEqual(fullySizeBalancedCandidates(members, k, 3, new Set(), sizes), ['c', 'b', 'a'])
  })
  test('rebalance switches fullybalanced to size balancing when too many are too full', () => {
    const sizes = { maxSizes: new Map([['a', 1000], ['b', 1000], ['c', 1000]]), repoSizes: new Map([['a', 950], ['b', 950], ['c', 100]]) }
    assert.deepEqual(fullyBalancedCandidates(members, k, 2, new Set(), sizes, { rebalance: true }), ['c'])
    assert.deepEqual(fullyBalancedCandidates(members, k, 2, new Set(), sizes, { rebalance: false }), ['c'])
    assert.deepEqual(fullyBalancedCandidates(members, k, 1, new Set(), sizes, { rebalance: true }), ['c'])
  })
})
