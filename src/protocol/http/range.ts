// Range requests on the key endpoint (RFC 9110 §14), pure: which bytes of a representation
// of `length` bytes a `Range:` header asks for, and the header values of the answer.
//
// Anything this does not understand is ignored, as §14.2 allows: the answer is then the
// whole representation (200). That covers other range units, syntax errors, a zero-length
// representation, and range sets too large to be worth serving as parts.

/** Inclusive byte positions within the representation, start ≤ end < length. */
export interface ByteRange {
  readonly start: number
  readonly end: number
}

export type RangeAnswer =
  /** Serve the whole representation with 200 (no Range, or Range ignored). */
  | { readonly kind: 'full' }
  /** 206: one range, or several as multipart/byteranges, in the order to send them. */
  | { readonly kind: 'partial'; readonly ranges: readonly ByteRange[] }
  /** 416 with `Content-Range: bytes *\/length`. */
  | { readonly kind: 'unsatisfiable' }

type RangeSpec = { readonly kind: 'int'; readonly first: bigint; readonly last: bigint | undefined } | { readonly kind: 'suffix'; readonly length: bigint }

/** Range specs beyond this many make the header ignored (§14.2: a server MAY). */
export const MAX_RANGE_SPECS = 100
/** Parts of a multipart answer beyond this many (after coalescing) make the header ignored. */
export const MAX_PARTS = 16

const DIGITS = /^[0-9]+$/

/** The specs of a `bytes=` range set, or undefined when it is not one (ignored). */
export function parseRangeHeader(value: string): RangeSpec[] | undefined {
  const eq = value.indexOf('=')
  if (eq < 0) return undefined
  // range-unit is a token, compared case-insensitively (§14.1); no whitespace around '='.
  if (value.slice(0, eq).toLowerCase() !== 'bytes') return undefined
  const specs: RangeSpec[] = []
  // #list (§5.6.1): elements separated by commas with optional whitespace; empty elements allowed.
  for (const raw of value.slice(eq + 1).split(',')) {
    const item = raw.replace(/^[ \t]+|[ \t]+$/g, '')
    if (item === '') continue
    if (specs.length >= MAX_RANGE_SPECS) return undefined
    const dash = item.indexOf('-')
    if (dash < 0) return undefined
    const a = item.slice(0, dash)
    const b = item.slice(dash + 1)
    if (a === '') {
      if (!DIGITS.test(b)) return undefined
      specs.push({ kind: 'suffix', length: BigInt(b) })
      continue
    }
    if (!DIGITS.test(a) || (b !== '' && !DIGITS.test(b))) return undefined
    const first = BigInt(a)
    const last = b === '' ? undefined : BigInt(b)
    // §14.1.1: a last-pos below first-pos makes the range-set invalid.
    if (last !== undefined && last < first) return undefined
    specs.push({ kind: 'int', first, last })
  }
  return specs.length === 0 ? undefined : specs
}

/** The satisfiable part of one spec against `length` bytes (§14.1.1), or undefined. */
function resolveSpec(spec: RangeSpec, length: number): ByteRange | undefined {
  const len = BigInt(length)
  if (spec.kind === 'suffix') {
    if (spec.length === 0n) return undefined
    // A suffix longer than the representation selects all of it.
    const start = spec.length >= len ? 0n : len - spec.length
    return { start: Number(start), end: length - 1 }
  }
  if (spec.first >= len) return undefined
  const end = spec.last === undefined || spec.last >= len ? len - 1n : spec.last
  return { start: Number(spec.first), end: Number(end) }
}

/**
 * Ranges that overlap or touch are merged (§15.3.7.2 lets a server coalesce them); the
 * parts are then sent in ascending order. Ranges that neither overlap nor touch keep the
 * order they were asked in, as §15.3.7.2 says a server SHOULD.
 */
export function coalesce(ranges: readonly ByteRange[]): ByteRange[] {
  const sorted = [...ranges].sort((x, y) => x.start - y.start)
  const merged: ByteRange[] = []
  for (const r of sorted) {
    const last = merged[merged.length - 1]
    if (last && r.start <= last.end + 1) merged[merged.length - 1] = { start: last.start, end: Math.max(last.end, r.end) }
    else merged.push(r)
  }
  return merged.length === ranges.length ? [...ranges] : merged
}

/** What to answer to `Range: header` for a representation of `length` bytes. */
export function answerRange(header: string | undefined, length: number): RangeAnswer {
  if (header === undefined || length <= 0) return { kind: 'full' }
  const specs = parseRangeHeader(header)
  if (specs === undefined) return { kind: 'full' }
  const satisfiable = specs.map((s) => resolveSpec(s, length)).filter((r): r is ByteRange => r !== undefined)
  if (satisfiable.length === 0) return { kind: 'unsatisfiable' }
  const ranges = coalesce(satisfiable)
  if (ranges.length > MAX_PARTS) return { kind: 'full' }
  return { kind: 'partial', ranges }
}

/** `Content-Range` of a part (§14.4). */
export function contentRange(r: ByteRange, length: number): string {
  return `bytes ${r.start}-${r.end}/${length}`
}

/** `Content-Range` of a 416 (§14.4): the representation's length. */
export function unsatisfiedRange(length: number): string {
  return `bytes */${length}`
}

export function rangeLength(r: ByteRange): number {
  return r.end - r.start + 1
}

/**
 * The framing of a multipart/byteranges body (§14.6): what goes before each part's bytes,
 * and after the last. The total length is known in advance, so the answer has a
 * Content-Length like a single range's.
 */
export function multipartFraming(ranges: readonly ByteRange[], length: number, boundary: string, contentType: string): { heads: string[]; tail: string; total: number } {
  const heads = ranges.map((r, i) => `${i === 0 ? '' : '\r\n'}--${boundary}\r\nContent-Type: ${contentType}\r\nContent-Range: ${contentRange(r, length)}\r\n\r\n`)
  const tail = `\r\n--${boundary}--\r\n`
  const total = heads.reduce((n, h) => n + Buffer.byteLength(h), 0) + ranges.reduce((n, r) => n + rangeLength(r), 0) + Buffer.byteLength(tail)
  return { heads, tail, total }
}
