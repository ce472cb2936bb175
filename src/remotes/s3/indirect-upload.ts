// Indirect uploads to an S3 special remote (git-annex's design/passthrough_proxy, "possible
// enhancement: indirect uploads"): the gateway hands a client a short-lived presigned PUT
// URL, the client sends the content to S3 itself, and only then tells the gateway, which
// verifies it before anything names it as the key's content.
//
// Trust model, in the order things happen:
// - The URL is for a staging object (`<fileprefix>annex-proxy-incoming/<random>/<key>`),
//   never for the key's own object name: until the gateway has verified the bytes, nothing
//   that reads the bucket the git-annex way (this gateway, git-annex's own S3 remote) can
//   take them for the key.
// - The signed request fixes the length (Content-Length), refuses to overwrite
//   (If-None-Match: *) and, for SHA256 and SHA1 keys, carries the key's digest
//   (x-amz-checksum-sha256 / -sha1), with which a store that checks it (AWS S3) refuses
//   other bytes outright. The URL expires after `expirySeconds`.
// - confirm() takes a ticket only this process issued (HMAC), reads the staged object back
//   and verifies its length and digest (or, with verify='store', accepts a checksum the
//   store reports that equals the key's — only for stores that verify what they are sent);
//   then copies it server-side to the key's name, deletes the staged object, and the caller
//   records the location. Content that does not verify is deleted and nothing is recorded.
// - Staged objects nobody confirmed are swept once they are older than the URL's lifetime
//   plus the confirmation grace.
import { createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto'
import { Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { CopyObjectCommand, DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3'
import { getSignedUrl } from '@aws-sdk/s3-request-presigner'
import { BadRequestError, HashMismatchError, InvalidTicketError, LengthMismatchError } from '../../errors.js'
import { expectedDigest, hashAlgorithm } from '../../keys/backend.js'
import { serializeKey, type Key } from '../../keys/key.js'
import { createVerifier } from '../../streams/verify.js'
import type { Logger } from '../remote.js'
import type { S3Store } from './s3-store.js'

export type IndirectVerify = 'readback' | 'store'

export interface IndirectUploadOptions {
  /** Longest lifetime of a presigned URL (a client may ask for less). */
  readonly expirySeconds: number
  /** How long after its URL expired a staged upload may still be confirmed (an upload started in time may take long). */
  readonly confirmGraceSeconds?: number
  /** 'readback' (default): the gateway hashes the staged object. 'store': a checksum the store reports is trusted. */
  readonly verify?: IndirectVerify
  /** Key for the tickets' MACs; random per process by default (tickets then die with it). */
  readonly secret?: Buffer
  readonly log?: Logger
}

/** What a client needs to upload: send `method url` with exactly these headers and the key's bytes. */
export interface PresignedPut {
  readonly url: string
  readonly method: 'PUT'
  readonly headers: Readonly<Record<string, string>>
  /** Seconds since the epoch after which the URL is refused. */
  readonly expires: number
  /** Hand back to confirm(). */
  readonly ticket: string
}

export type Confirmed = { readonly stored: true } | { readonly stored: false; readonly reason: string }

interface Ticket {
  readonly u: string
  readonly k: string
  readonly s: string
  readonly e: number
}

const STAGING = 'annex-proxy-incoming/'
const SWEEP_EVERY_MS = 10 * 60 * 1000

const b64url = (b: Buffer) => b.toString('base64url')

function isNotFound(e: unknown): boolean {
  const err = e as { name?: string; $metadata?: { httpStatusCode?: number } }
  return err?.$metadata?.httpStatusCode === 404 || err?.name === 'NotFound' || err?.name === 'NoSuchKey'
}

/** The checksum header S3 can verify for a key's digest, when the key's hash is one S3 knows. */
export function storeChecksum(key: Key): { readonly header: string; readonly value: string; readonly field: 'ChecksumSHA256' | 'ChecksumSHA1' } | undefined {
  const digest = expectedDigest(key)
  const algo = hashAlgorithm(key.backend)
  if (digest === undefined || !/^[0-9a-f]+$/.test(digest)) return undefined
  if (algo === 'SHA256' && digest.length === 64) return { header: 'x-amz-checksum-sha256', value: Buffer.from(digest, 'hex').toString('base64'), field: 'ChecksumSHA256' }
  if (algo === 'SHA1' && digest.length === 40) return { header: 'x-amz-checksum-sha1', value: Buffer.from(digest, 'hex').toString('base64'), field: 'ChecksumSHA1' }
  return undefined
}

export class S3IndirectUploads {
  private readonly secret: Buffer
  private readonly grace: number
  private lastSweep = 0

  constructor(
    /** The special remote's UUID: tickets name it, so one remote's ticket is no good for another. */
    private readonly uuid: string,
    private readonly store: S3Store,
    private readonly opts: IndirectUploadOptions,
  ) {
    this.secret = opts.secret ?? randomBytes(32)
    this.grace = opts.confirmGraceSeconds ?? 3600
  }

  private get stagingPrefix(): string {
    return `${this.store.settings.fileprefix}${STAGING}`
  }

  /** Refuses keys whose content the gateway could not verify: no size, or no digest. */
  private check(key: Key): { size: number } {
    if (key.size === undefined) throw new BadRequestError(`indirect upload needs a key with a size; ${serializeKey(key)} has none`)
    if (expectedDigest(key) === undefined) throw new BadRequestError(`indirect upload needs a key with a checksum to verify; ${serializeKey(key)} has none`)
    return { size: key.size }
  }

  /** Closes the S3 client this uploader owns. */
  close(): Promise<void> {
    return this.store.close()
  }

  async presign(key: Key, opts: { expiresIn?: number; now?: Date } = {}): Promise<PresignedPut> {
    const { size } = this.check(key)
    const expiresIn = Math.min(this.opts.expirySeconds, Math.max(1, Math.floor(opts.expiresIn ?? this.opts.expirySeconds)))
    const now = opts.now ?? new Date()
    const staging = `${this.stagingPrefix}${randomUUID()}/${serializeKey(key)}`
    const checksum = storeChecksum(key)
    const cmd = new PutObjectCommand({
      Bucket: this.store.settings.bucket,
      Key: staging,
      ContentLength: size,
      IfNoneMatch: '*',
      ...(checksum ? { [checksum.field]: checksum.value } : {}),
    })
    const url = await getSignedUrl(this.store.client, cmd, {
      expiresIn,
      signingDate: now,
      // Signed headers the client must send as they are: any other length, digest or an
      // overwrite breaks the signature or the precondition.
      signableHeaders: new Set(['content-length']),
      unhoistableHeaders: new Set(['if-none-match', ...(checksum ? [checksum.header] : [])]),
    })
    const expires = Math.floor(now.getTime() / 1000) + expiresIn
    const headers: Record<string, string> = { 'content-length': String(size), 'if-none-match': '*' }
    if (checksum) headers[checksum.header] = checksum.value
    void this.sweep()
    return { url, method: 'PUT', headers, expires, ticket: this.seal({ u: this.uuid, k: serializeKey(key), s: staging, e: expires }) }
  }

  /**
   * The client says it has uploaded `key` with `ticket`: verify what is staged, move it to
   * the key's name, or delete it. Resolves `stored: true` only when the key's object now
   * holds verified content.
   */
  async confirm(key: Key, ticket: string, signal: AbortSignal): Promise<Confirmed> {
    const t = this.open(ticket)
    if (t.u !== this.uuid || t.k !== serializeKey(key)) throw new InvalidTicketError('this indirect upload ticket is for another key or remote')
    if (Date.now() / 1000 > t.e + this.grace) throw new InvalidTicketError('this indirect upload ticket has expired; ask for a new upload URL')
    const { size } = this.check(key)
    const Bucket = this.store.settings.bucket
    let head
    try {
      head = await this.store.client.send(new HeadObjectCommand({ Bucket, Key: t.s, ChecksumMode: 'ENABLED' }), { abortSignal: signal })
    } catch (e) {
      if (isNotFound(e)) return { stored: false, reason: 'nothing was uploaded for this ticket (or it was already confirmed)' }
      throw e
    }
    try {
      if (head.ContentLength !== size) throw new LengthMismatchError(`the upload has ${head.ContentLength ?? 'no'} bytes, the key ${size}`)
      const checksum = storeChecksum(key)
      const vouched = this.opts.verify === 'store' && checksum !== undefined && head[checksum.field] === checksum.value
      if (!vouched) await this.readBack(key, t.s, signal)
    } catch (e) {
      if (e instanceof HashMismatchError || e instanceof LengthMismatchError) {
        await this.remove(t.s)
        this.opts.log?.warn({ key: serializeKey(key), why: e.message }, 'indirect upload did not verify; deleted')
        return { stored: false, reason: e.message }
      }
      throw e
    }
    const s = this.store.settings
    await this.store.client.send(
      new CopyObjectCommand({
        Bucket,
        Key: this.store.objectName(key),
        CopySource: `${Bucket}/${t.s.split('/').map(encodeURIComponent).join('/')}`,
        MetadataDirective: 'REPLACE',
        StorageClass: s.storageClass as never,
        ...(Object.keys(s.metadata).length > 0 ? { Metadata: { ...s.metadata } } : {}),
        ...(s.publicRead ? { ACL: 'public-read' as const } : {}),
      }),
      { abortSignal: signal },
    )
    await this.remove(t.s)
    return { stored: true }
  }

  /** Reads the staged object through the key's verifier; throws Hash/LengthMismatchError when it does not match. */
  private async readBack(key: Key, name: string, signal: AbortSignal): Promise<void> {
    const r = await this.store.client.send(new GetObjectCommand({ Bucket: this.store.settings.bucket, Key: name }), { abortSignal: signal })
    const sink = new Writable({ write: (_c, _e, cb) => cb() })
    await pipeline(r.Body as NodeJS.ReadableStream, await createVerifier(key), sink, { signal })
  }

  private async remove(name: string): Promise<void> {
    await this.store.client
      .send(new DeleteObjectCommand({ Bucket: this.store.settings.bucket, Key: name }), { abortSignal: AbortSignal.timeout(60_000) })
      .catch((e: unknown) => this.opts.log?.warn({ object: name, err: e }, 'could not delete a staged indirect upload'))
  }

  /** Deletes staged uploads nobody can confirm any more; at most once every ten minutes. */
  async sweep(now = Date.now()): Promise<number> {
    if (now - this.lastSweep < SWEEP_EVERY_MS) return 0
    this.lastSweep = now
    const cutoff = now - (this.opts.expirySeconds + this.grace) * 1000
    let removed = 0
    try {
      let token: string | undefined
      do {
        const page = await this.store.client.send(
          new ListObjectsV2Command({ Bucket: this.store.settings.bucket, Prefix: this.stagingPrefix, ContinuationToken: token }),
          { abortSignal: AbortSignal.timeout(60_000) },
        )
        for (const o of page.Contents ?? []) {
          if (o.Key && o.LastModified && o.LastModified.getTime() < cutoff) {
            await this.remove(o.Key)
            removed++
          }
        }
        token = page.IsTruncated ? page.NextContinuationToken : undefined
      } while (token)
    } catch (err) {
      this.opts.log?.warn({ err }, 'could not sweep stale indirect uploads')
    }
    return removed
  }

  private seal(t: Ticket): string {
    const body = b64url(Buffer.from(JSON.stringify(t)))
    return `${body}.${b64url(createHmac('sha256', this.secret).update(body).digest())}`
  }

  private open(ticket: string): Ticket {
    const [body, mac] = ticket.split('.')
    const bad = () => new InvalidTicketError('not an indirect upload ticket issued by this gateway')
    if (!body || !mac) throw bad()
    const want = createHmac('sha256', this.secret).update(body).digest()
    const got = Buffer.from(mac, 'base64url')
    if (got.length !== want.length || !timingSafeEqual(got, want)) throw bad()
    let t: Ticket
    try {
      t = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as Ticket
    } catch {
      throw bad()
    }
    if (typeof t.u !== 'string' || typeof t.k !== 'string' || typeof t.s !== 'string' || typeof t.e !== 'number' || !t.s.startsWith(this.stagingPrefix)) throw bad()
    return t
  }
}

