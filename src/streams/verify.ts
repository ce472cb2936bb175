// Pass-through verification: bytes flow on unchanged while being counted and hashed;
// flush() fails on a length or digest mismatch, so a sink that commits in its own
// final() after the verifier has flushed can never commit bad bytes.
import { createHash } from 'node:crypto'
import { Transform, type Readable, type TransformCallback } from 'node:stream'
import { HashMismatchError, LengthMismatchError } from '../errors.js'
import type { Key } from '../keys/key.js'

export type HasherKind = 'wasm' | 'native' | 'auto'

export interface VerifyOptions {
  hasher?: HasherKind
  /** Bytes 0..n of the content already held (resumed upload); hashed before the stream. */
  prefix?: Readable
}

const NATIVE: Record<string, string> = {
  SHA256: 'sha256',
  SHA512: 'sha512',
  SHA224: 'sha224',
  SHA384: 'sha384',
  SHA1: 'sha1',
  MD5: 'md5',
}

function algorithmOf(key: Key): string | undefined {
  const b = key.backend.endsWith('E') ? key.backend.slice(0, -1) : key.backend
  return NATIVE[b]
}

function expectedDigest(key: Key): string {
  const n = key.name.startsWith('\\') ? key.name.slice(1) : key.name
  const dot = n.indexOf('.')
  return (dot < 0 ? n : n.slice(0, dot)).toLowerCase()
}

export async function createVerifier(key: Key, opts: VerifyOptions = {}): Promise<Transform> {
  const algo = algorithmOf(key)
  const hash = algo ? createHash(algo) : undefined
  let count = 0
  if (opts.prefix) {
    for await (const chunk of opts.prefix) {
      hash?.update(chunk as Buffer)
      count += (chunk as Buffer).length
    }
  }
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      count += chunk.length
      if (key.size !== undefined && count > key.size) {
        cb(new LengthMismatchError(`received more than the ${key.size} bytes of the key`))
        return
      }
      hash?.update(chunk)
      cb(null, chunk)
    },
    flush(cb: TransformCallback) {
      if (key.size !== undefined && count !== key.size) {
        cb(new LengthMismatchError(`received ${count} of the key's ${key.size} bytes`))
        return
      }
      if (hash) {
        const got = hash.digest('hex')
        if (got !== expectedDigest(key)) {
          cb(new HashMismatchError(`content does not match the key's checksum`))
          return
        }
      }
      cb()
    },
  })
}
