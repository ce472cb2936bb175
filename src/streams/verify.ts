// Pass-through verification: bytes flow on unchanged while being counted and hashed;
// flush() fails on a length or digest mismatch, so a sink that commits in its own
// final() after the verifier has flushed can never commit bad bytes (style §2.4).
//
// Hash once per upload: a cluster upload is verified once, at the gateway, by the verifier
// of a verifiedTee, which vouches for each branch it feeds (Vouched). A node in the same
// process given its branch and that voucher counts the bytes but does not hash them again;
// its verifier's flush waits for the gateway's verdict instead, so it commits nothing
// unverified either. A voucher cannot be made elsewhere, and covers only its own branch,
// whole, from byte 0: a node resuming from a prefix of its own hashes it all itself.
import { pipeline, Transform, type Readable, type TransformCallback } from 'node:stream'
import { AbortedError, HashMismatchError, LengthMismatchError, type ProxyError } from '../errors.js'
import { createHasher, digestMatches, digestOf, type Hasher, type HasherKind } from '../keys/backend.js'
import { serializeKey, type Key } from '../keys/key.js'
import { tee, type Tee, type TeeOptions } from './tee.js'

export type { HasherKind }

let hashed = 0

/** Bytes hashed by verifiers in this process so far (for tests and metrics). */
export function hashedBytes(): number {
  return hashed
}

/**
 * How a verifier ended. `bad`: the content is known wrong (digest, or more bytes than the
 * key has), never worth resuming from; otherwise it stopped short or was cut off.
 */
export type Verdict = { readonly ok: true } | { readonly ok: false; readonly error: ProxyError; readonly bad: boolean }

const MINT = Symbol('verifiedTee')

/**
 * A verifiedTee's word that its branch `body` carries exactly the bytes its verifier saw,
 * and a promise of that verifier's verdict. Only verifiedTee makes them.
 */
export class Vouched {
  readonly #key: string
  readonly #body: Readable
  readonly #decided: { verdict?: Verdict }
  /** Settles when the vouching verifier has decided (or was cut off). */
  readonly verdict: Promise<Verdict>

  constructor(mint: typeof MINT, key: Key, body: Readable, verdict: Promise<Verdict>, decided: { verdict?: Verdict }) {
    if (mint !== MINT) throw new TypeError('only verifiedTee vouches for content')
    this.#key = serializeKey(key)
    this.#body = body
    this.verdict = verdict
    this.#decided = decided
  }

  /**
   * The verdict if it is in already. A branch destroyed because the content was refused
   * upstream finds it here: the verifier decides before its error reaches any branch.
   */
  get decided(): Verdict | undefined {
    return this.#decided.verdict
  }

  /** Whether this vouches for `body` carrying all of `key`'s content from byte `offset` = 0. */
  covers(key: Key, body: Readable, offset: number): boolean {
    return offset === 0 && body === this.#body && serializeKey(key) === this.#key
  }
}

export interface VerifyOptions {
  /** Which digest implementation to use; 'auto' (the default) picks the fastest measured. */
  hasher?: HasherKind
  /** Bytes 0..n of the content already held (resumed upload); hashed before the stream. */
  prefix?: Readable
  /** Buffering of the Transform's two sides; Node's default when absent. */
  highWaterMark?: number
  /**
   * The stream being verified came from a verifiedTee: when `vouched` covers `body` (whole,
   * from 0) the bytes are counted but not hashed again, and flush() takes the vouching
   * verifier's verdict. Otherwise it is ignored and the content is hashed here.
   */
  upstream?: { readonly vouched: Vouched | undefined; readonly body: Readable; readonly offset: number }
  /** Told the verdict once, when it is known. */
  onVerdict?: (v: Verdict) => void
  /**
   * Never fail the stream: pass every byte on and only tell the verdict (onVerdict). For a
   * verifiedTee, whose consumers enforce it themselves: each checks the length it received
   * and takes the digest's verdict from its voucher, so a short body is kept for resume
   * downstream, and a bad one is refused there with every byte in hand (a peer over the
   * network is then told so, rather than cut off holding a prefix of bad content).
   */
  verdictOnly?: boolean
}

/**
 * A Transform that passes `key`'s content through untouched and fails, in flush(), unless
 * it had exactly the key's size (when the key has one) and its digest (digestOf: hash
 * backends, GITBUNDLE), as git-annex verifies content it receives. Too many bytes fail as
 * soon as they arrive. Keys with no digest (WORM, URL, external…) are checked for length
 * only. A chunk key is content of its whole object here (its -s size, its digest), which
 * is what git-annex accepts for one: a single chunk's bytes never verify.
 */
export async function createVerifier(key: Key, opts: VerifyOptions = {}): Promise<Transform> {
  const up = opts.upstream
  const vouched = up?.vouched?.covers(key, up.body, up.offset) && opts.prefix === undefined ? up.vouched : undefined
  const digest = vouched ? undefined : digestOf(key)
  const expected = digest?.expected
  const length = key.size
  const hasher: Hasher | undefined = digest === undefined ? undefined : await createHasher(digest.algorithm, opts.hasher)
  let count = 0
  const tooLong = () => new LengthMismatchError(`received more than the ${length} bytes of ${serializeKey(key)}`)
  let told = false
  const tell = (v: Verdict) => {
    if (told) return
    told = true
    opts.onVerdict?.(v)
  }
  const refuse = (error: ProxyError, bad: boolean): ProxyError => {
    tell({ ok: false, error, bad })
    return error
  }

  if (opts.prefix) {
    for await (const chunk of opts.prefix as AsyncIterable<unknown>) {
      if (!(chunk instanceof Uint8Array)) throw new TypeError('verifier prefix must yield bytes, not decoded strings')
      count += chunk.length
      if (length !== undefined && count > length) throw refuse(tooLong(), true)
      hasher?.update(chunk)
      if (hasher) hashed += chunk.length
    }
  }

  const t = new Transform({
    ...(opts.highWaterMark === undefined ? {} : { highWaterMark: opts.highWaterMark }),
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      count += chunk.length
      if (length !== undefined && count > length) {
        const e = refuse(tooLong(), true)
        if (!opts.verdictOnly) return cb(e)
        return cb(null, chunk)
      }
      try {
        hasher?.update(chunk)
      } catch (e) {
        return cb(e as Error)
      }
      if (hasher) hashed += chunk.length
      // The same Buffer goes downstream: hashing reads it, nothing copies it.
      cb(null, chunk)
    },
    flush(cb: TransformCallback) {
      const fail = (e: ProxyError) => (opts.verdictOnly ? cb() : cb(e))
      if (length !== undefined && count !== length) {
        return fail(refuse(new LengthMismatchError(`received ${count} of the ${length} bytes of ${serializeKey(key)}`), count > length))
      }
      if (hasher && !digestMatches(expected!, hasher.digest())) {
        return fail(refuse(new HashMismatchError(`content does not match the checksum of ${serializeKey(key)}`), true))
      }
      if (!vouched) {
        tell({ ok: true })
        return cb()
      }
      // Hashed upstream: its verdict is this one's (it has decided by now: this branch ends
      // only after the vouching verifier flushed).
      vouched.verdict.then(
        (v) => {
          if (v.ok) {
            tell(v)
            cb()
          } else cb(refuse(v.error, v.bad))
        },
        (e: Error) => cb(e),
      )
    },
  })
  t.once('close', () => tell({ ok: false, error: new AbortedError(`the content of ${serializeKey(key)} was cut off before it verified`), bad: false }))
  return t
}

export interface VerifiedTee extends Tee {
  /** Vouchers for the branches, by index: give each to the Remote its branch goes to (StoreOp.vouched). */
  readonly vouchers: readonly Vouched[]
}

/**
 * A tee whose input is hashed once, on its way to the branches: write the upload to
 * `input`, hand branch i and vouchers[i] to a store. Branches get every byte, as from a
 * plain tee; each store checks the length it received, and one that verifies with the
 * voucher (createVerifier `upstream`) takes the digest's verdict from it and commits only
 * once it is in and good. A store given no voucher, or one that does not cover its body,
 * hashes for itself.
 */
export async function verifiedTee(key: Key, n: number, opts: TeeOptions & { readonly hasher?: HasherKind }): Promise<VerifiedTee> {
  let resolve!: (v: Verdict) => void
  const verdict = new Promise<Verdict>((r) => (resolve = r))
  const decided: { verdict?: Verdict } = {}
  const decide = (v: Verdict) => {
    decided.verdict ??= v
    resolve(v)
  }
  const verifier = await createVerifier(key, { ...(opts.hasher ? { hasher: opts.hasher } : {}), onVerdict: decide, verdictOnly: true })
  const fan = tee(n, opts)
  // Errors travel by destroy: a verdict against the content reaches every branch, a tee
  // with no branch left fails the verifier and so the upload.
  pipeline(verifier, fan.input, () => {})
  return { input: verifier, branches: fan.branches, detached: fan.detached, vouchers: fan.branches.map((b) => new Vouched(MINT, key, b, verdict, decided)) }
}
