// Domain errors to the wire and back: what one annex-proxy answers, another (in front of
// it, as a cluster gateway over annex+http) turns into the same error.
import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { test } from 'node:test'
import fc from 'fast-check'
import * as errors from '../../src/errors.js'
import { type Code, ProxyError } from '../../src/errors.js'
import { ERROR_CODE_HEADER, fromHttp, toHttp } from '../../src/protocol/error-map.js'
import { PROJECT_ROOT } from '../helpers/annex.js'

/** One error of each code: Record<Code, …> makes the compiler insist on every code. */
const ONE_OF_EACH: Readonly<Record<Code, (m: string) => ProxyError>> = {
  BAD_KEY: (m) => new errors.BadKeyError(m),
  BAD_REQUEST: (m) => new errors.BadRequestError(m),
  UNKNOWN_REPO: (m) => new errors.UnknownRepoError(m),
  HASH_MISMATCH: (m) => new errors.HashMismatchError(m),
  LENGTH_MISMATCH: (m) => new errors.LengthMismatchError(m),
  NOT_PRESENT: (m) => new errors.NotPresentError(m),
  NOT_SUPPORTED: (m) => new errors.NotSupportedError(m),
  LOCKED: (m) => new errors.LockedError(m),
  TRANSFER_IN_PROGRESS: (m) => new errors.TransferInProgressError(m),
  DISK_FULL: (m) => new errors.DiskFullError(m),
  READ_ONLY: (m) => new errors.ReadOnlyError(m),
  APPEND_ONLY: (m) => new errors.AppendOnlyError(m),
  REMOTE_UNAVAILABLE: (m) => new errors.RemoteUnavailableError(m),
  ABORTED: (m) => new errors.AbortedError(m),
  CONFIG: (m) => new errors.ConfigError(m),
  OVERLOADED: (m) => new errors.OverloadedError(m),
  ALL_TARGETS_FAILED: (m) => new errors.AllTargetsFailedError(m),
  STALLED: (m) => new errors.StalledError(m),
  COORDINATION_UNAVAILABLE: (m) => new errors.CoordinationUnavailableError(m),
}

test('toHttp → fromHttp round trip: the same class, code and text come back for every code', () => {
  fc.assert(
    fc.property(fc.constantFrom(...(Object.keys(ONE_OF_EACH) as Code[])), fc.string({ maxLength: 80 }).filter((s) => s.trim() === s && s !== ''), (code, msg) => {
      const sent = ONE_OF_EACH[code](msg)
      const wire = toHttp(sent)
      assert.equal(wire.code, code)
      assert.equal(wire.body, msg)
      const back = fromHttp(wire.status, wire.body, wire.code, 'why')
      if (wire.status === 500) {
        // A downstream's own abort or configuration failure is an unavailable remote here.
        assert.ok(back instanceof errors.RemoteUnavailableError, code)
      } else {
        assert.equal(back.constructor, sent.constructor, code)
        assert.equal(back.code, code)
      }
      assert.equal(back.message, `why: ${msg}`)
      // Without the header (the reference, or a proxy between), the status keeps its meaning.
      const bare = fromHttp(wire.status, wire.body)
      assert.equal(toHttp(bare).status, wire.status === 500 ? 502 : wire.status, code)
    }),
  )
})

test('fromHttp: statuses the reference and annex-proxy send map to their domain errors; a header naming a code of another status is ignored', () => {
  assert.ok(fromHttp(507, '') instanceof errors.DiskFullError)
  assert.ok(fromHttp(409, 'transfer already in progress') instanceof errors.TransferInProgressError)
  assert.ok(fromHttp(409, '', 'LOCKED') instanceof errors.LockedError)
  assert.ok(fromHttp(422, '') instanceof errors.HashMismatchError)
  assert.ok(fromHttp(503, '') instanceof errors.OverloadedError)
  assert.ok(fromHttp(400, 'bad') instanceof errors.BadRequestError)
  assert.ok(fromHttp(400, 'bad', 'DISK_FULL') instanceof errors.BadRequestError)
  assert.ok(fromHttp(418, '') instanceof errors.RemoteUnavailableError)
  assert.ok(fromHttp(500, 'git-annex: oops') instanceof errors.RemoteUnavailableError)
  assert.equal(fromHttp(500, 'git-annex: oops', undefined, 'put (v4): HTTP 500').message, 'put (v4): HTTP 500: git-annex: oops')
  assert.equal(ERROR_CODE_HEADER, ERROR_CODE_HEADER.toLowerCase())
})

test('unknown errors never reach the wire with their text', () => {
  assert.deepEqual(toHttp(new Error('/secret/path exploded')), { status: 500, body: 'internal server error' })
})

test('every error class is declared in src/errors.ts', () => {
  const src = join(PROJECT_ROOT, 'src')
  const files: string[] = []
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name))
      else if (e.name.endsWith('.ts')) files.push(join(d, e.name))
    }
  }
  walk(src)
  const elsewhere = files
    .filter((f) => relative(src, f) !== 'errors.ts')
    .flatMap((f) => [...readFileSync(f, 'utf8').matchAll(/class (\w+) extends (\w*Error)\b/g)].map((m) => `${relative(src, f)}: ${m[1]}`))
  assert.deepEqual(elsewhere, [])
})
