// The key endpoint's GET and HEAD (spec §2.4), with what browsers and sparse readers need
// beyond the reference: Content-Length, Accept-Ranges, ETag, If-None-Match, If-Range and
// Range (RFC 9110 §13-§14).
//
// Content integrity, per kind of answer:
// - 200 on a versioned v1+ path: exactly the reference's framing (chunked, no
//   Content-Length, X-git-annex-data-length), and content that fails its check is sent one
//   byte short, which git-annex's client reads as INVALID. A Content-Length there would
//   turn that signal into a transport error in git-annex's HTTP client.
// - 200 on v0 and the unversioned path, and 206 for a range that reaches the end of the
//   object: Content-Length, and the retrieve runs to its end so its verdict (the hash for
//   remotes that verify while reading, "unchanged" for repositories) is known before the
//   last byte; when it is false the connection is broken before that byte, so no client
//   takes the body as complete.
// - 206 for a range that stops before the end: the bytes as the store has them. Nothing
//   can be verified without reading the whole object, so nothing is claimed: such
//   answers carry no X-git-annex-data-length (whose contract, count equal to the header
//   means valid, is git-annex's and belongs to whole transfers), only the ETag, which
//   names the content the bytes are meant to be a slice of.
import { randomBytes } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import { Readable, pipeline } from 'node:stream'
import type { FastifyReply } from 'fastify'
import { type Key, contentLength } from '../../keys/key.js'
import type { Op, Remote, Retrieved } from '../../remotes/remote.js'
import { truncateLastByteUnless } from '../../streams/hold-last.js'
import { slice } from '../../streams/slice.js'
import { LengthMismatchError } from '../../errors.js'
import { type ByteRange, answerRange, contentRange, multipartFraming, rangeLength, unsatisfiedRange } from './range.js'
import { etagFor, ifRangeHolds, notModified } from './etag.js'
import { DATA_LENGTH_HEADER, type Version } from './params.js'

const OCTETS = 'application/octet-stream'

export interface KeyGet {
  readonly remote: Remote
  readonly key: Key
  readonly offset: number
  /** undefined for the unversioned `key/<key>` path. */
  readonly version: Version | undefined
  readonly head: boolean
  readonly headers: IncomingHttpHeaders
  readonly op: Op
  /** Runs the start of a repository operation under admission (--jobs). */
  start<T>(fn: () => Promise<T>): Promise<T>
}

function one(h: string | string[] | undefined): string | undefined {
  return Array.isArray(h) ? h[0] : h
}

export async function serveKey(g: KeyGet, reply: FastifyReply): Promise<FastifyReply> {
  const { remote, key, offset, op } = g
  // The tag names the whole object; `offset=` selects another representation.
  const etag = offset === 0 ? etagFor(key) : undefined
  const known = contentLength(key)
  const retrieveAt = (at: number) => g.start(() => remote.retrieve(key, at, op))

  // §13.2.2: If-None-Match before Range. Presence is all a 304 needs to know.
  if (notModified(one(g.headers['if-none-match']), etag) && (await g.start(() => remote.checkPresent(key, op)))) {
    return reply.code(304).header('etag', etag!).header('accept-ranges', 'bytes').send()
  }

  const range = g.head ? undefined : one(g.headers.range)
  if (range === undefined || !ifRangeHolds(one(g.headers['if-range']), etag)) return whole(await retrieveAt(offset))

  // The representation's length: from the key when it says, so a range is read from its
  // first byte only; otherwise from a retrieve at the offset.
  let first: Retrieved | undefined
  let length: number
  if (known !== undefined && known > offset) length = known - offset
  else {
    first = await retrieveAt(offset)
    length = first.length
  }
  const answer = answerRange(range, length)
  if (answer.kind === 'full') return whole(first ?? (await retrieveAt(offset)))
  if (answer.kind === 'unsatisfiable') {
    first?.body.destroy()
    // An absent key is answered as without Range (the reference's 200 with length 0).
    if (!first && !(await g.start(() => remote.checkPresent(key, op)))) return whole(await retrieveAt(offset))
    reply.header('content-range', unsatisfiedRange(length)).header('accept-ranges', 'bytes')
    if (etag) reply.header('etag', etag)
    return reply.code(416).send('requested range not satisfiable')
  }

  const ranges = answer.ranges
  // The first part's bytes: reused when the retrieve above already starts there.
  const openPart = async (r: ByteRange): Promise<Retrieved> => {
    if (first && r.start === 0) {
      const f = first
      first = undefined
      return f
    }
    return g.start(() => remote.retrieve(key, offset + r.start, { ...op, readsPart: true }))
  }
  const opened = await openPart(ranges[0]!)
  if (opened.length !== length - ranges[0]!.start) {
    // Absent, or stored with another size than the key says: answered as without Range.
    opened.body.destroy()
    first?.body.destroy()
    return whole(await retrieveAt(offset))
  }
  first?.body.destroy()
  const partOf = (r: ByteRange, ret: Retrieved) => slice(ret.body, rangeLength(r), r.end === length - 1 ? ret.valid : undefined)
  reply.header('accept-ranges', 'bytes')
  if (etag) reply.header('etag', etag)

  if (ranges.length === 1) {
    const r = ranges[0]!
    reply.header('content-type', OCTETS).header('content-range', contentRange(r, length)).header('content-length', String(rangeLength(r)))
    return reply.code(206).send(Readable.from(partOf(r, opened)))
  }

  const boundary = randomBytes(12).toString('hex')
  const framing = multipartFraming(ranges, length, boundary, OCTETS)
  async function* multipart(): AsyncGenerator<Buffer> {
    let ret: Retrieved | undefined = opened
    try {
      for (const [i, r] of ranges.entries()) {
        ret ??= await openPart(r)
        if (ret.length !== length - r.start) throw new LengthMismatchError(`content changed while its ranges were read (${ret.length} bytes from ${r.start}, expected ${length - r.start})`)
        yield Buffer.from(framing.heads[i]!)
        yield* partOf(r, ret)
        ret = undefined
      }
      yield Buffer.from(framing.tail)
    } finally {
      ret?.body.destroy()
    }
  }
  reply.header('content-type', `multipart/byteranges; boundary=${boundary}`).header('content-length', String(framing.total))
  return reply.code(206).send(Readable.from(multipart()))

  function whole(r: Retrieved): FastifyReply {
    reply.header('content-type', OCTETS).header(DATA_LENGTH_HEADER, String(r.length)).header('accept-ranges', 'bytes')
    // Absent content (length 0 where the key says more) gets no tag.
    if (etag && (r.length > 0 || known === 0)) reply.header('etag', etag)
    if (g.head) {
      r.body.destroy()
      return reply.code(200).header('content-length', String(r.length)).send()
    }
    if (r.length === 0) {
      // Absent (the reference's answer) or empty: nothing to send, nothing to verify.
      r.body.resume()
      return reply.code(200).header('content-length', '0').send()
    }
    if (g.version !== undefined && g.version >= 1) return reply.code(200).send(pipeline(r.body, truncateLastByteUnless(r.valid), () => {}))
    reply.header('content-length', String(r.length))
    return reply.code(200).send(Readable.from(slice(r.body, r.length, r.valid)))
  }
}
