// Our key parser and object paths against the real git-annex: `examinekey` in batch mode over a
// sample of generated keys, in a non-bare and a bare repository, plus edge keys one by one
// (an invalid key ends a batch, so those cannot share one).
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import fc from 'fast-check'
import { makeKey, serializeKey, tryParseKey, type Key, type KeyFields } from '../../src/keys/key.js'
import { hashDirLower, hashDirMixed, keyFile, objectPath, objectPaths, tmpPath } from '../../src/keys/object-path.js'
import { makeRepo, sh, tempDir } from '../helpers/annex.js'

const BACKENDS = ['SHA256E', 'SHA256', 'SHA512E', 'SHA3_256', 'SKEIN512E', 'BLAKE2BP512', 'BLAKE2SP224E', 'SHA1E', 'MD5', 'WORM', 'URL', 'VURL', 'XFOOE', 'X', 'GITBUNDLE', 'E']

// examinekey splits its input at the first space (the rest is a file name) and -z splits at
// NUL, so generated names avoid those two; everything else, unicode included, is fair game.
const nameArb = fc.oneof(
  fc.tuple(fc.stringMatching(/^[0-9a-f]{32,64}$/), fc.string({ unit: fc.constantFrom('a', 'Z', '9', '.', '&', '%', ':', '/', 'é', '😀', '-'), maxLength: 12 }))
    .map(([h, e]) => `${h}.${e}`),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 30 }).filter((s) => !/[\s\0]/.test(s)),
  fc.string({ unit: fc.constantFrom('&', '%', ':', '/', '-', 'x', '\\', 'ü'), minLength: 1, maxLength: 20 }),
)
const opt = (a: fc.Arbitrary<number>) => fc.option(a, { nil: undefined })
const keyArb: fc.Arbitrary<Key> = fc
  .record({
    backend: fc.constantFrom(...BACKENDS),
    size: opt(fc.oneof(fc.nat({ max: 1 << 20 }), fc.maxSafeNat())),
    mtime: opt(fc.nat({ max: 2 ** 31 })),
    chunkSize: opt(fc.integer({ min: 1, max: 1 << 30 })),
    chunkNum: opt(fc.integer({ min: 1, max: 5000 })),
    name: nameArb,
  })
  .map((f) => tryParseKey(serialize(f)))
  .filter((k): k is Key => k !== undefined)

function serialize(f: KeyFields): string {
  let s = f.backend
  if (f.size !== undefined) s += `-s${f.size}`
  if (f.mtime !== undefined) s += `-m${f.mtime}`
  if (f.chunkSize !== undefined) s += `-S${f.chunkSize}`
  if (f.chunkNum !== undefined) s += `-C${f.chunkNum}`
  return `${s}--${f.name}`
}

const FORMAT = '${hashdirmixed}\\000${hashdirlower}\\000${key}\\000${objectpath}\\000'

async function examineBatch(repo: string, keys: Key[]): Promise<string[][]> {
  const input = keys.map((k) => `${serializeKey(k)}\0`).join('')
  const { stdout } = await sh(repo, 'git', ['annex', 'examinekey', '--batch', '-z', `--format=${FORMAT}`], { input })
  const fields = stdout.split('\0')
  assert.equal(fields.pop(), '')
  const rows: string[][] = []
  for (let i = 0; i < fields.length; i += 4) rows.push(fields.slice(i, i + 4))
  return rows
}

describe('keys and object paths match git-annex examinekey', () => {
  let repo = ''
  let bare = ''
  const cleanup: Array<() => unknown> = []
  before(async () => {
    const work = await tempDir({ after: (fn) => cleanup.push(fn) })
    ;[repo, bare] = await Promise.all([makeRepo(join(work, 'repo'), 'keys'), makeRepo(join(work, 'bare.git'), 'keys', { bare: true })])
  })
  after(async () => {
    for (const fn of cleanup) await fn()
  })

  // A fixed seed keeps the run reproducible; the sample still covers every backend family,
  // chunk fields, and names with & % : / and non-ASCII characters.
  const sample = [
    makeKey({ backend: 'SHA256E', size: 6, name: '5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03.txt' }),
    makeKey({ backend: 'SHA256E', size: 1, name: 'a:b/c%d&e' }),
    makeKey({ backend: 'MD5', size: 10, chunkSize: 5, chunkNum: 2, name: 'é€😀.x' }),
    ...fc.sample(keyArb, { numRuns: 50, seed: 20250416 }),
  ]

  test('hashdirmixed, hashdirlower, key and objectpath (non-bare and bare)', async () => {
    const [plain, ofBare] = await Promise.all([examineBatch(repo, sample), examineBatch(bare, sample)])
    assert.equal(plain.length, sample.length)
    assert.equal(ofBare.length, sample.length)
    sample.forEach((k, i) => {
      const [mixed, lower, key, path] = plain[i]!
      const what = JSON.stringify(serializeKey(k))
      assert.equal(serializeKey(k), key, what)
      assert.equal(hashDirMixed(k), mixed, what)
      assert.equal(hashDirLower(k), lower, what)
      assert.equal(objectPath(k, { bare: false }), path, what)
      assert.equal(path, `.git/annex/objects/${mixed}${keyFile(k)}/${keyFile(k)}`)
      // examinekey prints bare repositories' paths from "./"; ours are relative to the same top.
      assert.equal(`./${objectPath(k, { bare: true })}`, ofBare[i]![3], what)
    })
  })

  test('the spec §5 worked example', () => {
    const k = sample[0]!
    assert.equal(hashDirMixed(k), 'mK/4w/')
    assert.equal(hashDirLower(k), 'd91/b11/')
    assert.equal(hashDirMixed(k, 1), 'mK/')
    assert.equal(hashDirLower(k, 1), 'd91/')
    assert.equal(keyFile(sample[1]!), 'SHA256E-s1--a&cb%c&sd&ae')
    assert.deepEqual(objectPaths(k, { bare: true }), [
      `annex/objects/d91/b11/${keyFile(k)}/${keyFile(k)}`,
      `annex/objects/mK/4w/${keyFile(k)}/${keyFile(k)}`,
    ])
    assert.equal(tmpPath(k, { bare: false }), `.git/annex/tmp/${keyFile(k)}`)
    assert.equal(tmpPath(k, { bare: true }), `annex/tmp/${keyFile(k)}`)
  })

  test('chunk keys live under their parent key\'s hash directories', () => {
    const c = makeKey({ backend: 'SHA256E', size: 10, chunkSize: 4, chunkNum: 3, name: 'abc.txt' })
    const p = makeKey({ backend: 'SHA256E', size: 10, name: 'abc.txt' })
    assert.equal(hashDirLower(c), hashDirLower(p))
    assert.equal(hashDirMixed(c), hashDirMixed(p))
  })

  test('accepts and rejects the same edge keys', async () => {
    const cases = [
      'SHA256-s1--',
      'SHA256---',
      'SHA256-s007--x',
      'GITBUNDLE--a.' + '1'.repeat(80),
      'X--a.' + '1'.repeat(80),
      'SHA256E-s1--abc.' + '1'.repeat(63),
      'SHA256-m1-s2--x',
      'SHA256-s1-s2--x',
      'SHA256-x1--x',
      'SHA256-s10',
      'SHA256-s--x',
      'SHA256-s1x--y',
      'SHA256-s+1--x',
      'E--a.' + '1'.repeat(64),
      'XFOOE--a.' + '1'.repeat(64),
      'SHA256E--x.' + 'é'.repeat(32),
    ]
    const theirs = await Promise.all(
      cases.map((c) =>
        sh(repo, 'git', ['annex', 'examinekey', '--format=${key}\\n', c]).then(
          (r) => r.stdout.replace(/\n$/, ''),
          () => undefined,
        ),
      ),
    )
    cases.forEach((c, i) => {
      const ours = tryParseKey(c)
      assert.equal(ours === undefined ? undefined : serializeKey(ours), theirs[i], c)
    })
  })
})
