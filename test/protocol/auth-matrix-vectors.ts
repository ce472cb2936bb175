// Expected answers of the real `git annex p2phttp` (10.20250416) to authentication
// variants, shared by the unit tests (test/protocol/auth.test.ts) and the end-to-end
// comparison (test/interop/auth-matrix.test.ts).
//
// 1. auth-matrix.md (the spec's measured matrix, copied verbatim into test/fixtures/spec-transcripts
//    so that a clone alone runs the tests) is parsed at test time, so a re-measured matrix dropped
//    in is picked up as is. The parser is
//    strict: an unknown row label, column, cell or a cell count that disagrees with the
//    file's own "(N cells)" lines fails the test instead of silently skipping vectors.
// 2. HEADER_VECTORS and TLS_VECTORS were measured by us against the same version with raw
//    sockets (exact header bytes) and curl over --certfile/--privatekeyfile; they cover
//    what the matrix does not: header syntax corner cases and HTTPS.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { type AuthEndpoint, type AuthFlags, AUTH_FLAG_NAMES } from '../../src/protocol/http/auth.js'
import { PROJECT_ROOT } from '../helpers/annex.js'

export const MATRIX_PATH = join(PROJECT_ROOT, 'test/fixtures/spec-transcripts/auth-matrix.md')

/** The server environment of every matrix run. */
export const MATRIX_ENV: Readonly<Record<string, string>> = {
  GIT_ANNEX_P2PHTTP_PASSWORD_rw: 'pw1',
  GIT_ANNEX_P2PHTTP_PASSWORD_ro: 'pw2',
  GIT_ANNEX_P2PHTTP_PERMISSIONS_ro: 'readonly',
  GIT_ANNEX_P2PHTTP_PASSWORD_ao: 'pw3',
  GIT_ANNEX_P2PHTTP_PERMISSIONS_ao: 'appendonly',
  GIT_ANNEX_P2PHTTP_PASSWORD_cu: 'a:b',
}

export const basic = (user: string, password: string, scheme = 'Basic') =>
  `${scheme} ${Buffer.from(`${user}:${password}`, 'utf8').toString('base64')}`

/** Matrix row label → Authorization header (undefined = none sent). */
export const MATRIX_CREDENTIALS: Readonly<Record<string, string | undefined>> = {
  none: undefined,
  rw: basic('rw', 'pw1'),
  ro: basic('ro', 'pw2'),
  ao: basic('ao', 'pw3'),
  'rw+wrong-pw': basic('rw', 'wrong'),
  'unknown-user': basic('nobody', 'pw1'),
  'rw, scheme "basic"': basic('rw', 'pw1', 'basic'),
  'cu (pw "a:b")': basic('cu', 'a:b'),
  'garbage "Basic !!!"': 'Basic !!!',
  '"Bearer xyz"': 'Bearer xyz',
}

/** Matrix column → endpoint. */
export const MATRIX_COLUMNS: Readonly<Record<string, AuthEndpoint>> = {
  checkpresent: 'checkpresent',
  get: 'key',
  put: 'put',
  putoffset: 'putoffset',
  remove: 'remove',
  'remove-before': 'remove-before',
  gettimestamp: 'gettimestamp',
  lockcontent: 'lockcontent',
  keeplocked: 'keeplocked',
}

export interface Expected {
  readonly status: 200 | 400 | 401 | 403
  readonly wwwAuthenticate: boolean
  /** lockcontent only: whether it locked (200L) or answered {"locked":false} (200u). */
  readonly locked?: boolean
}

export interface MatrixCell {
  /** The section heading, e.g. "--authenv-http --unauth-readonly". */
  readonly section: string
  readonly argv: readonly string[]
  readonly flags: AuthFlags
  readonly credential: string
  readonly authorization: string | undefined
  readonly column: string
  readonly endpoint: AuthEndpoint
  readonly expected: Expected
  /** The body the section lists for this status; '' for 401/403, undefined for 200. */
  readonly body: string | undefined
}

export interface MatrixSection {
  readonly heading: string
  readonly argv: readonly string[]
  readonly flags: AuthFlags
  readonly cells: readonly MatrixCell[]
  /** status → [body, count] from the "* 403 body "" (8 cells)" lines. */
  readonly bodies: ReadonlyMap<number, { readonly body: string; readonly count: number }>
}

function parseCell(text: string, where: string): Expected {
  switch (text) {
    case '200':
      return { status: 200, wwwAuthenticate: false }
    case '200L':
      return { status: 200, wwwAuthenticate: false, locked: true }
    case '200u':
      return { status: 200, wwwAuthenticate: false, locked: false }
    case '401+WA':
      return { status: 401, wwwAuthenticate: true }
    case '401':
    case '403':
    case '400':
      return { status: Number(text) as 400 | 401 | 403, wwwAuthenticate: false }
    case '403+WA':
    case '400+WA':
      return { status: Number(text.slice(0, 3)) as 400 | 403, wwwAuthenticate: true }
    default:
      throw new Error(`auth-matrix.md: unknown cell ${JSON.stringify(text)} at ${where}`)
  }
}

const splitRow = (line: string) =>
  line
    .trim()
    .replace(/^\|/, '')
    .replace(/\|$/, '')
    .split('|')
    .map((c) => c.trim())

export function argvToFlags(argv: readonly string[]): AuthFlags {
  const byName = new Map(Object.entries(AUTH_FLAG_NAMES).map(([k, v]) => [v, k]))
  const flags: Record<string, boolean> = {}
  for (const a of argv) {
    const k = byName.get(a)
    if (k === undefined) throw new Error(`auth-matrix.md: unknown flag ${a}`)
    flags[k] = true
  }
  return flags as AuthFlags
}

export function parseAuthMatrix(markdown: string): MatrixSection[] {
  const sections: MatrixSection[] = []
  const lines = markdown.split('\n')
  for (let i = 0; i < lines.length; i++) {
    // Only the sections whose heading is a code span are server flag combinations.
    const h = /^## `([^`]*)`\s*$/.exec(lines[i]!)
    if (!h) continue
    const heading = h[1]!.replace(/\s*\(.*\)\s*$/, '').trim()
    const argv = heading === '' ? [] : heading.split(/\s+/)
    const flags = argvToFlags(argv)
    let j = i + 1
    while (j < lines.length && !lines[j]!.startsWith('|')) j++
    const header = splitRow(lines[j]!)
    if (!/user/.test(header[0]!)) throw new Error(`auth-matrix.md: no table under ${heading}`)
    const columns = header.slice(1)
    for (const c of columns) if (!(c in MATRIX_COLUMNS)) throw new Error(`auth-matrix.md: unknown column ${c}`)
    j += 2 // header and |---| line
    const cells: MatrixCell[] = []
    const pending: Array<Omit<MatrixCell, 'body'>> = []
    for (; j < lines.length && lines[j]!.startsWith('|'); j++) {
      const row = splitRow(lines[j]!)
      const credential = row[0]!
      if (!(credential in MATRIX_CREDENTIALS)) throw new Error(`auth-matrix.md: unknown row ${credential}`)
      if (row.length !== columns.length + 1) throw new Error(`auth-matrix.md: ragged row ${lines[j]}`)
      columns.forEach((column, k) => {
        pending.push({
          section: heading,
          argv,
          flags,
          credential,
          authorization: MATRIX_CREDENTIALS[credential],
          column,
          endpoint: MATRIX_COLUMNS[column]!,
          expected: parseCell(row[k + 1]!, `${heading} / ${credential} / ${column}`),
        })
      })
    }
    const bodies = new Map<number, { body: string; count: number }>()
    for (; j < lines.length && !lines[j]!.startsWith('## '); j++) {
      const b = /^\* (\d{3}) body (".*") \((\d+) cells?\)\s*$/.exec(lines[j]!)
      if (b) bodies.set(Number(b[1]), { body: JSON.parse(b[2]!) as string, count: Number(b[3]) })
    }
    for (const c of pending) cells.push({ ...c, body: c.expected.status === 200 ? undefined : bodies.get(c.expected.status)?.body })
    sections.push({ heading, argv, flags, cells, bodies })
    i = j - 1
  }
  return sections
}

export function loadAuthMatrix(): MatrixSection[] {
  let text: string
  try {
    text = readFileSync(MATRIX_PATH, 'utf8')
  } catch (err) {
    throw new Error(`the auth matrix must be at ${MATRIX_PATH} (the spec transcripts copied into the repository)`, { cause: err })
  }
  return parseAuthMatrix(text)
}

// ---------------------------------------------------------------------------------------
// Our own measurements (git-annex 10.20250416, p2phttp --jobs 4).

/**
 * Server `--authenv-http`, plain http, this environment; each header was sent byte for
 * byte (a latin1 string here) to v4/gettimestamp (read) and v4/putoffset (write).
 */
export const HEADER_ENV: Readonly<Record<string, string>> = {
  GIT_ANNEX_P2PHTTP_PASSWORD_rw: 'pw1',
  GIT_ANNEX_P2PHTTP_PASSWORD_p: 'a>>?', // base64 of "p:a>>?" has a '/'
  GIT_ANNEX_P2PHTTP_PASSWORD_q: '~~~~', // base64 of "q:~~~~" has '+'
  GIT_ANNEX_P2PHTTP_PASSWORD_e: '',
  GIT_ANNEX_P2PHTTP_PASSWORD_x: 'px',
  GIT_ANNEX_P2PHTTP_PERMISSIONS_x: 'read-only',
  GIT_ANNEX_P2PHTTP_PASSWORD_y: 'py',
  GIT_ANNEX_P2PHTTP_PERMISSIONS_y: 'Readonly',
  GIT_ANNEX_P2PHTTP_PERMISSIONS_z: 'readonly',
  GIT_ANNEX_P2PHTTP_PASSWORD_ü: 'pü',
}

export interface HeaderVector {
  readonly label: string
  readonly authorization: string | undefined
  readonly read: 200 | 400 | 401
  readonly write: 200 | 400 | 401
  /** What annex-proxy answers instead, on purpose (see src/protocol/http/auth.ts). */
  readonly deviation?: { readonly read: 200 | 400 | 401; readonly write: 200 | 400 | 401; readonly why: string }
}

const ok = { read: 200, write: 200 } as const
const e400 = { read: 400, write: 400 } as const
const e401 = { read: 401, write: 401 } as const
const STANDARD_ALPHABET = { ...ok, why: 'standard base64 alphabet accepted besides base64url' }

export const HEADER_VECTORS: readonly HeaderVector[] = [
  { label: 'none', authorization: undefined, ...e401 },
  { label: 'rw', authorization: 'Basic cnc6cHcx', ...ok },
  { label: 'scheme lower case', authorization: 'basic cnc6cHcx', ...ok },
  { label: 'scheme upper case', authorization: 'BASIC cnc6cHcx', ...ok },
  { label: 'scheme mixed case', authorization: 'bAsIc ZTo=', ...ok },
  { label: 'scheme with U+0130 (UTF-8), GHC toLower', authorization: 'BAS\u00c4\u00b0C cnc6cHcx', ...ok },
  { label: 'scheme with U+0130 lower', authorization: 'bas\u00c4\u00b0c cnc6cHcx', ...ok },
  { label: 'several spaces', authorization: 'Basic    cnc6cHcx', ...ok },
  { label: 'tab separator', authorization: 'Basic\tcnc6cHcx', ...ok },
  { label: 'vertical tab separator', authorization: 'Basic\u000bZTo=', ...ok },
  { label: 'form feed separator', authorization: 'Basic\u000cZTo=', ...ok },
  { label: 'NBSP byte separator', authorization: 'Basic\u00a0cnc6cHcx', ...ok },
  { label: 'NEL byte separator', authorization: 'Basic\u0085ZTo=', ...e400 },
  { label: 'leading tab (stripped by the HTTP layer)', authorization: '\tBasic ZTo=', ...ok },
  { label: 'trailing spaces (kept by Warp)', authorization: 'Basic cnc6cHcx   ', ...e400 },
  { label: 'scheme only', authorization: 'Basic', ...e400 },
  { label: 'scheme and space', authorization: 'Basic ', ...e400 },
  { label: 'scheme NBSP only', authorization: 'Basic\u00a0', ...e400 },
  { label: 'empty value', authorization: '', ...e400 },
  { label: 'no separator', authorization: 'Basiccnc6cHcx', ...e400 },
  { label: 'comma-joined duplicates', authorization: 'Basic cnc6cHcx, Basic cnc6cHcx', ...e400 },
  { label: 'Bearer', authorization: 'Bearer xyz', ...e400 },
  { label: 'garbage', authorization: 'Basic !!!', ...e400 },
  { label: '":" only (empty user, empty password)', authorization: 'Basic Og==', ...e401 },
  { label: '"rw" without colon', authorization: 'Basic cnc=', ...e401 },
  { label: 'rw:pw12 padded (wrong password, parsed)', authorization: 'Basic cnc6cHcxMg==', ...e401 },
  { label: 'unpadded', authorization: 'Basic cnc6cHcxMg', ...e400 },
  { label: 'short padding', authorization: 'Basic cnc6cHcxMg=', ...e400 },
  { label: 'unpadded short', authorization: 'Basic ZTo', ...e400 },
  { label: 'non-canonical bits (2 pad)', authorization: 'Basic cnc6cHcxMh==', ...e401 },
  { label: 'non-canonical bits (1 pad)', authorization: 'Basic ZTp=', ...ok },
  { label: 'non-canonical bits e', authorization: 'Basic ZR==', ...ok },
  { label: 'pad quad then more', authorization: 'Basic cnc6cHcx====', ...e400 },
  { label: 'Z===', authorization: 'Basic Z===', ...e400 },
  { label: '====', authorization: 'Basic ====', ...e400 },
  { label: 'pad in the middle', authorization: 'Basic ZQ=A', ...e400 },
  { label: 'garbage after padding ignored', authorization: 'Basic cnc6cHcxMg==xx', ...e401 },
  { label: 'e: then xx', authorization: 'Basic ZTo=xx', ...ok },
  { label: 'e: then xxxx', authorization: 'Basic ZTo=xxxx', ...ok },
  { label: 'e: then base64', authorization: 'Basic ZTo=ZQ==', ...ok },
  { label: 'e: twice', authorization: 'Basic ZTo=ZTo=', ...ok },
  { label: 'e then e: (second ignored)', authorization: 'Basic ZQ==ZTo=', ...ok },
  { label: 'e then ":" (second ignored)', authorization: 'Basic ZQ==Og==', ...ok },
  { label: 'extra "=" after pad', authorization: 'Basic ZTo==', ...ok },
  { label: '"!" after pad', authorization: 'Basic ZTo=!', ...ok },
  { label: 'tab after pad', authorization: 'Basic ZTo=\t', ...ok },
  { label: 'quads after padded quad', authorization: 'Basic cnc6cHcxMg==cnc6', ...e401 },
  { label: 'rw:pw1e:', authorization: 'Basic cnc6cHcxZTo=', ...e401 },
  { label: 'space inside base64', authorization: 'Basic cnc6 cHcx', ...e400 },
  { label: "std alphabet '/'", authorization: 'Basic cDphPj4/', ...e400, deviation: STANDARD_ALPHABET },
  { label: "url alphabet '_'", authorization: 'Basic cDphPj4_', ...ok },
  { label: "std alphabet '+'", authorization: 'Basic cTp+fn5+', ...e400, deviation: STANDARD_ALPHABET },
  { label: "url alphabet '-'", authorization: 'Basic cTp-fn5-', ...ok },
  { label: 'empty password "e:"', authorization: 'Basic ZTo=', ...ok },
  { label: 'empty password, no colon "e"', authorization: 'Basic ZQ==', ...ok },
  { label: 'PERMISSIONS=read-only (unknown) is read-write', authorization: 'Basic eDpweA==', ...ok },
  { label: 'PERMISSIONS=Readonly (unknown) is read-write', authorization: 'Basic eTpweQ==', ...ok },
  { label: 'PERMISSIONS without PASSWORD: no user', authorization: 'Basic ejpweg==', ...e401 },
  { label: 'UTF-8 user and password', authorization: 'Basic w7w6cMO8', ...ok },
]

/** HTTPS (--certfile/--privatekeyfile), curl -u; env rw=pw1, ro=pw2 (readonly). */
export const TLS_ENV: Readonly<Record<string, string>> = {
  GIT_ANNEX_P2PHTTP_PASSWORD_rw: 'pw1',
  GIT_ANNEX_P2PHTTP_PASSWORD_ro: 'pw2',
  GIT_ANNEX_P2PHTTP_PERMISSIONS_ro: 'readonly',
}

export interface TlsVector {
  readonly argv: readonly string[]
  readonly credential: 'none' | 'rw' | 'ro' | 'rw+wrong-pw'
  readonly read: 200 | 401 | 403
  readonly write: 200 | 401 | 403
}

export const TLS_CREDENTIALS: Readonly<Record<TlsVector['credential'], string | undefined>> = {
  none: undefined,
  rw: basic('rw', 'pw1'),
  ro: basic('ro', 'pw2'),
  'rw+wrong-pw': basic('rw', 'bad'),
}

const tls = (argv: string, rows: Array<[TlsVector['credential'], TlsVector['read'], TlsVector['write']]>): TlsVector[] =>
  rows.map(([credential, read, write]) => ({ argv: argv.split(' '), credential, read, write }))

export const TLS_VECTORS: readonly TlsVector[] = [
  // --authenv-http does not consult credentials over HTTPS.
  ...tls('--authenv-http', [['none', 401, 401], ['rw', 401, 401], ['ro', 401, 401], ['rw+wrong-pw', 401, 401]]),
  ...tls('--authenv', [['none', 401, 401], ['rw', 200, 200], ['ro', 200, 403], ['rw+wrong-pw', 401, 401]]),
  ...tls('--authenv-http --unauth-readonly', [['none', 200, 401], ['rw', 200, 403], ['ro', 200, 403], ['rw+wrong-pw', 200, 403]]),
  ...tls('--authenv --unauth-readonly', [['none', 200, 401], ['rw', 200, 200], ['ro', 200, 403], ['rw+wrong-pw', 200, 403]]),
]
