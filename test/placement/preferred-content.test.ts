// Preferred content parsing and evaluation: git-annex's grammar quirks, sizes, globs and terms
// as read from git-annex 10.20250416 (each quirk noted here was also observed with
// `git annex matchexpression`), plus fast-check properties of the evaluator.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import fc from 'fast-check'
import { parseKey } from '../../src/keys/key.js'
import {
  evaluate,
  format,
  isPreferredContent,
  matchGlob,
  parse,
  type EvalContext,
  type Expr,
} from '../../src/placement/preferred-content.js'
import { standardExpression, standardGroupOf, STANDARD_GROUPS } from '../../src/placement/standard-groups.js'
import { ConfigError, PreferredContentParseError, ProxyError } from '../../src/errors.js'
import { readSize } from '../../src/annex/data-units.js'

const U1 = '11111111-1111-4111-8111-111111111111'
const U2 = '22222222-2222-4222-8222-222222222222'
const U3 = '33333333-3333-4333-8333-333333333333'
const CLUSTER = 'ac000000-0000-8000-8000-000000000000'

function ctx(over: Partial<EvalContext> = {}): EvalContext {
  return {
    uuid: U1,
    key: parseKey('SHA256E-s1000--0123.mp3'),
    file: 'music/song.mp3',
    locations: new Set(),
    groups: new Map(),
    ...over,
  }
}
const ev = (expr: string, over: Partial<EvalContext> = {}): boolean => evaluate(parse(expr), ctx(over))

describe('grammar (Utility/Matcher.hs)', () => {
  test('and/or/not bind left to right with equal precedence', () => {
    // (anything or anything) and nothing
    assert.equal(ev('anything or anything and nothing'), false)
    assert.equal(ev('nothing and nothing or anything'), true)
    assert.equal(ev('anything or ( anything and nothing )'), true)
  })
  test('side-by-side terms are joined by and; not takes one term', () => {
    assert.equal(ev('anything nothing'), false)
    assert.equal(ev('anything not nothing'), true)
    assert.equal(ev('not nothing anything'), true)
    assert.equal(ev('not ( nothing or anything )'), false)
  })
  test('parentheses need no spaces', () => {
    assert.deepEqual(parse('(anything)or(nothing)'), parse('( anything ) or ( nothing )'))
  })
  test('a group nested in a group continues from what precedes it (git-annex quirk)', () => {
    // git-annex reads this as (nothing and nothing) or anything; observed: matches.
    assert.equal(ev('( nothing ( nothing or anything ) )'), true)
    // At the top level an implicit and is inserted first; observed: does not match.
    assert.equal(ev('nothing ( nothing or anything )'), false)
  })
  test('forgiving: missing or stray parens, dangling operators', () => {
    assert.equal(ev('( anything and nothing'), false)
    assert.equal(ev('anything ) )'), true)
    assert.equal(ev('nothing or'), true) // observed with matchexpression
    assert.deepEqual(parse(''), { kind: 'any' })
    assert.deepEqual(parse('  \t '), { kind: 'any' })
  })
  test('unknown words and bad values are typed ConfigErrors', () => {
    for (const bad of ['bogus', 'present=1', 'copies=x', 'copies=1.0', 'copies=1e0', 'copies=a:b:1', 'largerthan=.5', 'largerthan=10zz', 'balanced=g:x', 'balanced=g:1:2', 'metadata=tag=x', 'include=[abc']) {
      assert.throws(() => parse(bad), (e: unknown) => e instanceof PreferredContentParseError && e instanceof ConfigError && e instanceof ProxyError && e.code === 'CONFIG', bad)
    }
  })
  test('numbers are read as Haskell readish reads an Int prefix', () => {
    assert.equal(ev('copies=1abc', { locations: new Set([U2]) }), true)
    assert.equal(ev('copies=0x1', { locations: new Set([U2]) }), true)
    assert.equal(ev('copies=0x2', { locations: new Set([U2]) }), false)
    assert.equal(ev('copies=0o8'), true) // "0" then junk: 0 copies needed
    assert.equal(ev('copies=-1'), true)
  })
  test('format() round-trips', () => {
    for (const s of ['include=*.mp3 and ( not largerthan=100mb ) and exclude=old/*', standardExpression('transfer'), 'balanced=g:2 or present']) {
      const e = parse(s)
      assert.deepEqual(parse(format(e)), e)
    }
  })
})

describe('sizes (Utility/DataUnits.hs readSize)', () => {
  const cases: Array<[string, number | undefined]> = [
    ['10mb', 10_000_000], ['1GiB', 2 ** 30], ['1gib', 2 ** 30], ['100 KiloBytes', 100_000], ['0.5tb', 5e11],
    ['3', 3], ['1k', 1000], ['1Ki', 1024], ['2 megabytes', 2e6], ['1mbit', 125_000], ['1 kilobits', 125],
    ['2.5', 2], ['3.5', 4], ['0.5kb', 500], ['4.mb', 4], ['1e3', 1000], ['1e', 1e18], ['0x10', 16], ['-1', -1],
    ['5!', 5], ['10zz', undefined], ['.5', undefined], ['mb', undefined], ['', undefined],
    ['NaN', -Infinity], ['Infinity', Infinity],
  ]
  for (const [s, want] of cases) test(JSON.stringify(s), () => assert.equal(readSize(s), want))
  test('unsized keys are smaller than anything and larger than nothing', () => {
    const key = parseKey('URL--http://example.com/x')
    assert.equal(ev('smallerthan=1', { key }), true)
    assert.equal(ev('largerthan=0', { key }), false)
    assert.equal(ev('largerthan=999b', {}), true)
    assert.equal(ev('largerthan=1kb', {}), false)
    assert.equal(ev('smallerthan=1kb', {}), false)
  })
})

describe('globs (Utility/Glob.hs)', () => {
  const cases: Array<[string, string, boolean]> = [
    ['*.mp3', 'a/b/c.mp3', true], // * crosses directories
    ['*', 'x/y', true],
    ['*/archive/*', 'archive/x', false],
    ['archive/*', 'archive/x/y', true],
    ['a/b', 'a//b', true], // one / matches a run
    ['a?c', 'a/c', true],
    ['a?b', 'a\nb', false], // regex-tdfa's multiline mode
    ['*.mp3', 'a\nb.mp3', true],
    ['*.MP3', 'x.mp3', false],
    ['foo[Bb]ar', 'fooBar', true],
    ['foo[!B]ar', 'fooBar', false],
    ['foo[!B]ar', 'foocar', true],
    ['a[[:space:]]b', 'a b', true], // bracket ends at the second ']' of the regex: {space, \}
    ['a[[:space:]]b', 'a b]', false],
    ['[[:alpha:]]', 'é', false], // classes are ASCII
    ['[]x]', ']', true],
    ['x.y', 'xzy', false],
    ['a+b(c)', 'a+b(c)', true],
    ['é*', 'éa', true],
    ['[a-c]', 'b', true],
    ['a-b', 'a-b', true],
    ['*-', 'x-', true],
  ]
  for (const [glob, file, want] of cases) test(`${JSON.stringify(glob)} vs ${JSON.stringify(file)}`, () => assert.equal(matchGlob(glob, file), want))
  test('without an associated file include= fails and exclude= matches', () => {
    assert.equal(ev('include=*', { file: undefined }), false)
    assert.equal(ev('exclude=*', { file: undefined }), true)
  })
})

describe('terms (Limit.hs)', () => {
  const groups = new Map([
    [U1, new Set(['client'])],
    [U2, new Set(['archive', 'backup'])],
    [U3, new Set(['archive'])],
  ])
  test('copies counts non-dead, non-cluster locations, by group or trust', () => {
    const locations = new Set([U1, U2, U3, CLUSTER])
    const trust = new Map([[U3, 'dead' as const], [U1, 'trusted' as const]])
    assert.equal(ev('copies=2', { locations, trust }), true)
    assert.equal(ev('copies=3', { locations, trust }), false)
    assert.equal(ev('copies=archive:1', { locations, trust, groups }), true)
    assert.equal(ev('copies=archive:2', { locations, trust, groups }), false)
    assert.equal(ev('copies=trusted:1', { locations, trust }), true)
    assert.equal(ev('copies=semitrusted:2', { locations, trust }), false)
    assert.equal(ev('copies=semitrusted+:2', { locations, trust }), true)
    assert.equal(ev('copies=2', { locations, trust, assumeNotPresent: new Set([U2]) }), false)
  })
  test('lackingcopies ignores untrusted copies', () => {
    const locations = new Set([U2, U3])
    assert.equal(ev('approxlackingcopies=1', { locations, numCopies: 2 }), false)
    assert.equal(ev('approxlackingcopies=1', { locations, numCopies: 2, trust: new Map([[U3, 'untrusted']]) }), true)
    assert.equal(ev('lackingcopies=1', { locations: new Set(), numCopies: 1 }), true)
  })
  test('inallgroup / onlyingroup', () => {
    assert.equal(ev('inallgroup=archive', { groups, locations: new Set([U2]) }), false)
    assert.equal(ev('inallgroup=archive', { groups, locations: new Set([U2, U3]) }), true)
    assert.equal(ev('inallgroup=nosuch', { groups }), true)
    assert.equal(ev('onlyingroup=archive', { groups, locations: new Set([U2]) }), true)
    assert.equal(ev('onlyingroup=archive', { groups, locations: new Set([U2, U1]) }), false)
    assert.equal(ev('onlyingroup=archive', { groups, locations: new Set() }), false)
  })
  test('present, inbackend, securehash, unused, inpreferreddir', () => {
    assert.equal(ev('present', { locations: new Set([U1]) }), true)
    assert.equal(ev('present', { locations: new Set([U1]), trust: new Map([[U1, 'dead']]) }), false)
    assert.equal(ev('present', { present: true }), true)
    assert.equal(ev('inbackend=SHA256E'), true)
    assert.equal(ev('inbackend=SHA256'), false)
    assert.equal(ev('securehash'), true)
    assert.equal(ev('securehash', { key: parseKey('WORM-s1-m1--x') }), false)
    assert.equal(ev('securehash', { key: parseKey('SHA1--abc') }), false)
    assert.equal(ev('unused', { file: undefined, unused: true }), true)
    assert.equal(ev('unused', { unused: true }), false)
    // Only the file's own directory counts (System.FilePath splitPath keeps separators).
    assert.equal(ev('inpreferreddir', { file: 'a/public/c' }), true)
    assert.equal(ev('inpreferreddir', { file: 'a/public/b/c' }), false)
    assert.equal(ev('inpreferreddir', { file: 'a/pub/c', preferredDir: 'pub' }), true)
  })
  test('a negated present or balanced never matches', () => {
    assert.equal(ev('not present'), false)
    assert.equal(ev('not present or anything'), false) // observed with matchexpression
    assert.equal(ev('not not present', { present: true }), true)
    assert.equal(ev('not balanced=g', { groups: new Map([[U2, new Set(['g'])]]) }), false)
    assert.equal(ev('not fullybalanced=g', { groups: new Map([[U2, new Set(['g'])]]) }), true)
  })
})

describe('standard and groupwanted (Logs/PreferredContent.hs)', () => {
  test('the standard groups', () => {
    assert.equal(STANDARD_GROUPS.length, 10)
    assert.equal(standardGroupOf(['foo', 'client']), 'client')
    assert.equal(standardGroupOf(['client', 'archive']), undefined)
    for (const g of STANDARD_GROUPS) parse(standardExpression(g)) // all parse
  })
  test('standard expands for a repository in exactly one standard group, else acts as present', () => {
    const groups = new Map([[U1, new Set(['archive'])], [U2, new Set(['archive'])]])
    assert.equal(ev('standard', { groups }), true)
    assert.equal(ev('standard', { groups, locations: new Set([U2]) }), false) // archived elsewhere
    assert.equal(ev('standard', { groups: new Map([[U1, new Set(['backup'])]]) }), true)
    assert.equal(ev('standard', { groups: new Map([[U1, new Set(['unwanted'])]]), present: true }), false)
    assert.equal(ev('standard', { groups: new Map([[U1, new Set(['manual'])]]), present: false }), false)
    assert.equal(ev('standard', { groups: new Map([[U1, new Set(['manual'])]]), present: true }), true)
    assert.equal(ev('standard', { groups: new Map([[U1, new Set(['foo'])]]), present: true }), true)
    assert.equal(ev('standard', { groups: new Map([[U1, new Set(['foo'])]]), present: false }), false)
    assert.equal(ev('not standard', { groups: new Map([[U1, new Set(['backup'])]]) }), false)
    // client has no unstable term, so its negation is evaluated
    const archived = new Map([[U1, new Set(['client'])], [U2, new Set(['archive'])]])
    assert.equal(ev('not standard', { groups: archived, file: 'archive/x', locations: new Set([U2]) }), true)
    assert.equal(ev('not standard', { groups: archived, file: 'other/x', locations: new Set([U2]) }), false)
    // client: files in archive directories are not wanted once an archive has them
    const c = new Map([[U1, new Set(['client'])], [U2, new Set(['archive'])]])
    assert.equal(ev('standard', { groups: c, file: 'x/archive/y', locations: new Set([U2]) }), false)
    assert.equal(ev('standard', { groups: c, file: 'x/other/y', locations: new Set([U2]) }), true)
    // transfer: wanted until every client has it
    const t = new Map([[U1, new Set(['transfer'])], [U2, new Set(['client'])], [U3, new Set(['client'])]])
    assert.equal(ev('standard', { groups: t, locations: new Set([U2]) }), true)
    assert.equal(ev('standard', { groups: t, locations: new Set([U2, U3]) }), false)
  })
  test('groupwanted uses the one groupwanted expression among the repository\'s groups', () => {
    const groups = new Map([[U1, new Set(['a', 'b'])]])
    assert.equal(ev('groupwanted', { groups, groupWanted: new Map([['a', 'nothing']]) }), false)
    assert.equal(ev('groupwanted', { groups, groupWanted: new Map([['a', 'anything']]) }), true)
    assert.equal(ev('groupwanted', { groups, groupWanted: new Map([['a', 'anything'], ['b', 'anything']]), present: false }), false)
    // standard inside groupwanted expands; groupwanted inside groupwanted is present
    assert.equal(ev('groupwanted', { groups: new Map([[U1, new Set(['backup'])]]), groupWanted: new Map([['backup', 'standard']]) }), true)
    assert.equal(ev('groupwanted', { groups, groupWanted: new Map([['a', 'groupwanted']]), present: false }), false)
    // a groupwanted expression that does not parse makes the whole expression `present`
    assert.equal(ev('anything or groupwanted', { groups, groupWanted: new Map([['a', 'bogus']]), present: false }), false)
  })
  test('isPreferredContent: unset, empty, unparseable, required', () => {
    const c = ctx({ present: false })
    assert.equal(isPreferredContent({}, c, true), true)
    assert.equal(isPreferredContent({ wanted: '' }, c, false), false)
    assert.equal(isPreferredContent({ wanted: 'bogus' }, c, true), false)
    assert.equal(isPreferredContent({ wanted: 'bogus' }, ctx({ present: true }), false), true)
    assert.equal(isPreferredContent({ wanted: 'nothing', required: 'anything' }, c, false), true)
    assert.equal(isPreferredContent({ required: 'nothing' }, c, true), false)
  })
})

// ---------------------------------------------------------------------------------------------
// Properties

const SAFE_TERMS = ['anything', 'nothing', 'include=*.mp3', 'exclude=music/*', 'largerthan=500', 'smallerthan=2kb', 'copies=1', 'copies=g:1', 'inallgroup=g', 'onlyingroup=g', 'securehash', 'approxlackingcopies=1', 'fullybalanced=g:2']
const exprArb: fc.Arbitrary<Expr> = fc.letrec<{ e: Expr }>((tie) => ({
  e: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constantFrom(...SAFE_TERMS).map((s) => parse(s)),
    fc.record({ kind: fc.constant('not' as const), expr: tie('e') }),
    fc.record({ kind: fc.constantFrom('and' as const, 'or' as const), left: tie('e'), right: tie('e') }),
  ),
})).e

const ctxArb: fc.Arbitrary<EvalContext> = fc
  .record({
    locs: fc.subarray([U1, U2, U3, CLUSTER]),
    g: fc.subarray([U1, U2, U3]),
    size: fc.option(fc.nat({ max: 4000 }), { nil: undefined }),
    file: fc.option(fc.constantFrom('music/a.mp3', 'a.mp3', 'doc/b.txt'), { nil: undefined }),
  })
  .map(({ locs, g, size, file }) =>
    ctx({
      key: parseKey(size === undefined ? 'WORM--x' : `SHA256E-s${size}--abc.mp3`),
      file,
      locations: new Set(locs),
      groups: new Map(g.map((u) => [u, new Set(['g'])])),
    }),
  )

const evalE = (e: Expr, c: EvalContext): boolean => evaluate(e, c)

describe('properties', () => {
  test('not (not e) ≡ e', () => {
    fc.assert(fc.property(exprArb, ctxArb, (e, c) => evalE({ kind: 'not', expr: { kind: 'not', expr: e } }, c) === evalE(e, c)))
  })
  test('and/or identities, commutativity and De Morgan', () => {
    const T = parse('anything')
    const F = parse('nothing')
    fc.assert(
      fc.property(exprArb, exprArb, ctxArb, (a, b, c) => {
        const v = (e: Expr): boolean => evalE(e, c)
        assert.equal(v({ kind: 'and', left: a, right: T }), v(a))
        assert.equal(v({ kind: 'or', left: a, right: F }), v(a))
        assert.equal(v({ kind: 'and', left: a, right: F }), false)
        assert.equal(v({ kind: 'or', left: a, right: T }), true)
        assert.equal(v({ kind: 'and', left: a, right: b }), v({ kind: 'and', left: b, right: a }))
        assert.equal(v({ kind: 'not', expr: { kind: 'or', left: a, right: b } }), v({ kind: 'and', left: { kind: 'not', expr: a }, right: { kind: 'not', expr: b } }))
      }),
    )
  })
  test('format() then parse() gives the same tree and the same answers', () => {
    fc.assert(fc.property(exprArb, ctxArb, (e, c) => evalE(parse(format(e)), c) === evalE(e, c)))
  })
  test('parse never throws anything but PreferredContentParseError', () => {
    const word = fc.oneof(fc.constantFrom('and', 'or', 'not', '(', ')', ...SAFE_TERMS, 'present', 'balanced=g', 'copies=', 'x'), fc.string({ maxLength: 6 }))
    fc.assert(
      fc.property(fc.array(word, { maxLength: 12 }), (ws) => {
        try {
          evaluate(parse(ws.join(' ')), ctx())
        } catch (e) {
          assert.ok(e instanceof PreferredContentParseError, String(e))
        }
      }),
    )
  })
})
