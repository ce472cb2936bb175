// git-annex keys (spec §5): BACKEND[-s<size>][-m<mtime>][-S<chunksize>][-C<chunknum>]--NAME
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

/** Longest extension (from the first '.') an E-backend key name may carry. */
export const MAX_EXTENSION_BYTES = 64

const FIELDS = [
  ['s', 'size'],
  ['m', 'mtime'],
  ['S', 'chunkSize'],
  ['C', 'chunkNum'],
] as const

/** Backends whose key names carry a file extension after the digest. */
export function hasExtensionVariant(backend: string): boolean {
  return backend.length > 1 && backend.endsWith('E') && backend !== 'GITBUNDLE'
}

function validName(backend: string, name: string): boolean {
  if (!hasExtensionVariant(backend)) return true
  const dot = name.indexOf('.')
  if (dot < 0) return true
  return Buffer.byteLength(name.slice(dot)) <= MAX_EXTENSION_BYTES
}

export function parseKey(text: string): Key {
  const k = tryParseKey(text)
  if (!k) throw new BadKeyError('key parse error')
  return k
}

export function tryParseKey(text: string): Key | undefined {
  let i = text.indexOf('-')
  if (i <= 0) return undefined
  const fields: KeyFields = { backend: text.slice(0, i), name: '' }
  // Fields may only appear in canonical order; each is '-' letter digits.
  let f = 0
  for (;;) {
    if (text[i] !== '-') return undefined
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

export function makeKey(fields: KeyFields): Key {
  const k = tryParseKey(serializeFields(fields))
  if (!k) throw new BadKeyError(`invalid key fields: ${JSON.stringify(fields)}`)
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

export function serializeKey(k: Key): string {
  return serializeFields(k)
}

/** The key without chunk fields: chunk keys share their parent's hash directories. */
export function parentKey(k: Key): Key {
  if (k.chunkSize === undefined && k.chunkNum === undefined) return k
  const { chunkSize: _s, chunkNum: _n, ...rest } = k
  return rest as Key
}
