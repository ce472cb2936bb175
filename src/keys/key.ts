// git-annex keys (spec §5): BACKEND[-s<size>][-m<mtime>][-S<chunksize>][-C<chunknum>]--NAME
// Mirrors Types/Key.hs keyParser (git-annex 10.20250416). The parser is strict on purpose:
// git-annex refuses anything else so that keys committed to git cannot smuggle SHA-1
// collision data, and we must refuse exactly what it refuses or we would store objects
// that no git-annex client can name.
import { BadKeyError } from '../errors.js'

declare const keyBrand: unique symbol

/** A parsed, valid git-annex key. Only `parseKey` and `makeKey` produce one. */
export interface Key {
  readonly backend: string
  readonly size?: number
  readonly mtime?: number
  readonly chunkSize?: number
  readonly chunkNum?: number
  readonly name: string
  readonly [keyBrand]: true
}

export interface KeyFields {
  backend: string
  size?: number | undefined
  mtime?: number | undefined
  chunkSize?: number | undefined
  chunkNum?: number | undefined
  name: string
}

/** Longest extension (from the first '.', the dot included) an E-backend key name may carry. */
export const MAX_EXTENSION_BYTES = 64

const FIELDS = [
  ['s', 'size'],
  ['m', 'mtime'],
  ['S', 'chunkSize'],
  ['C', 'chunkNum'],
] as const

/**
 * Backends whose key names may carry a file extension, so the extension length limit applies.
 * Types/Key.hs `hasExt`: every hash backend's E variant, external `X…E`, and any unknown
 * backend whose name ends in 'E' (even a bare "E"); GITBUNDLE ends in 'E' but is a fixed variety.
 */
export function hasExtensionVariant(backend: string): boolean {
  return backend.endsWith('E') && backend !== 'GITBUNDLE'
}

function validName(backend: string, name: string): boolean {
  if (!hasExtensionVariant(backend)) return true
  const dot = name.indexOf('.')
  if (dot < 0) return true
  // Cheap bound first: UTF-8 never takes fewer bytes than UTF-16 code units.
  const ext = name.length - dot
  return ext <= MAX_EXTENSION_BYTES && Buffer.byteLength(name.slice(dot)) <= MAX_EXTENSION_BYTES
}

export function parseKey(text: string): Key {
  const k = tryParseKey(text)
  if (!k) throw new BadKeyError(`not a valid git-annex key: ${JSON.stringify(text.length > 200 ? `${text.slice(0, 200)}…` : text)}`)
  return k
}

/**
 * Numbers are kept as JS numbers, so values above 2^53-1 are refused where git-annex would
 * accept them (it parses Integer sizes, and wraps mtimes to Int64): no real object is that big,
 * and a silently rounded size would name a different key.
 */
export function tryParseKey(text: string): Key | undefined {
  let i = text.indexOf('-')
  if (i <= 0) return undefined
  const fields: KeyFields = { backend: text.slice(0, i), name: '' }
  // Each field is optional but they may only appear in this order, as '-' letter digits.
  // A letter without digits, a repeated or unknown field all leave the parser looking at
  // something other than the "--" that must follow the fields, which is an error.
  let f = 0
  for (;;) {
    if (text.charCodeAt(i) !== 45 /* - */) return undefined
    const c = text[i + 1]
    if (c === '-') break
    while (f < FIELDS.length && FIELDS[f]![0] !== c) f++
    if (f >= FIELDS.length) return undefined
    let j = i + 2
    while (j < text.length && text.charCodeAt(j) >= 48 && text.charCodeAt(j) <= 57) j++
    if (j === i + 2) return undefined
    const n = Number(text.slice(i + 2, j))
    if (!Number.isSafeInteger(n)) return undefined
    fields[FIELDS[f]![1]] = n
    f++
    i = j
  }
  fields.name = text.slice(i + 2)
  if (!validName(fields.backend, fields.name)) return undefined
  return fields as Key
}

/** Builds a key from fields; throws BadKeyError unless the fields survive a round trip unchanged. */
export function makeKey(fields: KeyFields): Key {
  const k = tryParseKey(serializeFields(fields))
  // Reparsing alone is not enough: a backend "A-s1" would come back as backend "A" of size 1.
  if (
    !k ||
    k.backend !== fields.backend ||
    k.name !== fields.name ||
    k.size !== fields.size ||
    k.mtime !== fields.mtime ||
    k.chunkSize !== fields.chunkSize ||
    k.chunkNum !== fields.chunkNum
  ) {
    throw new BadKeyError(`invalid key fields: ${JSON.stringify(fields)}`)
  }
  return k
}

function serializeFields(k: KeyFields): string {
  let s = k.backend
  if (k.size !== undefined) s += `-s${k.size}`
  if (k.mtime !== undefined) s += `-m${k.mtime}`
  if (k.chunkSize !== undefined) s += `-S${k.chunkSize}`
  if (k.chunkNum !== undefined) s += `-C${k.chunkNum}`
  return `${s}--${k.name}`
}

/** Canonical form: fields in order, no leading zeros (git-annex reserializes the same way). */
export function serializeKey(k: Key): string {
  return serializeFields(k)
}

/** True for a chunk of a special remote's chunked object (Key.hs isChunkKey: both fields set). */
export function isChunkKey(k: Key): boolean {
  return k.chunkSize !== undefined && k.chunkNum !== undefined
}

/** The key without chunk fields: chunk keys share their parent's hash directories. */
export function parentKey(k: Key): Key {
  if (k.chunkSize === undefined && k.chunkNum === undefined) return k
  const { chunkSize: _s, chunkNum: _n, ...rest } = k
  return rest as Key
}

/**
 * Bytes of content the key names, when it says: its `-s` size, or for a chunk key that
 * chunk's share of it (chunk n covers [(n-1)·S, n·S) of the parent, spec §5).
 */
export function contentLength(k: Key): number | undefined {
  if (k.size === undefined) return undefined
  if (!isChunkKey(k)) return k.size
  const S = k.chunkSize!
  const n = k.chunkNum!
  if (S < 1 || n < 1) return undefined
  return Math.max(0, Math.min(S, k.size - (n - 1) * S))
}
