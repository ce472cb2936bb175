import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { BadRequestError } from '../../src/errors.js'
import {
  Query,
  dataLengthHeader,
  dataPresentParam,
  decodeWrapped,
  encodeWrapped,
  jsonBody,
  keyParam,
  offsetParam,
  resolveRoute,
  clientUuidParam,
} from '../../src/protocol/http/params.js'

const U = '17f639b1-4fa7-4882-95e1-efc4afb5e850'
const K = 'SHA256E-s6--5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03.txt'
const q = (s: string) => Query.fromUrl(`/x?${s}`)
const message = (f: () => unknown) => {
  try {
    f()
  } catch (e) {
    assert.ok(e instanceof BadRequestError, `expected BadRequestError, got ${String(e)}`)
    return e.message
  }
  assert.fail('expected a refusal')
}

test('routes: every endpoint at its supported versions; others are "bad version" (transcripts/06 E)', () => {
  const ok = (m: string, p: string, accept?: string) => resolveRoute(m, p, accept).kind
  assert.equal(ok('POST', `/git-annex/${U}/v4/checkpresent`), 'ok')
  assert.equal(ok('POST', `/git-annex/${U}/v4/checkpresent/`), 'ok') // trailing slash accepted
  assert.equal(ok('GET', `/git-annex/${U}/key/${K}`), 'ok')
  assert.equal(ok('HEAD', `/git-annex/${U}/v4/key/${K}`), 'ok')
  for (const [v, e] of [
    ['v5', 'checkpresent'],
    ['v0', 'remove-before'],
    ['v2', 'remove-before'],
    ['v2', 'gettimestamp'],
    ['v0', 'putoffset'],
    ['vx', 'checkpresent'],
  ] as const) {
    assert.equal(ok('POST', `/git-annex/${U}/${v}/${e}`), 'bad-version', `${v}/${e}`)
  }
  assert.equal(ok('GET', `/git-annex/${U}/v5/key/${K}`), 'bad-version')
  assert.equal(ok('GET', `/git-annex/${U}/v4/checkpresent`), 'bad-version') // wrong method
  assert.equal(ok('PUT', `/git-annex/${U}/v4/put`), 'bad-version')
  assert.equal(ok('POST', `/git-annex/${U}/v4/key/${K}`), 'bad-version')
  assert.equal(ok('DELETE', `/git-annex/${U}/v4/remove`), 'bad-version')
  assert.equal(ok('POST', `/git-annex/${U}/v4/checkpresent`, 'text/plain'), 'bad-version')
  assert.equal(ok('GET', `/git-annex/${U}/v4/key/${K}`, 'application/json'), 'bad-version')
  assert.equal(ok('POST', `/git-annex/${U}/v4/checkpresent`, 'application/json;charset=utf-8,application/json'), 'ok')
  assert.equal(ok('GET', `/git-annex/${U}/v4/key/${K}`, 'application/octet-stream'), 'ok')
  for (const p of ['/', '/git-annex/', `/git-annex/${U}`, `/git-annex/${U}/v4/nothing`, `/foo/${U}/v4/checkpresent`]) {
    assert.equal(ok('GET', p), 'not-found', p)
  }
})

test('routes: `vN/key` without a key is no route; the UUID segment is a [base64] value, empty refused (measured)', () => {
  for (const p of [`/git-annex/${U}/v4/key`, `/git-annex/${U}/v4/key/`, `/git-annex/${U}/key`]) assert.deepEqual(resolveRoute('GET', p, undefined), { kind: 'not-found' }, p)
  const wrapped = `[${Buffer.from(U).toString('base64url')}]`
  const r = resolveRoute('POST', `/git-annex/${encodeURIComponent(wrapped)}/v4/checkpresent`, undefined)
  assert.equal(r.kind === 'ok' && r.serverUuid, U)
  assert.deepEqual(resolveRoute('POST', '/git-annex//v4/checkpresent', undefined), { kind: 'bad-uuid', message: 'empty UUID' })
  assert.deepEqual(resolveRoute('POST', '/git-annex//v99/checkpresent', undefined), { kind: 'bad-uuid', message: 'empty UUID' })
  assert.deepEqual(resolveRoute('GET', '/git-annex/%5B%5D/key/x', undefined), { kind: 'bad-uuid', message: 'empty UUID' })
  assert.deepEqual(resolveRoute('POST', '/git-annex/%5B!!!%5D/v4/checkpresent', undefined), { kind: 'bad-uuid', message: 'unable to base64 decode [] wrapped value' })
  assert.deepEqual(resolveRoute('POST', '/git-annex//v4/nosuch', undefined), { kind: 'not-found' })
})

test('[base64] values: padded decodes, unpadded and invalid are refused with the reference text', () => {
  const b64 = Buffer.from(K).toString('base64url')
  const padded = b64 + '='.repeat((4 - (b64.length % 4)) % 4)
  assert.equal(decodeWrapped(`[${padded}]`), K)
  // The exact unpadded value the reference refused in transcripts/06 D.
  assert.notEqual(padded, b64)
  assert.equal(
    message(() => keyParam(q(`key=%5BU0hBMjU2RS1zNi0tNTg5MWI1YjUyMmQ1ZGYwODZkMGZmMGIxMTBmYmQ5ZDIxYmI0ZmM3MTYzYWYzNGQwODI4NmEyZTg0NmY2YmUwMy50eHQ%5D`))),
    'Error parsing query parameter key failed: unable to base64 decode [] wrapped value',
  )
  assert.equal(message(() => keyParam(q('key=%5B!!!%5D'))), 'Error parsing query parameter key failed: unable to base64 decode [] wrapped value')
  assert.equal(message(() => keyParam(q('key=notakey'))), 'Error parsing query parameter key failed: key parse error')
  assert.equal(message(() => keyParam(q('clientuuid=x'))), 'Query parameter key is required')
  assert.equal(message(() => clientUuidParam(q('clientuuid='), { required: true })), 'Error parsing query parameter clientuuid failed: empty UUID')
  assert.equal(clientUuidParam(q('clientuuid=not-a-uuid'), { required: true }), 'not-a-uuid')
})

test('[base64] round trip: every string the encoder emits decodes to itself', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'grapheme' }), (s) => {
      assert.equal(decodeWrapped(encodeWrapped(s)), s)
    }),
  )
  fc.assert(
    fc.property(fc.string({ unit: 'grapheme' }), (s) => {
      const wrapped = encodeWrapped(`[${s}]`)
      assert.ok(wrapped.startsWith('[') && wrapped.endsWith(']'))
      assert.equal(decodeWrapped(wrapped), `[${s}]`)
    }),
  )
})

test('duplicate parameters: the first wins (transcripts/06 D)', () => {
  assert.equal(keyParam(q(`key=${K}&key=WORM--x`)).name, K.split('--')[1])
})

test('numbers, booleans and the data-length header', () => {
  assert.equal(offsetParam(q('offset=2')), 2)
  assert.equal(offsetParam(q('')), undefined)
  assert.equal(message(() => offsetParam(q('offset=abc'))), 'Error parsing query parameter offset failed: offset parse error')
  assert.match(message(() => offsetParam(q('offset=-1'))), /offset must not be negative/)
  assert.match(message(() => offsetParam(q('offset=99999999999999999999'))), /too large/)
  assert.equal(dataPresentParam(q('data-present=true')), true)
  assert.equal(dataPresentParam(q('data-present=false')), false)
  assert.equal(message(() => dataPresentParam(q('data-present=yes'))), "Error parsing query parameter data-present failed: could not parse: `yes'")
  assert.equal(dataLengthHeader('6'), 6)
  assert.equal(message(() => dataLengthHeader(undefined)), 'Header X-git-annex-data-length is required')
  assert.equal(
    message(() => dataLengthHeader('abc')),
    'Error parsing header X-git-annex-data-length failed: X-git-annex-data-length parse error',
  )
  fc.assert(fc.property(fc.nat(), (n) => assert.equal(dataLengthHeader(String(n)), n)))
})

test('JSON bodies have sorted keys like the reference', () => {
  assert.equal(jsonBody({ stored: true, plusuuids: [] }), '{"plusuuids":[],"stored":true}')
  assert.equal(jsonBody({ locked: true, lockid: 'x' }), '{"locked":true,"lockid":"x"}')
  assert.equal(jsonBody({ alreadyhave: true, plusuuids: [] }), '{"alreadyhave":true,"plusuuids":[]}')
})
