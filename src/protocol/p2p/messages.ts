// P2P protocol messages (spec §1.3) as a discriminated union on `type`, with their
// arguments parsed: keys are Keys, numbers are numbers, AssociatedFile is the decoded
// name (undefined when absent). The wire form lives in codec.ts.
import type { Key } from '../../keys/key.js'

export type Service = 'git-upload-pack' | 'git-receive-pack'

export type Message =
  | { readonly type: 'AUTH'; readonly uuid: string; readonly token: string }
  | { readonly type: 'AUTH-SUCCESS'; readonly uuid: string }
  | { readonly type: 'AUTH-FAILURE' }
  | { readonly type: 'VERSION'; readonly version: number }
  | { readonly type: 'BYPASS'; readonly uuids: readonly string[] }
  | { readonly type: 'CHECKPRESENT'; readonly key: Key }
  | { readonly type: 'LOCKCONTENT'; readonly key: Key }
  | { readonly type: 'UNLOCKCONTENT' }
  | { readonly type: 'REMOVE'; readonly key: Key }
  | { readonly type: 'REMOVE-BEFORE'; readonly timestamp: number; readonly key: Key }
  | { readonly type: 'GETTIMESTAMP' }
  | { readonly type: 'GET'; readonly offset: number; readonly af: string | undefined; readonly key: Key }
  | { readonly type: 'PUT'; readonly af: string | undefined; readonly key: Key }
  | { readonly type: 'PUT-FROM'; readonly offset: number }
  | { readonly type: 'DATA'; readonly length: number }
  | { readonly type: 'DATA-PRESENT' }
  | { readonly type: 'VALID' }
  | { readonly type: 'INVALID' }
  | { readonly type: 'SUCCESS' }
  | { readonly type: 'FAILURE' }
  | { readonly type: 'SUCCESS-PLUS'; readonly uuids: readonly string[] }
  | { readonly type: 'FAILURE-PLUS'; readonly uuids: readonly string[] }
  | { readonly type: 'ALREADY-HAVE' }
  | { readonly type: 'ALREADY-HAVE-PLUS'; readonly uuids: readonly string[] }
  | { readonly type: 'TIMESTAMP'; readonly timestamp: number }
  | { readonly type: 'CONNECT'; readonly service: Service }
  | { readonly type: 'CONNECTDONE'; readonly exitCode: number }
  | { readonly type: 'NOTIFYCHANGE' }
  | { readonly type: 'CHANGED'; readonly refs: readonly string[] }
  | { readonly type: 'ERROR'; readonly text: string }

export type MessageType = Message['type']
export type MessageOf<T extends MessageType> = Extract<Message, { type: T }>

/** The highest protocol version we speak (P2P/Protocol.hs maxProtocolVersion). */
export const MAX_PROTOCOL_VERSION = 4

/** Lowest negotiated version at which each message may be sent (spec §1.3 "vN"). */
export const MIN_VERSION: Readonly<Record<MessageType, number>> = {
  AUTH: 0,
  'AUTH-SUCCESS': 0,
  'AUTH-FAILURE': 0,
  VERSION: 0,
  BYPASS: 2,
  CHECKPRESENT: 0,
  LOCKCONTENT: 0,
  UNLOCKCONTENT: 0,
  REMOVE: 0,
  'REMOVE-BEFORE': 3,
  GETTIMESTAMP: 3,
  GET: 0,
  PUT: 0,
  'PUT-FROM': 0,
  DATA: 0,
  'DATA-PRESENT': 4,
  VALID: 1,
  INVALID: 1,
  SUCCESS: 0,
  FAILURE: 0,
  'SUCCESS-PLUS': 2,
  'FAILURE-PLUS': 2,
  'ALREADY-HAVE': 0,
  'ALREADY-HAVE-PLUS': 2,
  TIMESTAMP: 3,
  CONNECT: 0,
  CONNECTDONE: 0,
  NOTIFYCHANGE: 0,
  CHANGED: 0,
  ERROR: 0,
}

export const MESSAGE_TYPES = Object.keys(MIN_VERSION) as readonly MessageType[]

/**
 * GHC's Data.Char.isSpace, which splits protocol words (Utility/SimpleProtocol.hs splitWord)
 * and is what AssociatedFile encoding replaces: the ASCII whitespace \t \n \v \f \r and space,
 * U+00A0, and the other Unicode space separators (category Zs).
 */
export function isSpace(c: string): boolean {
  const u = c.codePointAt(0)!
  if (u <= 0x377) return u === 32 || (u >= 9 && u <= 13) || u === 0xa0
  return u === 0x1680 || (u >= 0x2000 && u <= 0x200a) || u === 0x202f || u === 0x205f || u === 0x3000
}

/** Data.Char.isControl: C0, DEL and C1 control characters. */
function isControl(u: number): boolean {
  return u < 32 || (u >= 127 && u < 160)
}

/**
 * AssociatedFile on the wire (spec §1.2): absent → empty token; each whitespace character
 * becomes `%` and each `%` becomes `%%`, so the token never contains a space.
 */
export function encodeAssociatedFile(af: string | undefined): string {
  if (af === undefined) return ''
  let s = ''
  for (const c of af) s += c === '%' ? '%%' : isSpace(c) ? '%' : c
  return s
}

/**
 * The reference's decoder: `%%` → `%`, a lone `%` → `_` (whitespace does not round-trip),
 * control characters → `_`; empty → absent. A decoded absolute path makes the whole
 * message unparseable, so this returns null for it (undefined means "no file").
 */
export function decodeAssociatedFile(token: string): string | undefined | null {
  let s = ''
  const cs = [...token]
  for (let i = 0; i < cs.length; i++) {
    const c = cs[i]!
    if (c === '%') {
      if (cs[i + 1] === '%') {
        s += '%'
        i++
      } else s += '_'
    } else if (isControl(c.codePointAt(0)!)) s += '_'
    else s += c
  }
  if (s === '') return undefined
  if (s.startsWith('/')) return null
  return s
}
