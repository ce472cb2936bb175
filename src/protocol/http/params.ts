// Request parsing for the P2P-over-HTTP API (spec §2.2, §2.3), pure. Messages match the
// reference's (servant) texts so clients and scripts see the same errors.
import { BadRequestError } from '../../errors.js'
import { type Key, tryParseKey } from '../../keys/key.js'
import { decodeBase64Url, encodeBase64Url } from '../base64url.js'

export type Version = 0 | 1 | 2 | 3 | 4
export const MAX_VERSION: Version = 4

export type Endpoint =
  | 'key'
  | 'checkpresent'
  | 'remove'
  | 'remove-before'
  | 'gettimestamp'
  | 'put'
  | 'putoffset'
  | 'lockcontent'
  | 'keeplocked'

interface EndpointSpec {
  readonly versions: readonly Version[]
  readonly methods: readonly string[]
  /** The media type the response has; a request whose Accept excludes it is refused. */
  readonly produces: 'application/json' | 'application/octet-stream'
}

const ALL: readonly Version[] = [0, 1, 2, 3, 4]
const JSON_POST = { methods: ['POST'], produces: 'application/json' } as const

export const ENDPOINTS: Readonly<Record<Endpoint, EndpointSpec>> = {
  key: { versions: ALL, methods: ['GET', 'HEAD'], produces: 'application/octet-stream' },
  checkpresent: { versions: ALL, ...JSON_POST },
  remove: { versions: ALL, ...JSON_POST },
  'remove-before': { versions: [3, 4], ...JSON_POST },
  gettimestamp: { versions: [3, 4], ...JSON_POST },
  put: { versions: ALL, ...JSON_POST },
  putoffset: { versions: [1, 2, 3, 4], ...JSON_POST },
  lockcontent: { versions: ALL, ...JSON_POST },
  keeplocked: { versions: ALL, ...JSON_POST },
}

export type Route =
  | { readonly kind: 'not-found' }
  | { readonly kind: 'bad-version' }
  /** A known route whose server UUID segment is unusable (400, the reference's text). */
  | { readonly kind: 'bad-uuid'; readonly message: string }
  | {
      readonly kind: 'ok'
      readonly serverUuid: string
      readonly endpoint: Endpoint
      /** undefined for the unversioned `key/<key>` form, served as v0. */
      readonly version: Version | undefined
      /** The raw path key, for `key/<key>`. */
      readonly pathKey?: string
    }

/** Splits a raw request path (no query) into decoded segments; undefined if undecodable. */
export function pathSegments(rawPath: string): string[] | undefined {
  const parts = rawPath.split('/')
  if (parts[0] === '') parts.shift()
  // The reference accepts one trailing slash.
  if (parts.length > 0 && parts[parts.length - 1] === '') parts.pop()
  try {
    return parts.map((p) => decodeURIComponent(p))
  } catch {
    return undefined
  }
}

function acceptable(accept: string | undefined, produces: string): boolean {
  if (accept === undefined || accept.trim() === '') return true
  const [type] = produces.split('/')
  return accept.split(',').some((range) => {
    const mt = range.split(';')[0]!.trim().toLowerCase()
    return mt === '*/*' || mt === produces || mt === `${type}/*`
  })
}

/**
 * Maps method + path + Accept to an endpoint. Like the reference, a known endpoint
 * reached with an unsupported version, method or Accept answers 400 "bad version";
 * anything else unknown is 404.
 */
export function resolveRoute(method: string, rawPath: string, accept: string | undefined): Route {
  const seg = pathSegments(rawPath)
  if (!seg || seg[0] !== 'git-annex' || seg.length < 3) return { kind: 'not-found' }
  let endpoint: string
  let version: Version | undefined
  let pathKey: string | undefined
  // Like query values, the UUID segment may be `[base64]`; checked once the route is known.
  const serverUuid = decodeWrapped(seg[1]!)
  const badUuid: Route = { kind: 'bad-uuid', message: serverUuid === undefined ? B64_FAIL : 'empty UUID' }
  if (seg[2] === 'key' && seg.length === 4) {
    endpoint = 'key'
    pathKey = seg[3]
  } else {
    const v = seg[2]!
    if (seg[3] === 'key' && seg.length === 5) {
      endpoint = 'key'
      pathKey = seg[4]
    } else if (seg.length === 4 && seg[3] !== 'key') {
      // `vN/key` without a key is no route at all, as for the reference (404).
      endpoint = seg[3]!
    } else {
      return { kind: 'not-found' }
    }
    if (!(endpoint in ENDPOINTS)) return { kind: 'not-found' }
    if (!serverUuid) return badUuid
    const m = /^v([0-9]+)$/.exec(v)
    if (!m) return { kind: 'bad-version' }
    const n = Number(m[1])
    if (!ENDPOINTS[endpoint as Endpoint].versions.includes(n as Version)) return { kind: 'bad-version' }
    version = n as Version
  }
  if (!serverUuid) return badUuid
  const spec = ENDPOINTS[endpoint as Endpoint]
  if (!spec.methods.includes(method.toUpperCase())) return { kind: 'bad-version' }
  if (!acceptable(accept, spec.produces)) return { kind: 'bad-version' }
  return { kind: 'ok', serverUuid, endpoint: endpoint as Endpoint, version, ...(pathKey !== undefined ? { pathKey } : {}) }
}

/**
 * `[base64url]` values (spec §2.2): a value in brackets is base64url, decoded as the
 * reference decodes it (padding required, anything after a padded quad ignored); any other
 * value is literal text. Undefined when it does not decode, or not to UTF-8.
 */
export function decodeWrapped(value: string): string | undefined {
  if (!(value.startsWith('[') && value.endsWith(']') && value.length >= 2)) return value
  const buf = decodeBase64Url(value.slice(1, -1))
  if (buf === undefined) return undefined
  const text = buf.toString('utf8')
  // Keys and UUIDs are handled as text; bytes that are not UTF-8 cannot round-trip.
  if (!Buffer.from(text, 'utf8').equals(buf)) return undefined
  return text
}

/** The inverse: what the reference's encoder emits for a value. */
export function encodeWrapped(value: string): string {
  if (value.startsWith('[') && value.endsWith(']')) return `[${encodeBase64Url(Buffer.from(value, 'utf8'))}]`
  return value
}

const required = (name: string) => new BadRequestError(`Query parameter ${name} is required`)
const failed = (name: string, why: string) => new BadRequestError(`Error parsing query parameter ${name} failed: ${why}`)
const B64_FAIL = 'unable to base64 decode [] wrapped value'

/** Query access with the reference's rule that the first of duplicate parameters wins. */
export class Query {
  constructor(private readonly params: URLSearchParams) {}
  static fromUrl(url: string): Query {
    const q = url.indexOf('?')
    return new Query(new URLSearchParams(q < 0 ? '' : url.slice(q + 1)))
  }
  first(name: string): string | undefined {
    return this.params.get(name) ?? undefined
  }
  all(name: string): string[] {
    return this.params.getAll(name)
  }
}

export function parseKeyText(text: string): Key | undefined {
  return tryParseKey(text)
}

export function keyParam(q: Query): Key {
  const raw = q.first('key')
  if (raw === undefined) throw required('key')
  const text = decodeWrapped(raw)
  if (text === undefined) throw failed('key', B64_FAIL)
  const key = tryParseKey(text)
  if (!key) throw failed('key', 'key parse error')
  return key
}

/** The key from `key/<key>` in the path. */
export function pathKeyParam(raw: string): Key {
  const text = decodeWrapped(raw)
  if (text === undefined) throw new BadRequestError(B64_FAIL)
  const key = tryParseKey(text)
  if (!key) throw new BadRequestError('key parse error')
  return key
}

function uuidValue(name: string, raw: string): string {
  const text = decodeWrapped(raw)
  if (text === undefined) throw failed(name, B64_FAIL)
  if (text === '') throw failed(name, 'empty UUID')
  return text
}

export function clientUuidParam(q: Query, opts: { required: boolean }): string | undefined {
  const raw = q.first('clientuuid')
  if (raw === undefined) {
    if (opts.required) throw required('clientuuid')
    return undefined
  }
  return uuidValue('clientuuid', raw)
}

export function bypassParam(q: Query): string[] {
  return q.all('bypass').map((raw) => uuidValue('bypass', raw))
}

export function associatedFileParam(q: Query): string | undefined {
  const raw = q.first('associatedfile')
  if (raw === undefined) return undefined
  const text = decodeWrapped(raw)
  if (text === undefined) throw failed('associatedfile', B64_FAIL)
  return text
}

function natural(name: string, raw: string): number {
  if (raw.startsWith('-') && /^-[0-9]+$/.test(raw)) throw failed(name, `${name} must not be negative`)
  if (!/^[0-9]+$/.test(raw)) throw failed(name, `${name} parse error`)
  const n = Number(raw)
  if (!Number.isSafeInteger(n)) throw failed(name, `${name} is too large`)
  return n
}

export function offsetParam(q: Query): number | undefined {
  const raw = q.first('offset')
  return raw === undefined ? undefined : natural('offset', raw)
}

export function timestampParam(q: Query): number {
  const raw = q.first('timestamp')
  if (raw === undefined) throw required('timestamp')
  return natural('timestamp', raw)
}

export function lockIdParam(q: Query): string {
  const raw = q.first('lockid')
  if (raw === undefined) throw required('lockid')
  const text = decodeWrapped(raw)
  if (text === undefined) throw failed('lockid', B64_FAIL)
  return text
}

export function dataPresentParam(q: Query): boolean {
  const raw = q.first('data-present')
  if (raw === undefined) return false
  const v = raw.toLowerCase()
  if (v === 'true') return true
  if (v === 'false') return false
  throw failed('data-present', `could not parse: \`${raw}'`)
}

export const DATA_LENGTH_HEADER = 'x-git-annex-data-length'

export function dataLengthHeader(value: string | string[] | undefined): number {
  const raw = Array.isArray(value) ? value[0] : value
  if (raw === undefined) throw new BadRequestError('Header X-git-annex-data-length is required')
  if (!/^[0-9]+$/.test(raw.trim())) {
    throw new BadRequestError('Error parsing header X-git-annex-data-length failed: X-git-annex-data-length parse error')
  }
  const n = Number(raw.trim())
  if (!Number.isSafeInteger(n)) throw new BadRequestError('Error parsing header X-git-annex-data-length failed: X-git-annex-data-length is too large')
  return n
}

/** JSON bodies with keys in sorted order, as the reference emits them. */
export function jsonBody(obj: Record<string, unknown>): string {
  const sorted: Record<string, unknown> = {}
  for (const k of Object.keys(obj).sort()) sorted[k] = obj[k]
  return JSON.stringify(sorted)
}
