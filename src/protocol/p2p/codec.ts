// One P2P line ⇄ one Message, pure (spec §1.1, Utility/SimpleProtocol.hs, P2P/Protocol.hs).
// The reference splits a line at the first whitespace character into the name and the
// rest, then splits off exactly as many single-whitespace-separated words as the message
// has fixed arguments; the last argument takes the rest of the line verbatim. Empty
// tokens are therefore legal ("PUT  KEY" has an empty AssociatedFile), and a message with
// no arguments parses only when nothing follows its name and one separator.
import { serializeKey, tryParseKey, type Key } from '../../keys/key.js'
import { decodeAssociatedFile, encodeAssociatedFile, isSpace, type Message, type MessageType, type Service } from './messages.js'

/** Splits at the first whitespace character, dropping it (Utility/Misc.hs `separate isSpace`). */
function splitWord(s: string): [string, string] {
  for (let i = 0; i < s.length; ) {
    const cp = s.codePointAt(i)!
    const n = cp > 0xffff ? 2 : 1
    if (isSpace(String.fromCodePoint(cp))) return [s.slice(0, i), s.slice(i + n)]
    i += n
  }
  return [s, '']
}

/** Haskell `words`: runs of whitespace separate, empty words vanish. */
function words(s: string): string[] {
  const out: string[] = []
  let cur = ''
  for (const c of s) {
    if (isSpace(c)) {
      if (cur) out.push(cur)
      cur = ''
    } else cur += c
  }
  if (cur) out.push(cur)
  return out
}

const nat = (s: string): number | undefined => {
  if (!/^[0-9]+$/.test(s)) return undefined
  const n = Number(s)
  return Number.isSafeInteger(n) ? n : undefined
}

const key = (s: string): Key | undefined => tryParseKey(s)

const af = (s: string): { af: string | undefined } | undefined => {
  const d = decodeAssociatedFile(s)
  return d === null ? undefined : { af: d }
}

type Parser = (rest: string) => Message | undefined

const zero =
  (m: Message): Parser =>
  (rest) =>
    rest === '' ? m : undefined

/** Two fixed arguments: the first is one word, the second the rest. */
const two = (rest: string): [string, string] => splitWord(rest)

const PARSERS: Readonly<Record<MessageType, Parser>> = {
  AUTH: (rest) => {
    const [uuid, token] = two(rest)
    return /^[A-Za-z0-9]+$/.test(token) ? { type: 'AUTH', uuid, token } : undefined
  },
  'AUTH-SUCCESS': (uuid) => ({ type: 'AUTH-SUCCESS', uuid }),
  'AUTH-FAILURE': zero({ type: 'AUTH-FAILURE' }),
  VERSION: (s) => {
    const version = nat(s)
    return version === undefined ? undefined : { type: 'VERSION', version }
  },
  BYPASS: (s) => ({ type: 'BYPASS', uuids: words(s) }),
  CHECKPRESENT: (s) => {
    const k = key(s)
    return k && { type: 'CHECKPRESENT', key: k }
  },
  LOCKCONTENT: (s) => {
    const k = key(s)
    return k && { type: 'LOCKCONTENT', key: k }
  },
  UNLOCKCONTENT: zero({ type: 'UNLOCKCONTENT' }),
  REMOVE: (s) => {
    const k = key(s)
    return k && { type: 'REMOVE', key: k }
  },
  'REMOVE-BEFORE': (rest) => {
    const [ts, ks] = two(rest)
    const timestamp = nat(ts)
    const k = key(ks)
    return timestamp === undefined || !k ? undefined : { type: 'REMOVE-BEFORE', timestamp, key: k }
  },
  GETTIMESTAMP: zero({ type: 'GETTIMESTAMP' }),
  GET: (rest) => {
    const [os, r2] = two(rest)
    const [as, ks] = two(r2)
    const offset = nat(os)
    const a = af(as)
    const k = key(ks)
    return offset === undefined || !a || !k ? undefined : { type: 'GET', offset, af: a.af, key: k }
  },
  PUT: (rest) => {
    const [as, ks] = two(rest)
    const a = af(as)
    const k = key(ks)
    return !a || !k ? undefined : { type: 'PUT', af: a.af, key: k }
  },
  'PUT-FROM': (s) => {
    const offset = nat(s)
    return offset === undefined ? undefined : { type: 'PUT-FROM', offset }
  },
  DATA: (s) => {
    const length = nat(s)
    return length === undefined ? undefined : { type: 'DATA', length }
  },
  'DATA-PRESENT': zero({ type: 'DATA-PRESENT' }),
  VALID: zero({ type: 'VALID' }),
  INVALID: zero({ type: 'INVALID' }),
  SUCCESS: zero({ type: 'SUCCESS' }),
  FAILURE: zero({ type: 'FAILURE' }),
  'SUCCESS-PLUS': (s) => ({ type: 'SUCCESS-PLUS', uuids: words(s) }),
  'FAILURE-PLUS': (s) => ({ type: 'FAILURE-PLUS', uuids: words(s) }),
  'ALREADY-HAVE': zero({ type: 'ALREADY-HAVE' }),
  'ALREADY-HAVE-PLUS': (s) => ({ type: 'ALREADY-HAVE-PLUS', uuids: words(s) }),
  TIMESTAMP: (s) => {
    const timestamp = nat(s)
    return timestamp === undefined ? undefined : { type: 'TIMESTAMP', timestamp }
  },
  CONNECT: (s) => (s === 'git-upload-pack' || s === 'git-receive-pack' ? { type: 'CONNECT', service: s as Service } : undefined),
  CONNECTDONE: (s) => {
    if (!/^-?[0-9]+$/.test(s)) return undefined
    const exitCode = Number(s)
    return Number.isSafeInteger(exitCode) ? { type: 'CONNECTDONE', exitCode } : undefined
  },
  NOTIFYCHANGE: zero({ type: 'NOTIFYCHANGE' }),
  CHANGED: (s) => ({ type: 'CHANGED', refs: words(s) }),
  ERROR: (text) => ({ type: 'ERROR', text }),
}

/**
 * Parses one line (without its `\n`; one trailing `\r` is stripped). Returns undefined
 * for anything the reference would not parse, which a server answers `ERROR unknown command`.
 */
export function parse(line: string): Message | undefined {
  const l = line.endsWith('\r') ? line.slice(0, -1) : line
  const [name, rest] = splitWord(l)
  if (!Object.hasOwn(PARSERS, name)) return undefined
  return PARSERS[name as MessageType](rest)
}

function token(s: string, what: string): string {
  for (const c of s) if (isSpace(c)) throw new TypeError(`${what} cannot contain whitespace: ${JSON.stringify(s)}`)
  return s
}

function list(xs: readonly string[], what: string): string {
  for (const x of xs) if (x === '') throw new TypeError(`empty ${what}`)
  return xs.map((x) => token(x, what)).join(' ')
}

function num(n: number, what: string): string {
  if (!Number.isSafeInteger(n) || n < 0) throw new TypeError(`${what} must be a non-negative integer, not ${n}`)
  return String(n)
}

/** The arguments of `m`, already in wire form; the last may contain spaces. */
function args(m: Message): string[] {
  switch (m.type) {
    case 'AUTH':
      if (!/^[A-Za-z0-9]+$/.test(m.token)) throw new TypeError('an auth token is ASCII letters and digits')
      return [token(m.uuid, 'uuid'), m.token]
    case 'AUTH-SUCCESS':
      return [m.uuid]
    case 'VERSION':
      return [num(m.version, 'version')]
    case 'BYPASS':
    case 'SUCCESS-PLUS':
    case 'FAILURE-PLUS':
    case 'ALREADY-HAVE-PLUS':
      return [list(m.uuids, 'uuid')]
    case 'CHECKPRESENT':
    case 'LOCKCONTENT':
    case 'REMOVE':
      return [serializeKey(m.key)]
    case 'REMOVE-BEFORE':
      return [num(m.timestamp, 'timestamp'), serializeKey(m.key)]
    case 'GET':
      return [num(m.offset, 'offset'), encodeAssociatedFile(m.af), serializeKey(m.key)]
    case 'PUT':
      return [encodeAssociatedFile(m.af), serializeKey(m.key)]
    case 'PUT-FROM':
      return [num(m.offset, 'offset')]
    case 'DATA':
      return [num(m.length, 'length')]
    case 'TIMESTAMP':
      return [num(m.timestamp, 'timestamp')]
    case 'CONNECT':
      return [m.service]
    case 'CONNECTDONE':
      if (!Number.isSafeInteger(m.exitCode)) throw new TypeError(`bad exit code ${m.exitCode}`)
      return [String(m.exitCode)]
    case 'CHANGED':
      return [list(m.refs, 'ref')]
    case 'ERROR':
      if (/[\r\n]/.test(m.text)) throw new TypeError('an ERROR text is one line')
      return [m.text]
    default:
      return []
  }
}

/** The line for `m`, without its `\n`. Throws TypeError for a message no peer could parse back. */
export function serialize(m: Message): string {
  const a = args(m)
  // A list message with no elements still has its argument slot (`BYPASS ` parses the same
  // as `BYPASS`); send the bare name, as the reference's unwords of [] does not add a space.
  if (a.length === 1 && a[0] === '' && (m.type === 'BYPASS' || m.type.endsWith('-PLUS') || m.type === 'CHANGED' || m.type === 'ERROR' || m.type === 'AUTH-SUCCESS')) {
    return m.type
  }
  for (const x of a.slice(0, -1)) token(x, 'argument')
  const line = [m.type, ...a].join(' ')
  if (line.includes('\n')) throw new TypeError(`a message is one line: ${JSON.stringify(line.slice(0, 100))}`)
  return line
}

/** `serialize(m)` plus the newline, ready to write. */
export function encodeLine(m: Message): string {
  return `${serialize(m)}\n`
}
