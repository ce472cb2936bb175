// The one base64 decoder: `[base64]` values and Basic credentials decode as the reference's
// (sandi's Codec.Binary.Base64Url) do, including what it tolerates.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { decodeBase64Url, encodeBase64Url } from '../../src/protocol/base64url.js'
import { decodeWrapped, keyParam, Query } from '../../src/protocol/http/params.js'
import { parseAuthorization } from '../../src/protocol/http/auth.js'

// A key whose base64 ends in a padded quad ("…eA==").
const K = 'SHA256E-s6--5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03.tx'
const B = encodeBase64Url(Buffer.from(K))

test('[base64] values as the reference reads them (measured with curl against git annex p2phttp 10.20250416)', () => {
  assert.ok(B.endsWith('eA=='), B)
  const key = (v: string) => keyParam(new Query(new URLSearchParams([['key', v]])))
  // Accepted by the reference: text after a padded quad is ignored; bits under the padding need not be zero.
  for (const v of [`[${B}]`, `[${B}xyzw]`, `[${B}x]`, `[${B}====]`]) assert.equal(decodeWrapped(v), K, v)
  assert.equal(decodeWrapped(`[${B.slice(0, -3)}B==]`), K)
  assert.doesNotThrow(() => key(`[${B}xyzw]`))
  // Refused by it: a quad cut short.
  for (const v of [`[${B.slice(0, -1)}]`, `[${B.slice(0, -2)}]`]) assert.throws(() => key(v), /unable to base64 decode \[\] wrapped value/, v)
})

test('one decoder: Basic credentials and [base64] values decode alike on the base64url alphabet', () => {
  fc.assert(
    fc.property(fc.stringMatching(/^[A-Za-z0-9_=-]{0,24}$/), (s) => {
      const wrapped = decodeWrapped(`[${s}]`)
      const raw = decodeBase64Url(s)
      if (raw === undefined || !Buffer.from(raw.toString('utf8'), 'utf8').equals(raw)) assert.equal(wrapped, undefined, s)
      else assert.equal(wrapped, raw.toString('utf8'), s)
      const auth = parseAuthorization(`Basic ${s}`)
      if (raw === undefined) assert.equal(auth, undefined, s)
    }),
  )
})

test('encode then decode is the identity, in either alphabet', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
      const e = encodeBase64Url(b)
      assert.deepEqual(decodeBase64Url(e), Buffer.from(b))
      assert.deepEqual(decodeBase64Url(Buffer.from(b).toString('base64'), { standardAlphabet: true }), Buffer.from(b))
    }),
  )
})
