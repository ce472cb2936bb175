// Entity tags for key content (RFC 9110 §8.8.3) and the two conditionals the key
// endpoint evaluates: If-None-Match (§13.1.2) and If-Range (§13.1.5). Pure.
import { type Key, serializeKey } from '../../keys/key.js'
import { hashAlgorithm } from '../../keys/backend.js'
import { encodeBase64Url } from '../base64url.js'

const ETAGC = /^[\x21\x23-\x7e]*$/

/**
 * A key names its content, so the key is the tag. Strong for keys whose backend is a
 * hash (any two copies are the same bytes, or fail verification); weak for WORM, URL and
 * other keys whose content the name does not pin. A key with characters an entity tag
 * cannot carry is tagged with its `[base64url]` form (spec §2.2).
 */
export function etagFor(key: Key): string {
  const text = serializeKey(key)
  const opaque = ETAGC.test(text) ? `"${text}"` : `"[${encodeBase64Url(Buffer.from(text, 'utf8'))}]"`
  return hashAlgorithm(key.backend) === undefined ? `W/${opaque}` : opaque
}

function isWeak(tag: string): boolean {
  return tag.startsWith('W/')
}

function opaqueOf(tag: string): string {
  return isWeak(tag) ? tag.slice(2) : tag
}

/** The entity tags of a list header (`"a", W/"b"`); commas inside quotes are kept. */
export function parseEntityTags(value: string): string[] {
  const tags = value.match(/(?:W\/)?"[^"]*"/g)
  return tags ?? []
}

/**
 * If-None-Match (§13.1.2, weak comparison): true when the condition is false, i.e. the
 * client's copy is current and a GET/HEAD is answered 304.
 */
export function notModified(ifNoneMatch: string | undefined, etag: string | undefined): boolean {
  if (ifNoneMatch === undefined || etag === undefined) return false
  if (ifNoneMatch.trim() === '*') return true
  return parseEntityTags(ifNoneMatch).some((t) => opaqueOf(t) === opaqueOf(etag))
}

/**
 * If-Range (§13.1.5): whether the Range header is to be honoured. A date cannot match (we
 * send no Last-Modified); an entity tag must match strongly, so a weak tag never does.
 */
export function ifRangeHolds(ifRange: string | undefined, etag: string | undefined): boolean {
  if (ifRange === undefined) return true
  const v = ifRange.trim()
  if (etag === undefined || isWeak(etag) || !v.startsWith('"')) return false
  return v === etag
}
