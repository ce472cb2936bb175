// One cached chunk on disk: its bytes, then a trailer that says what they are and
// lets a reader prove they are still what was written.
//
//   [data][header JSON][sha256 hex, 64][header length, 10 decimal digits][MAGIC]
//
// The digest covers the header and the data, so a flipped bit anywhere (bytes, the
// recorded hash state, the key or the chunk number) makes the chunk unreadable
// instead of served. The trailer goes last so a chunk can be written as it streams.
import { createHash } from 'node:crypto'

export const CHUNK_MAGIC = 'APCHUNK1'
const DIGEST_CHARS = 64
const LENGTH_CHARS = 10
const TAIL = DIGEST_CHARS + LENGTH_CHARS + CHUNK_MAGIC.length

/**
 * The running hash of the whole object as it stood at this chunk's first byte, when the
 * implementation that computed it can export its state. `none`: it could not (node:crypto,
 * which hashes SHA-256 several times faster than hash-wasm where the CPU has SHA
 * instructions); a retrieve that starts here then hashes the cached chunks before it
 * from byte 0 instead (chunk-cached.ts), and the state is empty.
 */
export interface HashState {
  /** The key's hash algorithm (SHA256, BLAKE2B512, …). */
  readonly algo: string
  /** Which implementation saved it; only that one can load it. */
  readonly impl: 'wasm' | 'ts' | 'none'
  readonly state: Uint8Array
}

export interface ChunkHeader {
  /** The serialized key of the object this chunk belongs to. */
  readonly key: string
  readonly index: number
  /** Offset of the chunk's first byte in the object. */
  readonly offset: number
  readonly length: number
  readonly hash: HashState
}

interface HeaderJson {
  v: 1
  key: string
  index: number
  offset: number
  length: number
  algo: string
  impl: 'wasm' | 'ts' | 'none'
  state: string
}

function headerBytes(h: ChunkHeader): Buffer {
  const json: HeaderJson = {
    v: 1,
    key: h.key,
    index: h.index,
    offset: h.offset,
    length: h.length,
    algo: h.hash.algo,
    impl: h.hash.impl,
    state: Buffer.from(h.hash.state).toString('base64'),
  }
  return Buffer.from(JSON.stringify(json), 'utf8')
}

/** Bytes the trailer of a chunk with header `h` takes on disk. */
export function trailerLength(h: ChunkHeader): number {
  return headerBytes(h).length + TAIL
}

/**
 * Computes the chunk's digest incrementally as its data streams past, then yields the
 * trailer to append after the data.
 */
export class ChunkDigest {
  private readonly data = createHash('sha256')
  private bytes = 0
  update(buf: Uint8Array): void {
    this.data.update(buf)
    this.bytes += buf.length
  }
  get length(): number {
    return this.bytes
  }
  trailer(h: ChunkHeader): Buffer {
    if (h.length !== this.bytes) throw new RangeError(`chunk header says ${h.length} bytes, ${this.bytes} were written`)
    const head = headerBytes(h)
    return Buffer.concat([head, Buffer.from(sealOf(head, this.data.digest()), 'latin1'), Buffer.from(String(head.length).padStart(LENGTH_CHARS, '0'), 'latin1'), Buffer.from(CHUNK_MAGIC, 'latin1')])
  }
}

// The seal binds the header to the data's own digest, so both are checked at once.
function sealOf(head: Buffer, dataDigest: Buffer): string {
  return createHash('sha256').update(head).update(dataDigest).digest('hex')
}

/** A whole chunk file in memory (what `ChunkDigest` + trailer produce), for tests and small writes. */
export function encodeChunk(h: Omit<ChunkHeader, 'length'>, data: Uint8Array): Buffer {
  const d = new ChunkDigest()
  d.update(data)
  return Buffer.concat([data, d.trailer({ ...h, length: data.length })])
}

export type Decoded = { readonly ok: true; readonly header: ChunkHeader; readonly data: Buffer } | { readonly ok: false; readonly why: string }

/**
 * Checks a chunk file's bytes against what the reader expects (`key`, `index`) and
 * returns its data and header, or why it cannot be trusted. Never throws on bad input.
 */
export function decodeChunk(file: Buffer, expect: { readonly key: string; readonly index: number }): Decoded {
  if (file.length < TAIL) return { ok: false, why: 'too short for a trailer' }
  if (file.toString('latin1', file.length - CHUNK_MAGIC.length) !== CHUNK_MAGIC) return { ok: false, why: 'no chunk trailer' }
  const lenText = file.toString('latin1', file.length - CHUNK_MAGIC.length - LENGTH_CHARS, file.length - CHUNK_MAGIC.length)
  if (!/^[0-9]{10}$/.test(lenText)) return { ok: false, why: 'bad trailer length' }
  const headLen = Number(lenText)
  const headEnd = file.length - TAIL
  const headStart = headEnd - headLen
  if (headStart < 0) return { ok: false, why: 'trailer longer than the file' }
  const head = file.subarray(headStart, headEnd)
  const seal = file.toString('latin1', headEnd, headEnd + DIGEST_CHARS)
  const data = file.subarray(0, headStart)
  if (sealOf(head, createHash('sha256').update(data).digest()) !== seal) return { ok: false, why: 'digest mismatch' }
  let json: HeaderJson
  try {
    json = JSON.parse(head.toString('utf8')) as HeaderJson
  } catch {
    return { ok: false, why: 'unreadable header' }
  }
  if (json.v !== 1) return { ok: false, why: `unknown chunk format ${String(json.v)}` }
  if (json.key !== expect.key || json.index !== expect.index) return { ok: false, why: 'chunk of another key or position' }
  if (json.length !== data.length) return { ok: false, why: 'length mismatch' }
  if (json.impl !== 'wasm' && json.impl !== 'ts' && json.impl !== 'none') return { ok: false, why: 'unknown hash implementation' }
  return {
    ok: true,
    data,
    header: {
      key: json.key,
      index: json.index,
      offset: json.offset,
      length: json.length,
      hash: { algo: json.algo, impl: json.impl, state: new Uint8Array(Buffer.from(json.state, 'base64')) },
    },
  }
}
