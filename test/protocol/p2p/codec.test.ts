// The P2P line codec: round trips for generated messages, the reference's splitting
// rules (spec §1.1, §1.2), and refusal of malformed lines.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { makeKey, parseKey, type Key } from '../../../src/keys/key.js'
import { encodeLine, parse, serialize } from '../../../src/protocol/p2p/codec.js'
import { decodeAssociatedFile, encodeAssociatedFile, MESSAGE_TYPES, MIN_VERSION, type Message } from '../../../src/protocol/p2p/messages.js'

const K = 'SHA256E-s6--5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03.txt'
const key = parseKey(K)
const U = '8d2257a8-0d70-476f-8e2c-4ee794abc728'

// ---- generators --------------------------------------------------------------------

const word = fc.stringMatching(/^[A-Za-z0-9._:\-/+=]{1,20}$/)
const uuid = fc.oneof(fc.uuid(), word)
const nat = fc.maxSafeNat()
const keyArb: fc.Arbitrary<Key> = fc
  .record({
    backend: fc.constantFrom('SHA256E', 'SHA256', 'MD5E', 'WORM', 'URL', 'BLAKE2B256E'),
    size: fc.option(fc.nat(), { nil: undefined }),
    mtime: fc.option(fc.nat(), { nil: undefined }),
    // Names may contain spaces: the key is always the last argument.
    name: fc.stringMatching(/^[^\n\r]{1,40}$/).filter((n) => !n.includes('.') || n.length - n.indexOf('.') <= 64),
  })
  .map((f) => {
    try {
      return makeKey(f)
    } catch {
      return makeKey({ backend: 'SHA256E', name: 'x' })
    }
  })
/** An AssociatedFile that survives encode∘decode: no whitespace, no control characters, relative. */
const afArb = fc.option(
  fc
    .string({ unit: fc.constantFrom('a', 'b', '%', '/', '.', 'é', '日', '-', '_', '1'), minLength: 1, maxLength: 20 })
    .filter((s) => !s.startsWith('/')),
  { nil: undefined },
)
const text = fc.stringMatching(/^[^\n\r]{0,60}$/)

const messageArb: fc.Arbitrary<Message> = fc.oneof(
  fc.record({ type: fc.constant('AUTH' as const), uuid: word, token: fc.stringMatching(/^[A-Za-z0-9]{1,30}$/) }),
  // The greeting's UUID is the last argument, so anything without a newline survives — but
  // a leading space would be eaten as the separator's twin only if empty; keep it a word.
  fc.record({ type: fc.constant('AUTH-SUCCESS' as const), uuid }),
  fc.record({ type: fc.constantFrom('BYPASS' as const, 'SUCCESS-PLUS' as const, 'FAILURE-PLUS' as const, 'ALREADY-HAVE-PLUS' as const), uuids: fc.array(uuid, { maxLength: 4 }) }),
  fc.record({ type: fc.constant('VERSION' as const), version: fc.nat(10) }),
  fc.record({ type: fc.constantFrom('CHECKPRESENT' as const, 'LOCKCONTENT' as const, 'REMOVE' as const), key: keyArb }),
  fc.record({ type: fc.constant('REMOVE-BEFORE' as const), timestamp: nat, key: keyArb }),
  fc.record({ type: fc.constant('GET' as const), offset: nat, af: afArb, key: keyArb }),
  fc.record({ type: fc.constant('PUT' as const), af: afArb, key: keyArb }),
  fc.record({ type: fc.constant('PUT-FROM' as const), offset: nat }),
  fc.record({ type: fc.constant('DATA' as const), length: nat }),
  fc.record({ type: fc.constant('TIMESTAMP' as const), timestamp: nat }),
  fc.record({ type: fc.constant('CONNECT' as const), service: fc.constantFrom('git-upload-pack' as const, 'git-receive-pack' as const) }),
  fc.record({ type: fc.constant('CONNECTDONE' as const), exitCode: fc.integer({ min: -255, max: 255 }) }),
  fc.record({ type: fc.constant('CHANGED' as const), refs: fc.array(word, { maxLength: 4 }) }),
  fc.record({ type: fc.constant('ERROR' as const), text }),
  fc.constantFrom<Message>(
    { type: 'AUTH-FAILURE' },
    { type: 'UNLOCKCONTENT' },
    { type: 'GETTIMESTAMP' },
    { type: 'DATA-PRESENT' },
    { type: 'VALID' },
    { type: 'INVALID' },
    { type: 'SUCCESS' },
    { type: 'FAILURE' },
    { type: 'ALREADY-HAVE' },
    { type: 'NOTIFYCHANGE' },
  ),
)

const norm = (m: Message | undefined) => (m === undefined ? undefined : JSON.parse(JSON.stringify(m)))

// ---- properties --------------------------------------------------------------------

test('parse ∘ serialize is the identity on generated messages', () => {
  fc.assert(
    fc.property(messageArb, (m) => {
      assert.deepEqual(norm(parse(serialize(m))), norm(m))
    }),
    { numRuns: 2000 },
  )
})

test('serialize ∘ parse is the identity on the lines serialize makes (canonical form)', () => {
  fc.assert(
    fc.property(messageArb, (m) => {
      const line = serialize(m)
      assert.equal(serialize(parse(line)!), line)
      // A trailing \r (CRLF peers) is stripped once.
      assert.deepEqual(norm(parse(`${line}\r`)), norm(m))
    }),
    { numRuns: 1000 },
  )
})

test('every message type is generated and has a minimum version', () => {
  const seen = new Set<string>()
  fc.assert(fc.property(messageArb, (m) => void seen.add(m.type)), { numRuns: 3000 })
  assert.deepEqual([...seen].sort(), [...MESSAGE_TYPES].sort())
  assert.equal(MIN_VERSION['REMOVE-BEFORE'], 3)
  assert.equal(MIN_VERSION['DATA-PRESENT'], 4)
  assert.equal(MIN_VERSION.BYPASS, 2)
  assert.equal(MIN_VERSION.VALID, 1)
})

test('zero-argument messages refuse anything after the name and one separator', () => {
  fc.assert(
    fc.property(
      fc.constantFrom('SUCCESS', 'FAILURE', 'VALID', 'INVALID', 'UNLOCKCONTENT', 'GETTIMESTAMP', 'ALREADY-HAVE', 'DATA-PRESENT', 'AUTH-FAILURE', 'NOTIFYCHANGE'),
      fc.stringMatching(/^[^\r\n]{1,10}$/),
      (name, junk) => {
        assert.equal(parse(`${name} ${junk}`), undefined)
        // Glued on, the junk makes another, unknown name.
        if (!/^\s/u.test(junk)) assert.equal(parse(`${name}${junk}`), undefined)
      },
    ),
  )
})

test('numbers are decimal, non-negative and safe; anything else is refused', () => {
  fc.assert(
    fc.property(fc.constantFrom('DATA', 'PUT-FROM', 'VERSION', 'TIMESTAMP'), fc.oneof(fc.constantFrom('', '-1', '1.5', '0x10', ' 1', '1 ', '9007199254740993', 'one'), fc.stringMatching(/^[0-9]*[^0-9\r\n][^\r\n]*$/)), (name, arg) => {
      assert.equal(parse(`${name} ${arg}`), undefined, `${name} ${arg}`)
    }),
  )
})

test('parse refuses unknown names, missing arguments and bad keys', () => {
  for (const line of [
    '',
    'FOO',
    'success',
    'CHECKPRESENT',
    'CHECKPRESENT ',
    'CHECKPRESENT not-a-key',
    `GET 0 ${K}`, // the AssociatedFile slot is missing: "K" becomes it and the key is empty
    `GET x a ${K}`,
    `PUT ${K}`,
    `REMOVE-BEFORE ${K}`,
    'CONNECT git-foo-pack',
    'CONNECTDONE x',
    'AUTH u tok-en',
    `GET 0 /etc/passwd ${K}`, // absolute AssociatedFile: the whole message is unparseable
    'UNLOCKCONTENT ' + K, // §9.4: the real message has no key
  ]) {
    assert.equal(parse(line), undefined, JSON.stringify(line))
  }
})

test('the reference splitting rules (spec §1.1)', () => {
  // Empty tokens are legal: two spaces = empty AssociatedFile.
  assert.deepEqual(norm(parse(`PUT  ${K}`)), norm({ type: 'PUT', af: undefined, key }))
  assert.deepEqual(norm(parse(`GET 12  ${K}`)), norm({ type: 'GET', offset: 12, af: undefined, key }))
  // The last argument takes the rest of the line verbatim.
  assert.deepEqual(parse('ERROR this repository is read-only; write access denied'), { type: 'ERROR', text: 'this repository is read-only; write access denied' })
  assert.deepEqual(parse('ERROR  two  spaces '), { type: 'ERROR', text: ' two  spaces ' })
  assert.deepEqual(parse('ERROR'), { type: 'ERROR', text: '' })
  // Lists are words: runs of whitespace separate, empty lists are fine.
  assert.deepEqual(parse(`SUCCESS-PLUS ${U}  ${U}`), { type: 'SUCCESS-PLUS', uuids: [U, U] })
  assert.deepEqual(parse('SUCCESS-PLUS '), { type: 'SUCCESS-PLUS', uuids: [] })
  assert.deepEqual(parse('BYPASS'), { type: 'BYPASS', uuids: [] })
  // Any isSpace character separates, as in Haskell: a tab, a no-break space.
  assert.deepEqual(norm(parse(`CHECKPRESENT\t${K}`)), norm({ type: 'CHECKPRESENT', key }))
  assert.deepEqual(parse('PUT-FROM\u00a07'), { type: 'PUT-FROM', offset: 7 })
  // One separator after a zero-argument name is swallowed (observed: `SUCCESS ` parses).
  assert.deepEqual(parse('SUCCESS '), { type: 'SUCCESS' })
  assert.equal(parse('SUCCESS  '), undefined)
  // One trailing \r is stripped, not two.
  assert.deepEqual(parse('GETTIMESTAMP\r'), { type: 'GETTIMESTAMP' })
  assert.deepEqual(parse('VERSION 4\r'), { type: 'VERSION', version: 4 })
  assert.deepEqual(parse('ERROR x\r\r'), { type: 'ERROR', text: 'x\r' })
})

test('AssociatedFile encoding and decoding (spec §1.2)', () => {
  assert.equal(encodeAssociatedFile(undefined), '')
  assert.equal(encodeAssociatedFile('a b\tc%d'), 'a%b%c%%d')
  assert.equal(encodeAssociatedFile('x\u00a0y\u3000z'), 'x%y%z')
  assert.equal(decodeAssociatedFile(''), undefined)
  assert.equal(decodeAssociatedFile('a%%b'), 'a%b')
  assert.equal(decodeAssociatedFile('a%b'), 'a_b') // whitespace does not round-trip
  assert.equal(decodeAssociatedFile('a\u0001b\u007fc\u0085'), 'a_b_c_')
  assert.equal(decodeAssociatedFile('/abs'), null)
  assert.equal(decodeAssociatedFile('%/abs'), '_/abs')
  // From the observed transcript: `GET 0 a%b.txt KEY` names "a_b.txt".
  assert.deepEqual(norm(parse(`GET 0 a%b.txt ${K}`)), norm({ type: 'GET', offset: 0, af: 'a_b.txt', key }))
  fc.assert(
    fc.property(fc.string({ maxLength: 30 }), (s) => {
      const enc = encodeAssociatedFile(s)
      assert.ok(![...enc].some((c) => /\s/u.test(c)), 'no whitespace on the wire')
      // Without whitespace or control characters (and relative), a name survives the trip.
      if (![...s].some((c) => /\s/u.test(c) || /\p{Cc}/u.test(c)) && !s.startsWith('/')) assert.equal(decodeAssociatedFile(enc), s === '' ? undefined : s)
    }),
  )
  // The encoding is ambiguous: two spaces become `%%`, which decodes to a percent sign.
  assert.equal(decodeAssociatedFile(encodeAssociatedFile('a  b')), 'a%b')
})

test('serialize refuses what no peer could parse back', () => {
  assert.throws(() => serialize({ type: 'AUTH', uuid: 'a b', token: 'x' }), TypeError)
  assert.throws(() => serialize({ type: 'AUTH', uuid: 'a', token: 'x-y' }), TypeError)
  assert.throws(() => serialize({ type: 'BYPASS', uuids: ['a', ''] }), TypeError)
  assert.throws(() => serialize({ type: 'DATA', length: -1 }), TypeError)
  assert.throws(() => serialize({ type: 'DATA', length: 1.5 }), TypeError)
  assert.throws(() => serialize({ type: 'ERROR', text: 'two\nlines' }), TypeError)
  assert.equal(encodeLine({ type: 'VERSION', version: 4 }), 'VERSION 4\n')
  assert.equal(serialize({ type: 'PUT', af: undefined, key }), `PUT  ${K}`)
  assert.equal(serialize({ type: 'GET', offset: 0, af: 'a b.txt', key }), `GET 0 a%b.txt ${K}`)
  assert.equal(serialize({ type: 'SUCCESS-PLUS', uuids: [] }), 'SUCCESS-PLUS')
})
