// Authentication and permission decision of `git annex p2phttp` (spec §2.8), pure.
// Transcribed from git-annex 10.20250416 (Command/P2PHttp.hs mkGetServerMode + getAuthEnv,
// P2P/Http/State.hs checkAuthActionClass, P2P/Http/Types.hs `FromHttpApiData Auth`) and
// checked against every cell of spec/transcripts/auth-matrix.md plus our own probes of the
// real server (test/protocol/auth-matrix-vectors.ts). Where we knowingly differ, the
// comment at the spot says so.
import { createHash, timingSafeEqual } from 'node:crypto'
import { decodeBase64Url } from '../base64url.js'

export type Permission = 'readwrite' | 'readonly' | 'appendonly'
export type Action = 'read' | 'write' | 'remove' | 'lock'
/** The P2P server mode the request's session runs with. */
export type SessionMode = 'read-write' | 'append-only' | 'read-only'

export interface AuthUser {
  readonly password: string
  readonly permission: Permission
}

export interface AuthFlags {
  readonly wideopen?: boolean
  readonly unauthReadonly?: boolean
  readonly unauthAppendonly?: boolean
  readonly unauthNolocking?: boolean
  /** Consult credentials on HTTPS only. */
  readonly authenv?: boolean
  /** Consult credentials on plain HTTP only (see decide() for why not HTTPS). */
  readonly authenvHttp?: boolean
}

export interface AuthConfig extends Required<AuthFlags> {
  readonly users: ReadonlyMap<string, AuthUser>
}

/** The p2phttp command-line spelling of each flag. */
export const AUTH_FLAG_NAMES: Readonly<Record<keyof AuthFlags, string>> = {
  wideopen: '--wideopen',
  unauthReadonly: '--unauth-readonly',
  unauthAppendonly: '--unauth-appendonly',
  unauthNolocking: '--unauth-nolocking',
  authenv: '--authenv',
  authenvHttp: '--authenv-http',
}

export interface AuthRequest {
  /** The raw Authorization header value (latin1 string, as node gives it); undefined when absent. */
  readonly authorization: string | undefined
  readonly secure: boolean
}

export type Decision =
  | { readonly ok: true; readonly mode: SessionMode; readonly user?: string }
  | {
      readonly ok: false
      readonly status: 400 | 401 | 403
      readonly body: string
      readonly headers: Readonly<Record<string, string>>
    }

export const WWW_AUTHENTICATE = 'Basic realm="git-annex", charset="UTF-8"'
export const INVALID_AUTH_BODY = 'Error parsing header Authorization failed: invalid basic auth header'

export const PASSWORD_ENV_PREFIX = 'GIT_ANNEX_P2PHTTP_PASSWORD_'
export const PERMISSIONS_ENV_PREFIX = 'GIT_ANNEX_P2PHTTP_PERMISSIONS_'

/** Which permission class each endpoint needs (P2P/Http/Server.hs, one line per handler). */
export const ENDPOINT_ACTION = {
  key: 'read',
  checkpresent: 'read',
  gettimestamp: 'read',
  put: 'write',
  putoffset: 'write',
  remove: 'remove',
  'remove-before': 'remove',
  lockcontent: 'lock',
  keeplocked: 'lock',
} as const satisfies Record<string, Action>

export type AuthEndpoint = keyof typeof ENDPOINT_ACTION

/**
 * Builds the configuration from p2phttp flags (an options object, or argv in which the
 * six flag names are looked for) and the GIT_ANNEX_P2PHTTP_* variables of `env`.
 */
export function authConfigFromFlags(flags: AuthFlags | readonly string[], env: NodeJS.ProcessEnv): AuthConfig {
  const f: AuthFlags = isArgv(flags)
    ? (Object.fromEntries(Object.entries(AUTH_FLAG_NAMES).map(([k, name]) => [k, flags.includes(name)])) as AuthFlags)
    : flags
  return {
    wideopen: f.wideopen === true,
    unauthReadonly: f.unauthReadonly === true,
    unauthAppendonly: f.unauthAppendonly === true,
    unauthNolocking: f.unauthNolocking === true,
    authenv: f.authenv === true,
    authenvHttp: f.authenvHttp === true,
    users: usersFromEnv(env),
  }
}

function isArgv(flags: AuthFlags | readonly string[]): flags is readonly string[] {
  return Array.isArray(flags)
}

function usersFromEnv(env: NodeJS.ProcessEnv): Map<string, AuthUser> {
  const users = new Map<string, AuthUser>()
  for (const [name, password] of Object.entries(env)) {
    if (password === undefined || !name.startsWith(PASSWORD_ENV_PREFIX)) continue
    const user = name.slice(PASSWORD_ENV_PREFIX.length)
    users.set(user, { password, permission: permissionOf(env[PERMISSIONS_ENV_PREFIX + user]) })
  }
  return users
}

// Exactly git-annex's parseperms: only these two spellings restrict. Anything else, a typo
// such as "read-only" or "Readonly" included, silently leaves the user read-write (measured
// on 10.20250416); authWarnings() reports such values so the operator can see them.
function permissionOf(value: string | undefined): Permission {
  return value === 'readonly' || value === 'appendonly' ? value : 'readwrite'
}

/**
 * Configuration smells the reference accepts silently. Meant for a startup log; none of
 * them changes behaviour.
 */
export function authWarnings(cfg: AuthConfig, env: NodeJS.ProcessEnv, opts: { readonly tls: boolean }): string[] {
  const out: string[] = []
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined || !name.startsWith(PERMISSIONS_ENV_PREFIX)) continue
    const user = name.slice(PERMISSIONS_ENV_PREFIX.length)
    if (env[PASSWORD_ENV_PREFIX + user] === undefined) {
      out.push(`${name} is set but ${PASSWORD_ENV_PREFIX}${user} is not: ignored`)
    } else if (value !== 'readonly' && value !== 'appendonly') {
      out.push(`${name}=${JSON.stringify(value)} is neither "readonly" nor "appendonly": user ${JSON.stringify(user)} gets read-write access (as git-annex does)`)
    }
  }
  const consulted = opts.tls ? cfg.authenv : cfg.authenvHttp
  if (cfg.users.size > 0 && !consulted) {
    if (opts.tls && cfg.authenvHttp) out.push('--authenv-http does not enable authentication over HTTPS (git-annex needs --authenv there): credentials are ignored')
    else if (!opts.tls && cfg.authenv) out.push('--authenv only authenticates over HTTPS and this server is plain HTTP: credentials are ignored')
  }
  if (!cfg.wideopen && !cfg.unauthAppendonly && !cfg.unauthReadonly && !(consulted && cfg.users.size > 0)) {
    out.push('no access is possible with these options: every request will be answered 401')
  }
  return out
}

// ---------------------------------------------------------------------------------------
// Authorization header parsing

export interface Credentials {
  readonly user: Buffer
  readonly password: Buffer
}

// Data.Char.isSpace applied to a byte taken as a Latin-1 char (the reference breaks the
// header with `isSpace . chr`): \t \n \v \f \r, space and NO-BREAK SPACE.
function isHsSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d) || c === 0xa0
}

// Credentials are decoded by the wire formats' one base64 decoder (sandi's rules, as the
// reference). The reference uses the base64url alphabet only, so a header whose standard
// base64 contains '+' or '/' is a 400 there (the git-annex client itself encodes base64url,
// so it never notices). RFC 7617 clients such as curl send the standard alphabet; we accept
// both rather than reject some passwords of theirs at random.
const decodeBase64 = (s: string) => decodeBase64Url(s, { standardAlphabet: true })

// The reference lowercases the UTF-8-decoded scheme with GHC's simple case mapping, under
// which U+0130 (capital I with dot) becomes a plain 'i': "BASİC" is accepted (measured).
function isBasicScheme(token: string): boolean {
  if (token.length < 5) return false
  for (let i = 0; i < token.length; i++) if (token.charCodeAt(i) > 0xff) return false
  const text = Buffer.from(token, 'latin1').toString('utf8').replaceAll('\u0130', 'i')
  return text.replace(/[A-Z]/g, (c) => c.toLowerCase()) === 'basic'
}

/**
 * Parses an Authorization value the way the reference does; undefined means the
 * reference's 400. The user is everything before the first ':' (all of it when there is
 * no ':', with an empty password).
 */
export function parseAuthorization(value: string): Credentials | undefined {
  // Both Warp and node drop leading blanks before the application sees the value; trailing
  // ones node drops too, Warp does not (so "Basic <b64>  " is a 400 there, fine here).
  let start = 0
  while (start < value.length && (value[start] === ' ' || value[start] === '\t')) start++
  let sep = start
  while (sep < value.length && !isHsSpace(value.charCodeAt(sep))) sep++
  if (!isBasicScheme(value.slice(start, sep))) return undefined
  let b64 = sep
  while (b64 < value.length && isHsSpace(value.charCodeAt(b64))) b64++
  const raw = decodeBase64(value.slice(b64))
  // B.split on an empty string yields no fields, which the reference rejects.
  if (raw === undefined || raw.length === 0) return undefined
  const colon = raw.indexOf(0x3a)
  return colon < 0
    ? { user: raw, password: Buffer.alloc(0) }
    : { user: raw.subarray(0, colon), password: raw.subarray(colon + 1) }
}

// ---------------------------------------------------------------------------------------
// Decision

interface ServerMode {
  readonly mode: SessionMode
  readonly unauthenticatedLockingAllowed: boolean
  /** Whether a denial should invite credentials (401) rather than refuse (403). */
  readonly authenticationAllowed: boolean
  readonly user?: string
}

const MODE: Readonly<Record<Permission, SessionMode>> = {
  readwrite: 'read-write',
  readonly: 'read-only',
  appendonly: 'append-only',
}

const BAD_REQUEST: Decision = { ok: false, status: 400, body: INVALID_AUTH_BODY, headers: {} }
const UNAUTHORIZED: Decision = { ok: false, status: 401, body: '', headers: { 'WWW-Authenticate': WWW_AUTHENTICATE } }
const FORBIDDEN: Decision = { ok: false, status: 403, body: '', headers: {} }

/**
 * Whether `action` may proceed, and in which session mode. A 400 answer does not depend
 * on the repository, so the caller may send it before looking the server UUID up; the
 * reference answers an unknown UUID 404 before any 401/403 (measured), so those wait.
 */
export function decide(cfg: AuthConfig, req: AuthRequest, action: Action): Decision {
  let creds: Credentials | undefined
  if (req.authorization !== undefined) {
    creds = parseAuthorization(req.authorization)
    if (creds === undefined) return BAD_REQUEST
  }
  const sm = serverMode(cfg, req.secure, creds)
  if (sm === undefined) return UNAUTHORIZED
  const allow = (mode: SessionMode): Decision => (sm.user === undefined ? { ok: true, mode } : { ok: true, mode, user: sm.user })
  const deny = sm.authenticationAllowed ? UNAUTHORIZED : FORBIDDEN
  // checkAuthActionClass, first match wins. Authenticated users never have
  // unauthenticatedLockingAllowed, which is why a readonly USER cannot lock while an
  // anonymous read-only client can.
  if (sm.mode === 'read-write') return allow('read-write')
  if (sm.unauthenticatedLockingAllowed && action === 'lock') return allow('read-only')
  if (sm.mode === 'append-only') return action === 'remove' ? deny : allow('append-only')
  return action === 'read' ? allow('read-only') : deny
}

// mkGetServerMode; undefined is CannotServeRequests.
function serverMode(cfg: AuthConfig, secure: boolean, creds: Credentials | undefined): ServerMode | undefined {
  if (creds !== undefined) {
    // Note the pairing: --authenv-http alone does not consult credentials over HTTPS
    // (measured with --certfile: valid users get the anonymous answer). Kept for fidelity.
    if ((secure && cfg.authenv) || (!secure && cfg.authenvHttp)) {
      const user = authenticate(cfg, creds)
      if (user !== undefined) {
        return {
          mode: MODE[cfg.users.get(user)!.permission],
          unauthenticatedLockingAllowed: false,
          authenticationAllowed: false,
          user,
        }
      }
    }
  }
  // Credentials that were sent but not usable make the client anonymous with
  // authentication switched off: its denials become 403 instead of inviting a retry.
  const canAuth = creds === undefined && (cfg.authenv || cfg.authenvHttp)
  const unauthLock = !cfg.unauthNolocking
  if (cfg.wideopen) return { mode: 'read-write', unauthenticatedLockingAllowed: unauthLock, authenticationAllowed: false }
  if (cfg.unauthAppendonly) return { mode: 'append-only', unauthenticatedLockingAllowed: unauthLock, authenticationAllowed: canAuth }
  if (cfg.unauthReadonly) return { mode: 'read-only', unauthenticatedLockingAllowed: unauthLock, authenticationAllowed: canAuth }
  return undefined
}

const digest = (b: Uint8Array) => createHash('sha256').update(b).digest()
const NO_USER_DIGEST = digest(Buffer.from('no such user'))

// Users are keyed by the exact bytes of their name and password, like the reference's
// Map Auth. Passwords are compared through fixed-length digests so that neither their
// content nor their length, nor whether the user exists, shows in the timing.
function authenticate(cfg: AuthConfig, creds: Credentials): string | undefined {
  const name = creds.user.toString('utf8')
  const user = Buffer.from(name, 'utf8').equals(creds.user) ? cfg.users.get(name) : undefined
  const expected = user === undefined ? NO_USER_DIGEST : digest(Buffer.from(user.password, 'utf8'))
  const same = timingSafeEqual(digest(creds.password), expected)
  return same && user !== undefined ? name : undefined
}
