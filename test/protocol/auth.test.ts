import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, test } from 'node:test'
import fc from 'fast-check'
import {
  type Action,
  type AuthConfig,
  type AuthUser,
  type Decision,
  ENDPOINT_ACTION,
  INVALID_AUTH_BODY,
  WWW_AUTHENTICATE,
  authConfigFromFlags,
  authWarnings,
  decide,
  parseAuthorization,
} from '../../src/protocol/http/auth.js'
import {
  HEADER_ENV,
  HEADER_VECTORS,
  MATRIX_ENV,
  MATRIX_PATH,
  TLS_CREDENTIALS,
  TLS_ENV,
  TLS_VECTORS,
  basic,
  loadAuthMatrix,
} from './auth-matrix-vectors.js'

const ACTIONS: readonly Action[] = ['read', 'write', 'remove', 'lock']

/** The observable part of a decision, in the matrix's terms. */
function observed(d: Decision): string {
  if (d.ok) return '200'
  const wa = d.headers['WWW-Authenticate']
  if (wa !== undefined && wa !== WWW_AUTHENTICATE) return `${d.status} with WWW-Authenticate ${JSON.stringify(wa)}`
  return `${d.status}${wa !== undefined ? '+WA' : ''} body=${JSON.stringify(d.body)}`
}

describe('auth-matrix.md (every cell)', () => {
  const sections = loadAuthMatrix()

  test('the parser found every flag combination of the file', () => {
    const headings = readFileSync(MATRIX_PATH, 'utf8').match(/^## `/gm) ?? []
    assert.equal(sections.length, headings.length)
    assert.ok(sections.length >= 17, `only ${sections.length} sections`)
    for (const s of sections) {
      assert.equal(s.cells.length, 90, s.heading)
      // Cross-check against the file's own "(N cells)" tallies.
      for (const [status, { count }] of s.bodies) {
        assert.equal(s.cells.filter((c) => c.expected.status === status).length, count, `${s.heading}: ${status}`)
      }
      for (const c of s.cells) if (c.expected.status !== 200) assert.ok(s.bodies.has(c.expected.status), `${s.heading}: no body for ${c.expected.status}`)
    }
  })

  for (const section of sections) {
    test(`\`${section.heading || '(no auth flags)'}\``, () => {
      const cfg = authConfigFromFlags(section.argv, MATRIX_ENV)
      const wrong: string[] = []
      for (const cell of section.cells) {
        const d = decide(cfg, { authorization: cell.authorization, secure: false }, ENDPOINT_ACTION[cell.endpoint])
        const want =
          cell.expected.status === 200 ? '200' : `${cell.expected.status}${cell.expected.wwwAuthenticate ? '+WA' : ''} body=${JSON.stringify(cell.body)}`
        if (observed(d) !== want) wrong.push(`${cell.credential} / ${cell.column}: want ${want}, got ${observed(d)}`)
      }
      assert.deepEqual(wrong, [])
    })
  }
})

describe('measured Authorization header corner cases (--authenv-http)', () => {
  const cfg = authConfigFromFlags(['--authenv-http'], HEADER_ENV)
  for (const v of HEADER_VECTORS) {
    test(v.label, () => {
      const want = v.deviation ?? v
      for (const [action, status] of [['read', want.read], ['write', want.write]] as const) {
        const d = decide(cfg, { authorization: v.authorization, secure: false }, action)
        assert.equal(d.ok ? 200 : d.status, status, `${action} ${JSON.stringify(v.authorization)}`)
        if (!d.ok && d.status === 400) assert.equal(d.body, INVALID_AUTH_BODY)
      }
    })
  }
})

describe('measured HTTPS answers', () => {
  for (const v of TLS_VECTORS) {
    test(`${v.argv.join(' ')} / ${v.credential}`, () => {
      const cfg = authConfigFromFlags(v.argv, TLS_ENV)
      const authorization = TLS_CREDENTIALS[v.credential]
      for (const [action, status] of [['read', v.read], ['write', v.write]] as const) {
        const d = decide(cfg, { authorization, secure: true }, action)
        assert.equal(d.ok ? 200 : d.status, status, action)
      }
    })
  }
})

describe('session modes and users', () => {
  const env = MATRIX_ENV
  const mode = (argv: string[], authorization: string | undefined, action: Action) =>
    decide(authConfigFromFlags(argv, env), { authorization, secure: false }, action)

  test('authenticated users run with their permission and are named', () => {
    assert.deepEqual(mode(['--authenv-http'], basic('rw', 'pw1'), 'remove'), { ok: true, mode: 'read-write', user: 'rw' })
    assert.deepEqual(mode(['--authenv-http'], basic('ao', 'pw3'), 'write'), { ok: true, mode: 'append-only', user: 'ao' })
    assert.deepEqual(mode(['--authenv-http'], basic('ao', 'pw3'), 'lock'), { ok: true, mode: 'append-only', user: 'ao' })
    assert.deepEqual(mode(['--authenv-http'], basic('ro', 'pw2'), 'read'), { ok: true, mode: 'read-only', user: 'ro' })
    assert.deepEqual(mode(['--authenv-http', '--wideopen'], basic('cu', 'a:b'), 'read'), { ok: true, mode: 'read-write', user: 'cu' })
  })

  test('anonymous sessions carry no user', () => {
    assert.deepEqual(mode(['--wideopen'], undefined, 'remove'), { ok: true, mode: 'read-write' })
    assert.deepEqual(mode(['--unauth-appendonly'], undefined, 'write'), { ok: true, mode: 'append-only' })
    assert.deepEqual(mode(['--unauth-readonly'], undefined, 'read'), { ok: true, mode: 'read-only' })
    // Unauthenticated locking runs in a read-only session even on an append-only server.
    assert.deepEqual(mode(['--unauth-appendonly'], undefined, 'lock'), { ok: true, mode: 'read-only' })
    assert.deepEqual(mode(['--unauth-appendonly', '--unauth-nolocking'], undefined, 'lock'), { ok: true, mode: 'append-only' })
    // Credentials that are not consulted (no --authenv-http on http) count as anonymous.
    assert.deepEqual(mode(['--wideopen'], basic('ro', 'pw2'), 'write'), { ok: true, mode: 'read-write' })
  })

  test('401 carries exactly the WWW-Authenticate header, 400 and 403 none', () => {
    assert.deepEqual(mode([], undefined, 'read'), { ok: false, status: 401, body: '', headers: { 'WWW-Authenticate': WWW_AUTHENTICATE } })
    assert.deepEqual(mode(['--unauth-readonly'], undefined, 'write'), { ok: false, status: 403, body: '', headers: {} })
    assert.deepEqual(mode(['--wideopen'], 'Bearer x', 'read'), { ok: false, status: 400, body: INVALID_AUTH_BODY, headers: {} })
  })
})

describe('authConfigFromFlags', () => {
  test('argv and option objects give the same configuration', () => {
    const env = { GIT_ANNEX_P2PHTTP_PASSWORD_a: 'x' }
    const fromArgv = authConfigFromFlags(['--port', '9417', '--unauth-readonly', '--authenv-http', '--unauth-nolocking'], env)
    const fromObject = authConfigFromFlags({ unauthReadonly: true, authenvHttp: true, unauthNolocking: true }, env)
    assert.deepEqual(fromArgv, fromObject)
    assert.deepEqual(fromObject, {
      wideopen: false,
      unauthReadonly: true,
      unauthAppendonly: false,
      unauthNolocking: true,
      authenv: false,
      authenvHttp: true,
      users: new Map([['a', { password: 'x', permission: 'readwrite' }]]),
    })
  })

  test('users and permissions as git-annex reads them', () => {
    const cfg = authConfigFromFlags([], {
      PATH: '/bin',
      GIT_ANNEX_P2PHTTP_PASSWORD_rw: 'pw1',
      GIT_ANNEX_P2PHTTP_PASSWORD_ro: 'pw2',
      GIT_ANNEX_P2PHTTP_PERMISSIONS_ro: 'readonly',
      GIT_ANNEX_P2PHTTP_PASSWORD_ao: 'pw3',
      GIT_ANNEX_P2PHTTP_PERMISSIONS_ao: 'appendonly',
      GIT_ANNEX_P2PHTTP_PASSWORD_typo: 'pw4',
      GIT_ANNEX_P2PHTTP_PERMISSIONS_typo: 'read-only',
      GIT_ANNEX_P2PHTTP_PERMISSIONS_nopw: 'readonly',
      GIT_ANNEX_P2PHTTP_PASSWORD_: 'empty-name',
      GIT_ANNEX_P2PHTTP_PASSWORD_empty: '',
      GIT_ANNEX_P2PHTTP_PASSWORD_unset: undefined,
      git_annex_p2phttp_password_lower: 'ignored',
    })
    assert.deepEqual(
      [...cfg.users].sort(([a], [b]) => a.localeCompare(b)),
      [
        ['', { password: 'empty-name', permission: 'readwrite' }],
        ['ao', { password: 'pw3', permission: 'appendonly' }],
        ['empty', { password: '', permission: 'readwrite' }],
        ['ro', { password: 'pw2', permission: 'readonly' }],
        ['rw', { password: 'pw1', permission: 'readwrite' }],
        ['typo', { password: 'pw4', permission: 'readwrite' }],
      ] satisfies Array<[string, AuthUser]>,
    )
  })

  test('authWarnings names the silent traps', () => {
    const env = {
      GIT_ANNEX_P2PHTTP_PASSWORD_typo: 'x',
      GIT_ANNEX_P2PHTTP_PERMISSIONS_typo: 'read-only',
      GIT_ANNEX_P2PHTTP_PERMISSIONS_nopw: 'readonly',
    }
    const w = authWarnings(authConfigFromFlags(['--authenv-http'], env), env, { tls: false })
    assert.equal(w.length, 2, w.join('\n'))
    assert.match(w.join('\n'), /PERMISSIONS_typo="read-only".*read-write/)
    assert.match(w.join('\n'), /PERMISSIONS_nopw is set but GIT_ANNEX_P2PHTTP_PASSWORD_nopw is not/)
    assert.match(authWarnings(authConfigFromFlags(['--authenv-http'], env), env, { tls: true }).join('\n'), /--authenv-http does not enable authentication over HTTPS/)
    assert.match(authWarnings(authConfigFromFlags(['--authenv'], env), env, { tls: false }).join('\n'), /--authenv only authenticates over HTTPS/)
    assert.match(authWarnings(authConfigFromFlags([], {}), {}, { tls: false }).join('\n'), /every request will be answered 401/)
    assert.deepEqual(authWarnings(authConfigFromFlags(['--wideopen'], {}), {}, { tls: false }), [])
    assert.deepEqual(authWarnings(authConfigFromFlags(['--authenv'], { GIT_ANNEX_P2PHTTP_PASSWORD_a: 'b' }), {}, { tls: true }), [])
  })
})

describe('parseAuthorization', () => {
  test('password may contain ":"; user is up to the first one', () => {
    const c = parseAuthorization(basic('cu', 'a:b:c'))!
    assert.equal(c.user.toString(), 'cu')
    assert.equal(c.password.toString(), 'a:b:c')
  })
})

// ---------------------------------------------------------------------------------------
// Properties

const NAMES = ['rw', 'ro', 'ao'] as const
const PERM: Record<(typeof NAMES)[number], AuthUser['permission']> = { rw: 'readwrite', ro: 'readonly', ao: 'appendonly' }

const configArb: fc.Arbitrary<AuthConfig> = fc
  .record({
    wideopen: fc.boolean(),
    unauthReadonly: fc.boolean(),
    unauthAppendonly: fc.boolean(),
    unauthNolocking: fc.boolean(),
    authenv: fc.boolean(),
    authenvHttp: fc.boolean(),
    passwords: fc.tuple(fc.string(), fc.string(), fc.string({ unit: 'grapheme' })),
  })
  .map(({ passwords, ...flags }) => ({
    ...flags,
    users: new Map(NAMES.map((n, i) => [n, { password: passwords[i]!, permission: PERM[n] }])),
  }))

// With padding in both alphabets: the git-annex client pads its base64url, and the reference requires it.
const b64 = (s: string, url: boolean) => {
  const std = Buffer.from(s, 'utf8').toString('base64')
  return url ? std.replaceAll('+', '-').replaceAll('/', '_') : std
}

const schemeArb = fc.constantFrom('Basic', 'basic', 'BASIC', 'bAsIc')
const latin1Arb = fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b).toString('latin1'))
const headerArb = (cfg: AuthConfig): fc.Arbitrary<string | undefined> =>
  fc.oneof(
    fc.constant(undefined),
    fc.record({ n: fc.constantFrom(...NAMES), s: schemeArb, url: fc.boolean() }).map(({ n, s, url }) => `${s} ${b64(`${n}:${cfg.users.get(n)!.password}`, url)}`),
    fc.record({ u: fc.string(), p: fc.string(), s: schemeArb }).map(({ u, p, s }) => `${s} ${b64(`${u}:${p}`, false)}`),
    latin1Arb,
    latin1Arb.map((s) => `Basic ${s}`),
    fc.string(),
  )

const requestArb = configArb.chain((cfg) =>
  fc.record({ cfg: fc.constant(cfg), authorization: headerArb(cfg), secure: fc.boolean(), action: fc.constantFrom(...ACTIONS) }),
)

const consulted = (cfg: AuthConfig, secure: boolean) => (secure ? cfg.authenv : cfg.authenvHttp)

/** The user the credentials authenticate, when the server consults them. */
function authenticatedAs(cfg: AuthConfig, authorization: string | undefined, secure: boolean): string | undefined {
  if (authorization === undefined || !consulted(cfg, secure)) return undefined
  const c = parseAuthorization(authorization)
  if (!c) return undefined
  const u = cfg.users.get(c.user.toString('utf8'))
  return u !== undefined && Buffer.from(u.password).equals(c.password) && Buffer.from(c.user.toString('utf8')).equals(c.user) ? c.user.toString('utf8') : undefined
}

describe('properties', () => {
  test('every decision is well-formed', () => {
    fc.assert(
      fc.property(requestArb, ({ cfg, authorization, secure, action }) => {
        const d = decide(cfg, { authorization, secure }, action)
        if (d.ok) return ['read-write', 'append-only', 'read-only'].includes(d.mode)
        if (d.status === 400) return d.body === INVALID_AUTH_BODY && Object.keys(d.headers).length === 0
        if (d.status === 401) return d.body === '' && JSON.stringify(d.headers) === JSON.stringify({ 'WWW-Authenticate': WWW_AUTHENTICATE })
        return d.status === 403 && d.body === '' && Object.keys(d.headers).length === 0
      }),
      { numRuns: 2000 },
    )
  })

  test('400 exactly when a header is present and not parseable, whatever the configuration', () => {
    fc.assert(
      fc.property(requestArb, ({ cfg, authorization, secure, action }) => {
        const d = decide(cfg, { authorization, secure }, action)
        const unparseable = authorization !== undefined && parseAuthorization(authorization) === undefined
        return (!d.ok && d.status === 400) === unparseable
      }),
      { numRuns: 2000 },
    )
  })

  test('authenticated users never get 401, and get exactly their permission', () => {
    fc.assert(
      fc.property(requestArb, ({ cfg, authorization, secure, action }) => {
        const user = authenticatedAs(cfg, authorization, secure)
        fc.pre(user !== undefined)
        const d = decide(cfg, { authorization, secure }, action)
        const perm = cfg.users.get(user!)!.permission
        const allowed = perm === 'readwrite' || (perm === 'appendonly' && action !== 'remove') || (perm === 'readonly' && action === 'read')
        return d.ok ? allowed && d.user === user : !allowed && d.status === 403
      }),
      { numRuns: 2000 },
    )
  })

  test('--wideopen allows every action to everyone not authenticated as a user', () => {
    fc.assert(
      fc.property(requestArb, ({ cfg, authorization, secure, action }) => {
        fc.pre(authenticatedAs(cfg, authorization, secure) === undefined && (authorization === undefined || parseAuthorization(authorization) !== undefined))
        const d = decide({ ...cfg, wideopen: true }, { authorization, secure }, action)
        return d.ok && d.mode === 'read-write' && d.user === undefined
      }),
      { numRuns: 2000 },
    )
  })

  test('unusable credentials are worth exactly as much as none, but are never invited to retry unless nothing is anonymous', () => {
    fc.assert(
      fc.property(requestArb, ({ cfg, authorization, secure, action }) => {
        fc.pre(authorization !== undefined && parseAuthorization(authorization) !== undefined && authenticatedAs(cfg, authorization, secure) === undefined)
        const withCreds = decide(cfg, { authorization, secure }, action)
        const anonymous = decide(cfg, { authorization: undefined, secure }, action)
        if (withCreds.ok !== anonymous.ok) return false
        if (withCreds.ok) return anonymous.ok && withCreds.mode === anonymous.mode
        const noAnonymousAccess = !cfg.wideopen && !cfg.unauthAppendonly && !cfg.unauthReadonly
        return withCreds.status === (noAnonymousAccess ? 401 : 403)
      }),
      { numRuns: 2000 },
    )
  })

  test('HTTPS or not only matters with --authenv / --authenv-http', () => {
    fc.assert(
      fc.property(requestArb, ({ cfg, authorization, action }) => {
        const c = { ...cfg, authenv: false, authenvHttp: false }
        return JSON.stringify(decide(c, { authorization, secure: true }, action)) === JSON.stringify(decide(c, { authorization, secure: false }, action))
      }),
    )
  })

  test('Basic credentials round-trip in either base64 alphabet and any scheme case', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'grapheme' }).filter((u) => !u.includes(':')),
        fc.string({ unit: 'grapheme' }),
        schemeArb,
        fc.boolean(),
        fc.constantFrom(' ', '  ', '\t'),
        (user, password, scheme, url, sep) => {
          const c = parseAuthorization(`${scheme}${sep}${b64(`${user}:${password}`, url)}`)
          return c !== undefined && c.user.equals(Buffer.from(user)) && c.password.equals(Buffer.from(password))
        },
      ),
    )
  })
})
