// Our preferred content evaluation against the real git-annex (10.20250416), decision for
// decision. How git-annex is asked: one repository holds six directory special remotes with
// fixed UUIDs (`initremote … uuid=`), put in groups (`git annex group`), trusted, untrusted or
// dead, with maxsizes (`git annex maxsize`) and numcopies 2. 200 keys get files without
// content (`git annex fromkey --force --batch`) and logged locations (`git annex
// setpresentkey --batch`). For each expression and remote, `git annex wanted <remote> <expr>`
// then `git annex find --want-get-by=<remote>` lists the files git-annex says that remote
// wants; we evaluate the same expression for the same UUID, key and file and compare.
//
// Not covered here: keys without an associated file (find only walks files, and
// matchexpression refuses include= without --file), so that rule rests on Limit.hs.
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, test, type TestContext } from 'node:test'
import fc from 'fast-check'
import { parseKey, serializeKey, type Key } from '../../src/keys/key.js'
import { PreferredContentParseError } from '../../src/errors.js'
import { readSize } from '../../src/annex/data-units.js'
import { evaluate, parse, type EvalContext } from '../../src/placement/preferred-content.js'
import type { TrustLevel } from '../../src/annex/uuid.js'
import { annex, makeRepo, repoUuid, sh, tempDir } from '../helpers/annex.js'

const REMOTES = {
  A: { uuid: '33189000-0000-4000-8000-000000000001', groups: ['g', 'backup'] },
  B: { uuid: '60c89000-0000-4000-8000-000000000002', groups: ['g', 'archive'] },
  C: { uuid: 'e9c29000-0000-4000-8000-000000000003', groups: ['g', 'h'] },
  D: { uuid: '4d1b0000-0000-4000-8000-000000000004', groups: ['h', 'client'], trust: 'untrusted' },
  E: { uuid: '7e570000-0000-4000-8000-000000000005', groups: ['client'], trust: 'trusted' },
  F: { uuid: 'f0000000-0000-4000-8000-000000000006', groups: [], trust: 'dead' },
} as const satisfies Record<string, { uuid: string; groups: readonly string[]; trust?: TrustLevel }>
type Name = keyof typeof REMOTES
const NAMES = Object.keys(REMOTES) as Name[]

const GROUPWANTED: ReadonlyMap<string, string> = new Map([
  ['client', 'standard and exclude=music/*'],
  ['h', 'largerthan=1000 or present'],
])

interface Entry {
  key: Key
  file: string
  locs: Array<Name | 'L'>
}

const entryArb = fc.record({
  backend: fc.constantFrom('SHA256E', 'SHA256', 'WORM', 'URL', 'MD5E', 'SHA1', 'BLAKE2B256E'),
  size: fc.option(fc.nat({ max: 6000 }), { nil: undefined, freq: 5 }),
  dir: fc.constantFrom('', 'archive/', 'x/archive/', 'public/', 'a/public/b/', 'music/', 'Music/', 'old/', 'a b/', 'x/y/'),
  ext: fc.constantFrom('.mp3', '.MP3', '.txt', '', '.tar.gz'),
  locs: fc.subarray(['A', 'B', 'C', 'D', 'E', 'F', 'L'] as const),
})

// The keys of the spec §7.5 style vector (test/placement/balanced.test.ts), then generated ones.
const FIXED: Entry[] = [
  { key: parseKey('WORM--a'), file: 'v/a', locs: [] },
  { key: parseKey('WORM--c'), file: 'v/c', locs: [] },
  { key: parseKey('SHA256E-s5--abc.txt'), file: 'v/abc.txt', locs: [] },
  { key: parseKey('WORM-s100--c'), file: 'v/c100', locs: [] },
]

function makeEntries(n: number): Entry[] {
  return [...FIXED, ...fc.sample(entryArb, { numRuns: n - FIXED.length, seed: 7_5_2024 }).map((e, i) => {
    const hex = i.toString(16).padStart(8, '0')
    const name = e.backend === 'URL' ? `http://example.com/${hex}${e.ext}` : `${hex}${e.backend.endsWith('E') ? e.ext : ''}`
    const size = e.size === undefined ? '' : `-s${e.size}`
    return { key: parseKey(`${e.backend}${size}--${name}`), file: `${e.dir}f${i}${e.ext}`, locs: e.locs }
  })]
}

describe('preferred content decisions match git-annex find --want-get-by', () => {
  let repo = ''
  let here = ''
  const cleanup: Array<() => unknown> = []
  const entries = makeEntries(200)
  const uuidOf = (n: Name | 'L'): string => (n === 'L' ? here : REMOTES[n].uuid)
  let maxSizes = new Map<string, number>()

  before(async () => {
    const work = await tempDir({ after: (fn) => cleanup.push(fn) })
    repo = await makeRepo(join(work, 'repo'), 'placement')
    here = await repoUuid(repo)
    for (const n of NAMES) {
      const r = REMOTES[n]
      const dir = join(work, `dir-${n}`)
      await sh(work, 'mkdir', [dir])
      await annex(repo, 'initremote', n, 'type=directory', `directory=${dir}`, 'encryption=none', `uuid=${r.uuid}`)
      for (const g of r.groups) await annex(repo, 'group', n, g)
      if ('trust' in r) await annex(repo, ...(r.trust === 'dead' ? ['dead', n] : r.trust === 'trusted' ? ['trust', '--force', n] : ['untrust', n]))
    }
    for (const [g, e] of GROUPWANTED) await annex(repo, 'groupwanted', g, e)
    await annex(repo, 'numcopies', '2')
    await sh(repo, 'git', ['annex', 'fromkey', '--force', '--batch'], { input: entries.map((e) => `${serializeKey(e.key)} ${e.file}\n`).join('') })
    const present = entries.flatMap((e) => e.locs.map((l) => `${serializeKey(e.key)} ${uuidOf(l)} 1\n`))
    await sh(repo, 'git', ['annex', 'setpresentkey', '--batch'], { input: present.join('') })
  })
  after(async () => {
    for (const fn of cleanup) await fn()
  })

  function context(n: Name, e: Entry): EvalContext {
    const groups = new Map<string, Set<string>>(NAMES.map((m) => [REMOTES[m].uuid, new Set(REMOTES[m].groups)]))
    const trust = new Map<string, TrustLevel>()
    for (const m of NAMES) {
      const r = REMOTES[m]
      if ('trust' in r) trust.set(r.uuid, r.trust)
    }
    const repoSizes = new Map<string, number>()
    for (const x of entries) for (const l of x.locs) repoSizes.set(uuidOf(l), (repoSizes.get(uuidOf(l)) ?? 0) + (x.key.size ?? 0))
    return {
      uuid: REMOTES[n].uuid,
      key: e.key,
      file: e.file,
      locations: new Set(e.locs.map(uuidOf)),
      groups,
      groupWanted: GROUPWANTED,
      trust,
      numCopies: 2,
      maxSizes,
      repoSizes,
    }
  }

  async function wantedBy(n: Name): Promise<Set<string>> {
    const { stdout } = await annex(repo, 'find', `--want-get-by=${n}`, '--format=${key}\\n')
    return new Set(stdout.split('\n').filter((l) => l !== ''))
  }

  /** Sets `expr` on each remote, asks git-annex, and returns every disagreement. */
  async function compare(expr: string, remotes: readonly Name[], wanted: number[]): Promise<string[]> {
    const ast = parse(expr)
    await Promise.all(remotes.map((n) => annex(repo, 'wanted', n, expr)))
    const theirs = await Promise.all(remotes.map((n) => wantedBy(n)))
    const bad: string[] = []
    remotes.forEach((n, i) => {
      let yes = 0
      for (const e of entries) {
        const ours = evaluate(ast, context(n, e))
        if (ours) yes++
        const k = serializeKey(e.key)
        if (ours !== theirs[i]!.has(k)) bad.push(`${JSON.stringify(expr)} for ${n}: ${k} ${JSON.stringify(e.file)} locs=${e.locs.join('')} ours=${ours}`)
      }
      wanted.push(yes)
    })
    return bad
  }

  /** Compares each case; reports how many of the keys each remote wants, as a diagnostic. */
  async function compareAll(t: TestContext, cases: ReadonlyArray<readonly [string, readonly Name[]]>): Promise<void> {
    const bad: string[] = []
    let decisions = 0
    for (const [expr, remotes] of cases) {
      const wanted: number[] = []
      bad.push(...(await compare(expr, remotes, wanted)))
      decisions += remotes.length * entries.length
      t.diagnostic(`${expr}: ${remotes.map((n, i) => `${n} wants ${wanted[i]}`).join(', ')}`)
    }
    assert.deepEqual(bad.slice(0, 20), [], `${bad.length} of ${decisions} decisions differ`)
  }

  test('file, size, copy-count, group and trust terms', async (t) => {
    // Terms that do not depend on the remote asked are checked for one; `present` for two.
    const AD = ['A', 'D'] as const
    const D = ['D'] as const
    await compareAll(t, [
      ['include=*.mp3', D],
      ['exclude=*/archive/*', D],
      ['include=archive/*', D],
      ['include=*[Mm]usic/*', D],
      ['include=a/* or include=?/y/*', D],
      ['include=*.mp3 and (not largerthan=100mb) and exclude=old/*', D],
      ['largerthan=1kb', D],
      ['smallerthan=2KiB', D],
      ['smallerthan=1', D],
      ['largerthan=0.5kb', D],
      ['copies=2', D],
      ['copies=g:1', D],
      ['copies=archive:1', D],
      ['copies=trusted:1', D],
      ['copies=untrusted:1', D],
      ['copies=semitrusted+:2', D],
      ['copies=dead:1', D],
      ['lackingcopies=1', D],
      ['approxlackingcopies=2', D],
      ['inallgroup=h', D],
      ['onlyingroup=g', D],
      ['inbackend=SHA256E', D],
      ['securehash', D],
      ['present', AD],
      ['present or include=*.txt', AD],
      ['not present', AD],
      ['not not present', AD],
      ['inpreferreddir', D],
      ['unused', D],
      ['anything or nothing and present', AD],
      ['include=*.mp3 or largerthan=2000 exclude=music/*', D],
      ['( nothing ( nothing or copies=1 ) )', D],
      ['not ( copies=g:1 or inallgroup=client )', D],
      ['exclude=*.txt and', D],
    ])
  })

  test('standard and groupwanted, for remotes in different groups', async (t) => {
    await compareAll(t, [
      ['standard', NAMES],
      ['groupwanted', NAMES],
      ['not standard', NAMES],
      ['standard or include=x/*', NAMES],
    ])
  })

  test('balanced=g:2 and friends over 200 keys, no maxsize', async (t) => {
    await compareAll(t, [
      ['balanced=g:2', ['A', 'B', 'C']],
      ['balanced=g', ['A', 'B', 'C']],
      ['fullybalanced=g', ['A', 'B', 'C']],
      ['fullybalanced=g:2', ['A', 'B', 'C']],
      ['fullybalanced=h:5', ['C', 'D']],
      ['sizebalanced=g:2', ['A', 'B']],
    ])
  })

  test('balanced with maxsize: full repositories drop out, size balancing ranks by free space', async (t) => {
    const used = context('A', entries[0]!).repoSizes!
    const A = REMOTES.A.uuid
    const B = REMOTES.B.uuid
    const C = REMOTES.C.uuid
    // A nearly full, B roomy, C maxsize 0 (only unsized keys fit), D roomier than B.
    const want = new Map([
      [A, (used.get(A) ?? 0) + 2500],
      [B, (used.get(B) ?? 0) + 100_000],
      [C, 0],
      [REMOTES.D.uuid, (used.get(REMOTES.D.uuid) ?? 0) * 3 + 1],
    ])
    const names = new Map([[A, 'A'], [B, 'B'], [C, 'C'], [REMOTES.D.uuid, 'D']])
    for (const [u, s] of want) await annex(repo, 'maxsize', names.get(u)!, String(s))
    maxSizes = want
    await compareAll(t, [
      ['fullybalanced=g', ['A', 'B', 'C']],
      ['balanced=g:2', ['A', 'B', 'C']],
      ['fullysizebalanced=g', ['A', 'B', 'C']],
      ['fullysizebalanced=g:2', ['A', 'B', 'C']],
      ['sizebalanced=h', ['C', 'D']],
    ])
  })
})

// Globs and sizes, the two places where git-annex's reading of an expression is least obvious:
// generated globs against generated file names, and size words against keys whose sizes sit
// on either side of what we read them as. Same method as above (`wanted`, then
// `find --want-get-by`), in a repository of its own.
describe('globs and sizes match git-annex', () => {
  let repo = ''
  const cleanup: Array<() => unknown> = []
  const SIZE_WORDS = ['1kb', '1KiB', '0.5kb', '2.5', '3.5', '1e3', '1k', '1Ki', '0x10', '1mbit', '2kilobits', '4.mb', '7!', '1.5KB', '12B', '3bytes']
  const component = fc.stringMatching(/^[ab.\[\]!\\é:x+-]{1,4}$/).filter((c) => c !== '.' && c !== '..')
  const files = [...new Set(fc.sample(fc.array(component, { minLength: 1, maxLength: 3 }).map((cs) => cs.join('/')), { numRuns: 80, seed: 42 }))]
    // a path that is also a directory of another path cannot be created
    .filter((f, _, all) => !all.some((g) => g.startsWith(`${f}/`)))
  const globs = [
    '*', '*.x', 'a*', '*/*', 'a/*', '?', '??', '[ab]*', '[!ab]*', '[a-b]*', '*[]]*', '*[!]]*', '*\\*', '[[:punct:]]*',
    '*[[:alpha:]]', 'é*', '*.[ab]', '[.]*', 'a/b', '*b/*', '*+*', '[b-a]', '[ab', ...fc.sample(fc.stringMatching(/^[ab*?\[\]!\/\\.é-]{1,5}$/), { numRuns: 15, seed: 7 }),
    // globs made from the names themselves, so that more of them match something
    ...fc.sample(fc.tuple(fc.constantFrom(...files), fc.array(fc.tuple(fc.nat(), fc.constantFrom('*', '?', '[', '')), { maxLength: 3 })), { numRuns: 25, seed: 9 }).map(([f, edits]) => {
      const cs = [...f]
      for (const [at, to] of edits) {
        const i = at % cs.length
        cs[i] = to === '[' ? `[${cs[i]}]` : to === '' ? cs[i]! : to
      }
      return cs.join('')
    }),
  ]
  const sized = SIZE_WORDS.flatMap((w) => {
    const v = readSize(w)!
    return [v - 1, v, v + 1].filter((s) => s >= 0)
  })
  const keys = [
    ...files.map((f, i) => ({ key: parseKey(`WORM-s${i}--g${i}`), file: f })),
    ...sized.map((s, i) => ({ key: parseKey(`WORM-s${s}--z${i}`), file: `sizes/${i}` })),
    { key: parseKey('URL--http://example.com/unsized'), file: 'sizes/unsized' },
  ]

  before(async () => {
    const work = await tempDir({ after: (fn) => cleanup.push(fn) })
    repo = await makeRepo(join(work, 'repo'), 'globs')
    await annex(repo, 'initremote', 'R', 'type=directory', `directory=${work}`, 'encryption=none')
    await sh(repo, 'git', ['annex', 'fromkey', '--force', '--batch'], { input: keys.map((k) => `${serializeKey(k.key)} ${k.file}\n`).join('') })
  })
  after(async () => {
    for (const fn of cleanup) await fn()
  })

  async function check(t: TestContext, exprs: string[]): Promise<void> {
    const bad: string[] = []
    for (const expr of exprs) {
      let ast
      try {
        ast = parse(expr)
      } catch (e) {
        if (!(e instanceof PreferredContentParseError)) throw e
        // We refuse it up front; git-annex accepts it in `wanted` but fails when it evaluates
        // it (and `find --want-get-by` then hangs, 10.20250416), so ask matchexpression.
        const r = await sh(repo, 'git', ['annex', 'matchexpression', expr, '--file=x', '--key=WORM--x'], { timeoutMs: 30_000 }).then(
          (x) => x.stderr,
          (e: Error) => e.message,
        )
        if (!/failed to compile regex/.test(r)) bad.push(`${JSON.stringify(expr)}: we refuse it, git-annex evaluates it`)
        continue
      }
      await annex(repo, 'wanted', 'R', expr)
      const { stdout } = await sh(repo, 'git', ['annex', 'find', '--want-get-by=R', '--format=${key}\\n'], { timeoutMs: 60_000 })
      const theirs = new Set(stdout.split('\n').filter((l) => l !== ''))
      let yes = 0
      for (const k of keys) {
        const ours = evaluate(ast, { uuid: 'R', key: k.key, file: k.file, locations: new Set(), groups: new Map() })
        if (ours) yes++
        if (ours !== theirs.has(serializeKey(k.key))) bad.push(`${JSON.stringify(expr)} on ${JSON.stringify(k.file)} (${serializeKey(k.key)}): ours=${ours}`)
      }
      t.diagnostic(`${expr}: ${yes} of ${keys.length}`)
    }
    assert.deepEqual(bad.slice(0, 20), [], `${bad.length} disagreements`)
  }

  test('include= over generated globs and file names', async (t) => {
    await check(t, [...new Set(globs)].map((g) => `include=${g}`))
  })
  test('largerthan= and smallerthan= size words', async (t) => {
    await check(t, SIZE_WORDS.flatMap((w) => [`largerthan=${w}`, `smallerthan=${w}`]))
  })
})
