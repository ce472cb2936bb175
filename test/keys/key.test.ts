// Key syntax (spec §5): parse/serialize round trips, and a differential check against an
// independent model of git-annex's Types/Key.hs keyParser.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import fc from 'fast-check'
import { BadKeyError } from '../../src/errors.js'
import {
  contentLength,
  hasExtensionVariant,
  isChunkKey,
  makeKey,
  parentKey,
  parseKey,
  serializeKey,
  tryParseKey,
  type KeyFields,
} from '../../src/keys/key.js'

const HASHES = [
  'SHA256', 'SHA512', 'SHA224', 'SHA384', 'SHA3_256', 'SHA3_512', 'SHA3_224', 'SHA3_384', 'SKEIN256', 'SKEIN512',
  'BLAKE2B256', 'BLAKE2B512', 'BLAKE2B160', 'BLAKE2B224', 'BLAKE2B384', 'BLAKE2BP512', 'BLAKE2S256', 'BLAKE2S160',
  'BLAKE2S224', 'BLAKE2SP256', 'BLAKE2SP224', 'SHA1', 'MD5',
]
const BACKENDS = [
  ...HASHES.flatMap((h) => [h, `${h}E`]),
  'WORM', 'URL', 'VURL', 'GITBUNDLE', 'GITMANIFEST', 'XFOO', 'XFOOE', 'X', 'XE', 'E', 'GPGHMACSHA1', 'OTHERE',
]

/**
 * The model: attoparsec's keyParser written as one regex (optional fields in order, each a
 * letter and greedy digits, then "--" and the rest), plus validKeyName. Numbers beyond 2^53-1
 * are refused by design (see tryParseKey), so the model refuses them too.
 */
function model(text: string): KeyFields | undefined {
  const m = /^([^-]+)(?:-s(\d+))?(?:-m(\d+))?(?:-S(\d+))?(?:-C(\d+))?--(.*)$/s.exec(text)
  if (!m) return undefined
  const nums = [m[2], m[3], m[4], m[5]].map((d) => (d === undefined ? undefined : Number(d)))
  if (nums.some((n) => n !== undefined && !Number.isSafeInteger(n))) return undefined
  const [backend, name] = [m[1]!, m[6]!]
  const ext = name.includes('.') ? name.slice(name.indexOf('.')) : ''
  const hasExt = backend.endsWith('E') && backend !== 'GITBUNDLE'
  if (hasExt && Buffer.byteLength(ext) > 64) return undefined
  const [size, mtime, chunkSize, chunkNum] = nums
  return strip({ backend, size, mtime, chunkSize, chunkNum, name })
}

function strip(f: KeyFields): KeyFields {
  return Object.fromEntries(Object.entries(f).filter(([, v]) => v !== undefined)) as KeyFields
}

const canonicalNat = fc.oneof(fc.nat({ max: 1000 }), fc.maxSafeNat())
const backendArb = fc.oneof(
  fc.constantFrom(...BACKENDS),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 10 }).filter((s) => !s.includes('-')),
)
// Names: anything, with '-', '.', the keyFile escapes and non-ASCII well represented.
const nameArb = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ unit: fc.constantFrom('a', '0', '-', '.', '&', '%', ':', '/', 'é', '😀', ' ', '\\'), maxLength: 30 }),
  fc.tuple(fc.stringMatching(/^[0-9a-f]{8,64}$/), fc.string({ unit: 'grapheme', maxLength: 12 })).map(([h, e]) => `${h}.${e}`),
)
const fieldsArb: fc.Arbitrary<KeyFields> = fc
  .record({
    backend: backendArb,
    size: fc.option(canonicalNat, { nil: undefined }),
    mtime: fc.option(canonicalNat, { nil: undefined }),
    chunkSize: fc.option(canonicalNat, { nil: undefined }),
    chunkNum: fc.option(canonicalNat, { nil: undefined }),
    name: nameArb,
  })
  .map(strip)
  .filter((f) => model(serialize(f)) !== undefined)

function serialize(f: KeyFields): string {
  let s = f.backend
  if (f.size !== undefined) s += `-s${f.size}`
  if (f.mtime !== undefined) s += `-m${f.mtime}`
  if (f.chunkSize !== undefined) s += `-S${f.chunkSize}`
  if (f.chunkNum !== undefined) s += `-C${f.chunkNum}`
  return `${s}--${f.name}`
}

describe('key syntax', () => {
  test('parse ∘ serialize = id on generated keys', () => {
    fc.assert(
      fc.property(fieldsArb, (f) => {
        const k = makeKey(f)
        assert.deepEqual({ ...k }, f)
        assert.deepEqual({ ...parseKey(serializeKey(k)) }, f)
      }),
      { numRuns: 2000 },
    )
  })

  test('serialize ∘ parse = id on generated canonical key strings', () => {
    const canonical = fc
      .tuple(
        backendArb,
        fc.subarray(['s', 'm', 'S', 'C']),
        fc.array(canonicalNat, { minLength: 4, maxLength: 4 }),
        nameArb,
      )
      .map(([b, letters, nums, name]) => `${b}${letters.map((l, i) => `-${l}${nums[i]}`).join('')}--${name}`)
      .filter((s) => model(s) !== undefined)
    fc.assert(
      fc.property(canonical, (s) => {
        assert.equal(serializeKey(parseKey(s)), s)
      }),
      { numRuns: 2000 },
    )
  })

  test('tryParseKey accepts exactly what the keyParser model accepts, with the same fields', () => {
    // Strings over the characters that matter to the grammar, so the tricky cases are common.
    const soup = fc.string({
      unit: fc.constantFrom('-', '-', '-', 's', 'm', 'S', 'C', 'x', 'E', '0', '1', '9', '.', 'é'),
      maxLength: 16,
    })
    const prefixed = fc.tuple(fc.constantFrom('SHA256', 'SHA256E', 'WORM', 'E', 'X'), soup).map(([a, b]) => a + b)
    fc.assert(
      fc.property(fc.oneof(soup, prefixed), (s) => {
        const ours = tryParseKey(s)
        const theirs = model(s)
        assert.deepEqual(ours === undefined ? undefined : { ...ours }, theirs, JSON.stringify(s))
      }),
      { numRuns: 20000 },
    )
  })

  test('non-canonical numbers parse and reserialize canonically, as git-annex does', () => {
    assert.equal(serializeKey(parseKey('SHA256-s007--x')), 'SHA256-s7--x')
    assert.equal(serializeKey(parseKey('WORM-s0-m00--x')), 'WORM-s0-m0--x')
  })

  const invalid: Array<[string, string]> = [
    ['fields out of order', 'SHA256-m1-s2--x'],
    ['chunk number before chunk size', 'SHA256-s1-C1-S2--x'],
    ['repeated field', 'SHA256-s1-s2--x'],
    ['unknown field', 'SHA256-x1--x'],
    ['unknown field after a known one', 'SHA256-s1-t5--x'],
    ['missing --', 'SHA256-s10'],
    ['single - before the name', 'SHA256-s10-x'],
    ['no separator at all', 'SHA256'],
    ['empty backend', '--x'],
    ['empty backend with fields', '-s1--x'],
    ['empty string', ''],
    ['field letter without digits', 'SHA256-s--x'],
    ['non-digit in a number', 'SHA256-s1x--x'],
    ['sign', 'SHA256-s+1--x'],
    ['negative', 'SHA256-m-1--x'],
    ['hex digits', 'SHA256-s0x10--x'],
    ['unicode digits', 'SHA256-s١--x'],
    ['beyond 2^53-1 (git-annex would take it; we refuse rather than round)', 'SHA256-s9007199254740993--x'],
    ['65-byte extension on an E backend', `SHA256E-s1--abc.${'1'.repeat(64)}`],
    ['long multi-byte extension on an E backend', `SHA1E--abc.${'é'.repeat(32)}`],
    ['long extension on an external E backend', `XFOOE--a.${'x'.repeat(64)}`],
    ['long extension on an unknown backend ending in E', `E--a.${'x'.repeat(64)}`],
  ]
  for (const [why, text] of invalid) {
    test(`rejects: ${why}`, () => {
      assert.equal(tryParseKey(text), undefined)
      assert.throws(() => parseKey(text), BadKeyError)
    })
  }

  test('extension limit: 64 bytes including the dot pass; non-E backends have no limit', () => {
    assert.ok(tryParseKey(`SHA256E-s1--abc.${'1'.repeat(63)}`))
    assert.ok(tryParseKey(`SHA256-s1--abc.${'1'.repeat(500)}`))
    assert.ok(tryParseKey(`GITBUNDLE--abc.${'1'.repeat(500)}`))
    assert.ok(tryParseKey(`XFOO--abc.${'1'.repeat(500)}`))
    assert.ok(tryParseKey(`WORM-s1-m2--${'y.'.repeat(100)}`))
  })

  test('edge names git-annex accepts: empty, starting with -, containing --', () => {
    assert.deepEqual({ ...parseKey('SHA256-s1--') }, { backend: 'SHA256', size: 1, name: '' })
    assert.deepEqual({ ...parseKey('SHA256---') }, { backend: 'SHA256', name: '-' })
    assert.deepEqual({ ...parseKey('SHA256-s1---a--b') }, { backend: 'SHA256', size: 1, name: '-a--b' })
  })

  test('hasExtensionVariant follows Types/Key.hs hasExt', () => {
    for (const h of HASHES) {
      assert.equal(hasExtensionVariant(h), false, h)
      assert.equal(hasExtensionVariant(`${h}E`), true, h)
    }
    for (const b of ['WORM', 'URL', 'VURL', 'GITBUNDLE', 'GITMANIFEST', 'X', 'XFOO', 'GPGHMACSHA1']) {
      assert.equal(hasExtensionVariant(b), false, b)
    }
    for (const b of ['XE', 'XFOOE', 'E', 'OTHERE']) assert.equal(hasExtensionVariant(b), true, b)
  })

  test('makeKey refuses fields that would not survive a round trip', () => {
    assert.throws(() => makeKey({ backend: 'A-s1', name: 'x' }), BadKeyError)
    assert.throws(() => makeKey({ backend: '', name: 'x' }), BadKeyError)
    assert.throws(() => makeKey({ backend: 'SHA256', size: -1, name: 'x' }), BadKeyError)
    assert.throws(() => makeKey({ backend: 'SHA256', size: 1.5, name: 'x' }), BadKeyError)
    assert.throws(() => makeKey({ backend: 'SHA256', size: 2 ** 53, name: 'x' }), BadKeyError)
    assert.throws(() => makeKey({ backend: 'SHA256E', name: `a.${'x'.repeat(64)}` }), BadKeyError)
    assert.equal(serializeKey(makeKey({ backend: 'SHA256', size: 3, name: 'a-s1--b' })), 'SHA256-s3--a-s1--b')
  })

  test('parentKey drops chunk fields only; contentLength is the chunk share', () => {
    const c = parseKey('SHA256E-s10-S4-C3--abc.txt')
    assert.ok(isChunkKey(c))
    assert.equal(serializeKey(parentKey(c)), 'SHA256E-s10--abc.txt')
    assert.equal(contentLength(c), 2)
    assert.equal(contentLength(parseKey('SHA256E-s10-S4-C1--abc.txt')), 4)
    assert.equal(contentLength(parseKey('SHA256E-s8-S4-C2--abc.txt')), 4)
    assert.equal(contentLength(parseKey('SHA256E-s8-S4-C3--abc.txt')), 0)
    assert.equal(contentLength(parseKey('SHA256E-s10--abc.txt')), 10)
    assert.equal(contentLength(parseKey('SHA256E--abc.txt')), undefined)
    const p = parseKey('SHA256-s10--abc')
    assert.equal(parentKey(p), p)
    fc.assert(
      fc.property(fieldsArb, (f) => {
        const k = makeKey(f)
        const p = parentKey(k)
        assert.equal(p.chunkSize, undefined)
        assert.equal(p.chunkNum, undefined)
        assert.deepEqual({ ...p }, strip({ ...k, chunkSize: undefined, chunkNum: undefined }))
      }),
    )
  })
})
