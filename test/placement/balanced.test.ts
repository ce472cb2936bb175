// Balanced picking (spec §7.5, git-annex Annex/Balanced.hs): git-annex's own fixed vector,
// the size rules, and properties of the picker.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import fc from 'fast-check'
import { parseKey } from '../../src/keys/key.js'
import { evaluate, parse } from '../../src/placement/preferred-content.js'
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

// Spec §7.5's observed check names its UUIDs only by prefix (33189…, 60c89…, e9c29…), so the
// same check was run with git-annex 10.20250416 on UUIDs with those prefixes (three directory
// special remotes created with `initremote … uuid=`, all in group g, `wanted fullybalanced=g`,
// `find --want-get-by=<remote>`); test/placement/git-annex.test.ts repeats it live.
describe('§7.5 observed check (fixed vector from git-annex)', () => {
  const A = '33189000-0000-4000-8000-000000000001'
  const B = '60c89000-0000-4000-8000-000000000002'
  const C = 'e9c29000-0000-4000-8000-000000000003'
  const groups = new Map([A, B, C].map((u) => [u, new Set(['g'])]))
  const chooser = (key: string, maxSizes = new Map<string, number>()): string[] =>
    [A, B, C].filter((uuid) => evaluate(parse('fullybalanced=g'), { uuid, key: parseKey(key), locations: new Set(), groups, maxSizes }))
  test('no maxsize', () => {
    assert.deepEqual(chooser('WORM--a'), [C])
    assert.deepEqual(chooser('WORM--c'), [B])
    assert.deepEqual(chooser('SHA256E-s5--abc.txt'), [C])
    assert.deepEqual(chooser('WORM-s100--c'), [A])
  })
  test('maxsize 1000 on 33189…, 0 on e9c29…', () => {
    const m = new Map([[A, 1000], [C, 0]])
    assert.deepEqual(chooser('WORM--a', m), [C]) // an unsized key fits in maxsize 0
    assert.deepEqual(chooser('WORM--c', m), [B])
    assert.deepEqual(chooser('SHA256E-s5--abc.txt', m), [A])
    assert.deepEqual(chooser('WORM-s100--c', m), [A])
  })
  test('balanced=g:N picks exactly min(N, candidates) members', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 5 }), fc.string({ minLength: 1, maxLength: 12 }), fc.subarray([A, B, C]), (n, name, full) => {
        const key = parseKey(`WORM-s10--${name.replace(/\s/g, '_')}`)
        const maxSizes = new Map(full.map((u) => [u, 5])) // too small for the key
        for (const term of ['fullybalanced', 'balanced']) {
          // balanced= is also `present or not copies=g:N`: with no copies anywhere, the same picks.
          const wanting = [A, B, C].filter((uuid) => evaluate(parse(`${term}=g:${n}`), { uuid, key, locations: new Set(), groups, maxSizes }))
          assert.equal(wanting.length, Math.min(n, 3 - full.length))
          for (const u of wanting) assert.ok(!full.includes(u))
        }
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
