// An S3 bucket as a special remote's ObjectStore, with git-annex's object names
// (Remote/S3.hs getBucketObject): `<fileprefix><serialized key>` — chunk keys included —
// or, for exporttree=yes annexobjects=yes remotes, `<fileprefix>.git/annex/objects/
// <hashdirlower><keyFile>/<keyFile>` (Annex/Locations.hs exportAnnexObjectLocation).
//
// Writes are never visible before they are committed: an object that fits in one part
// (partSize) is buffered and sent with one PutObject after the commit decision; a larger
// one goes up as a multipart upload, `partsInFlight` parts at a time (memory at most that
// × partSize: the next part is read only once one of them is done), completed only after the decision and aborted otherwise or on any failure,
// so a failed upload leaves neither an object nor parts. Each request is retried by the
// SDK (standard mode: backoff on 5xx, SlowDown, throttling and dropped connections) with
// buffered bodies it can resend. Requests are signed SigV4 whatever remote.log's
// `signature=` says (git-annex 10.20250416 defaults to v2; S3 services accept v4).
//
// A part is held as the pieces the client's bytes arrived in, never copied into one
// Buffer (a profile of 8×64 MiB proxied uploads spent as much time in that copy and its
// garbage as in hashing): each attempt of a request streams the same pieces again
// (PiecesBody). Its payload is signed over plain http (x-amz-content-sha256 = the part's
// SHA-256, which the server checks), and sent as UNSIGNED-PAYLOAD over https, where TLS
// protects the body (as the AWS SDK v2 and botocore do) and a second SHA-256 pass over
// every byte would buy nothing. That hash is taken piece by piece as the part arrives, not
// over 8 MiB at once when it is sent (which held the event loop, and every other transfer,
// for that long).
//
// When the key's size says the object takes several parts, the multipart upload is created
// while its first part arrives from the client rather than after (a round trip less before
// the first byte goes to S3); one created for a client that then goes away is aborted like
// any other.
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3'
import { createHash } from 'node:crypto'
import { Agent as HttpAgent } from 'node:http'
import { Agent as HttpsAgent } from 'node:https'
import { Readable } from 'node:stream'
import type { Key } from '../../keys/key.js'
import { serializeKey } from '../../keys/key.js'
import { hashDirLower, keyFile } from '../../keys/object-path.js'
import type { ObjectRead, ObjectStore } from '../special/object-store.js'
import type { S3Credentials } from './credentials.js'
import type { S3Settings } from './settings.js'
import { MultipartJournal, SWEEP_INTERVAL_MS, sweepOrphanedUploads } from './orphaned-uploads.js'
import type { Logger } from '../remote.js'

/** Used when remote.log has no partsize (or one below S3's 5 MiB part minimum). */
export const DEFAULT_PART_SIZE = 8 * 1024 * 1024
/** Parts of one multipart upload in flight unless configured (--s3-parts). */
export const DEFAULT_PARTS_IN_FLIGHT = 4
const MIN_PART_SIZE = 5 * 1024 * 1024
const MAX_PARTS = 10_000

export interface S3StoreOptions {
  /** Parts uploaded at once per object (default 4, as the SDK's own lib-storage upload). */
  readonly partsInFlight?: number
  /** Part size override (default: remote.log's partsize, else 8 MiB). */
  readonly partSize?: number
  /** Attempts per request, the first included (default 6). */
  readonly maxAttempts?: number
  /** Sockets per S3 endpoint (default 32). */
  readonly maxSockets?: number
  /**
   * Where multipart uploads in progress are written down, so that those of a killed
   * gateway are found and aborted (orphaned-uploads.ts). None: nothing is written down.
   */
  readonly journal?: MultipartJournal
}

type SdkError = Error & { $metadata?: { httpStatusCode?: number }; Code?: string }

function status(e: unknown): number | undefined {
  return (e as SdkError | undefined)?.$metadata?.httpStatusCode
}

function isNotFound(e: unknown): boolean {
  const n = (e as SdkError | undefined)?.name
  return status(e) === 404 || n === 'NotFound' || n === 'NoSuchKey'
}

/**
 * The SDK warns on Node < 22 that its releases after January 2027 will need Node 22
 * (NodeVersionSupportWarning, on stderr at every start). annex-proxy supports Node 20 and
 * 24 with the SDK its lockfile pins, so the warning tells an operator nothing to do; it is
 * turned off with the SDK's own switch unless the operator set that switch.
 */
function quietSdkNodeVersionWarning(): void {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'
}

/** AbortMultipartUpload must run even when the operation's own signal has fired. */
const cleanupSignal = () => AbortSignal.timeout(120_000)

export class S3Store implements ObjectStore {
  readonly description: string
  readonly client: S3Client
  /** Bytes per part of a multipart upload (objects up to this size go up in one PutObject). */
  readonly partSize: number
  private readonly partsInFlight: number
  /** Requests go over https: bodies are sent UNSIGNED-PAYLOAD (see the top). */
  private readonly tls: boolean
  private readonly journal: MultipartJournal | undefined
  private sweeper: { readonly timer: NodeJS.Timeout; readonly stop: AbortController } | undefined

  constructor(
    readonly settings: S3Settings,
    credentials: S3Credentials,
    opts: S3StoreOptions = {},
  ) {
    this.description = `S3 bucket ${settings.bucket}${settings.endpoint ? ` at ${settings.endpoint}` : ''}${settings.fileprefix ? ` (fileprefix ${settings.fileprefix})` : ''}`
    const maxSockets = opts.maxSockets ?? 32
    quietSdkNodeVersionWarning()
    this.client = new S3Client({
      ...(settings.endpoint ? { endpoint: settings.endpoint } : {}),
      region: settings.region,
      forcePathStyle: settings.forcePathStyle,
      credentials: {
        accessKeyId: credentials.accessKeyId,
        secretAccessKey: credentials.secretAccessKey,
        ...(credentials.sessionToken ? { sessionToken: credentials.sessionToken } : {}),
      },
      maxAttempts: opts.maxAttempts ?? 6,
      retryMode: 'standard',
      // Checksums only where S3 requires them: portable to S3-compatible stores, and our
      // own verification is the hash of the key.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: {
        httpAgent: new HttpAgent({ keepAlive: true, maxSockets }),
        httpsAgent: new HttpsAgent({ keepAlive: true, maxSockets }),
        connectionTimeout: 30_000,
        requestTimeout: 300_000,
      },
    })
    const configured = opts.partSize ?? settings.partSize
    this.partSize = configured !== undefined && configured >= MIN_PART_SIZE ? configured : DEFAULT_PART_SIZE
    this.partsInFlight = Math.max(1, opts.partsInFlight ?? DEFAULT_PARTS_IN_FLIGHT)
    this.tls = settings.endpoint === undefined || settings.endpoint.startsWith('https:')
    this.journal = opts.journal
  }

  /**
   * Aborts the multipart uploads of killed gateways and abandoned ones now (in the
   * background) and every SWEEP_INTERVAL_MS until closed. Needs a journal.
   */
  startSweeping(log: Logger | undefined): void {
    const journal = this.journal
    if (!journal || this.sweeper) return
    const stop = new AbortController()
    const s = this.settings
    const sweep = () => {
      sweepOrphanedUploads({ client: this.client, bucket: s.bucket, fileprefix: s.fileprefix, annexObjects: s.annexObjects, journal }, { ...(log ? { log } : {}), signal: stop.signal }).catch(
        (e: unknown) => {
          if (!stop.signal.aborted) log?.warn({ bucket: s.bucket, err: (e as Error).message }, 'could not look for orphaned multipart uploads; trying again later')
        },
      )
    }
    const timer = setInterval(sweep, SWEEP_INTERVAL_MS)
    timer.unref()
    this.sweeper = { timer, stop }
    sweep()
  }

  /** The object name of a key (or chunk key) in the bucket. */
  objectName(key: Key): string {
    const p = this.settings.fileprefix
    if (!this.settings.annexObjects) return p + serializeKey(key)
    const f = keyFile(key)
    return `${p}.git/annex/objects/${hashDirLower(key)}${f}/${f}`
  }

  /** The bucket's `annex-uuid` object (not used by export remotes). */
  get uuidObject(): string {
    return `${this.settings.fileprefix}annex-uuid`
  }

  async has(key: Key, signal: AbortSignal): Promise<boolean> {
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.settings.bucket, Key: this.objectName(key) }), { abortSignal: signal })
      return true
    } catch (e) {
      if (isNotFound(e)) return false
      throw e
    }
  }

  async read(key: Key, start: number, signal: AbortSignal): Promise<ObjectRead | undefined> {
    const Key = this.objectName(key)
    try {
      const r = await this.client.send(
        new GetObjectCommand({ Bucket: this.settings.bucket, Key, ...(start > 0 ? { Range: `bytes=${start}-` } : {}) }),
        { abortSignal: signal },
      )
      const total = /\/(\d+)$/.exec(r.ContentRange ?? '')?.[1]
      const size = total !== undefined ? Number(total) : start + (r.ContentLength ?? 0)
      return { size, body: r.Body as Readable }
    } catch (e) {
      if (isNotFound(e)) return undefined
      // A range starting at or past the end: present, nothing to send.
      if (status(e) === 416) {
        try {
          const h = await this.client.send(new HeadObjectCommand({ Bucket: this.settings.bucket, Key }), { abortSignal: signal })
          return { size: h.ContentLength ?? 0, body: Readable.from([], { objectMode: false }) }
        } catch (e2) {
          if (isNotFound(e2)) return undefined
          throw e2
        }
      }
      throw e
    }
  }

  /** Headers git-annex sends with every object (putObject / multipart initiate). */
  private objectParams(Key: string) {
    const s = this.settings
    return {
      Bucket: s.bucket,
      Key,
      StorageClass: s.storageClass as never,
      ...(Object.keys(s.metadata).length > 0 ? { Metadata: { ...s.metadata } } : {}),
      ...(s.publicRead ? { ACL: 'public-read' as const } : {}),
    }
  }

  /** Writes an object (see ObjectStore.write). */
  async write(key: Key, body: Readable, length: number | undefined, commit: Promise<boolean>, signal: AbortSignal): Promise<boolean> {
    const name = this.objectName(key)
    // Enough parts for the largest object S3 takes in one multipart upload.
    const partSize = length === undefined ? this.partSize : Math.max(this.partSize, Math.ceil(length / MAX_PARTS))
    const reader = new PartReader(body, partSize, !this.tls)
    try {
      if (length !== undefined && length > partSize) return await this.multipart(name, undefined, reader, commit, signal)
      const first = await reader.next()
      if (reader.done) {
        if (!(await commit)) return false
        const part = first ?? { pieces: [], length: 0 }
        const put = new PutObjectCommand({ ...this.objectParams(name), ContentLength: part.length })
        await this.client.send(this.withBody(put, part), { abortSignal: signal })
        return true
      }
      return await this.multipart(name, first!, reader, commit, signal)
    } finally {
      reader.close()
    }
  }

  /**
   * `command` sending `part` as its body, the same pieces streamed again on every attempt
   * (after the SDK's retry step, so it still retries: a stream body would end its retries).
   */
  private withBody<C extends { middlewareStack: { addRelativeTo(mw: unknown, opts: object): void } }>(command: C, part: Part): C {
    if (part.length === 0) return command
    const payloadHash = this.tls ? 'UNSIGNED-PAYLOAD' : (part.sha256 ?? sha256Hex(part.pieces))
    const attach = (next: (a: { request: unknown }) => Promise<unknown>) => async (args: { request: unknown }) => {
      const req = args.request as { constructor: new (o: object) => unknown; headers: Record<string, string>; query?: object }
      const request = new req.constructor({ ...req, headers: { ...req.headers, 'x-amz-content-sha256': payloadHash }, query: { ...req.query }, body: Readable.from(part.pieces, { objectMode: false }) })
      return next({ ...args, request })
    }
    command.middlewareStack.addRelativeTo(attach, { name: 'annexProxyPartBody', relation: 'before', toMiddleware: 'httpSigningMiddleware' })
    return command
  }

  /** `first`: the first part when already read; otherwise it is read while the upload is created. */
  private async multipart(name: string, first: Part | undefined, reader: PartReader, commit: Promise<boolean>, signal: AbortSignal): Promise<boolean> {
    const Bucket = this.settings.bucket
    // Settles, never rejects: it may finish while the first part is still being read.
    const creating = this.create(name, signal)
    if (!first) {
      try {
        first = await reader.next()
      } catch (e) {
        const c = await creating
        if ('uploadId' in c) await this.abort(name, c.uploadId)
        throw e
      }
    }
    const c = await creating
    if ('failure' in c) throw c.failure
    const UploadId = c.uploadId
    if (!first) {
      // Nothing at all came: the verdict will be false, and nothing may stay behind.
      await this.abort(name, UploadId)
      if (await commit) throw new Error(`the upload of ${name} ended before its first byte`)
      return false
    }
    const parts: CompletedPart[] = []
    const inFlight = new Set<Promise<void>>()
    let failure: unknown
    const upload = (PartNumber: number, part: Part) => {
      const p = this.client
        .send(this.withBody(new UploadPartCommand({ Bucket, Key: name, UploadId, PartNumber, ContentLength: part.length }), part), { abortSignal: signal })
        .then((r) => {
          parts.push({ PartNumber, ETag: r.ETag! })
        })
        .catch((e: unknown) => {
          failure ??= e
        })
        .finally(() => inFlight.delete(p))
      inFlight.add(p)
    }
    try {
      let n = 1
      let part: Part | undefined = first
      while (part) {
        upload(n++, part)
        // Read no further than there is room to send: backpressure on the client.
        while (inFlight.size >= this.partsInFlight && failure === undefined) await Promise.race(inFlight)
        if (failure !== undefined) throw failure
        part = await reader.next()
      }
      await Promise.all(inFlight)
      if (failure !== undefined) throw failure
      if (!(await commit)) {
        await this.abort(name, UploadId)
        return false
      }
      parts.sort((a, b) => a.PartNumber! - b.PartNumber!)
      await this.client.send(new CompleteMultipartUploadCommand({ Bucket, Key: name, UploadId, MultipartUpload: { Parts: parts } }), { abortSignal: signal })
      await this.journal?.end(Bucket, name, UploadId).catch(() => undefined)
      return true
    } catch (e) {
      await Promise.allSettled(inFlight)
      await this.abort(name, UploadId)
      throw e
    }
  }

  /** CreateMultipartUpload, written down in the journal before it is used (else aborted). */
  private create(name: string, signal: AbortSignal): Promise<{ uploadId: string } | { failure: unknown }> {
    const Bucket = this.settings.bucket
    return this.client.send(new CreateMultipartUploadCommand(this.objectParams(name)), { abortSignal: signal }).then(
      async (created) => {
        const uploadId = created.UploadId!
        try {
          await this.journal?.begin(Bucket, name, uploadId)
        } catch (e) {
          await this.abort(name, uploadId)
          return { failure: e }
        }
        return { uploadId }
      },
      (e: unknown) => ({ failure: e }),
    )
  }

  /** AbortMultipartUpload, retried by the SDK; a failure is reported, not thrown over the real one. */
  private async abort(name: string, UploadId: string): Promise<void> {
    const Bucket = this.settings.bucket
    const done = await this.client
      .send(new AbortMultipartUploadCommand({ Bucket, Key: name, UploadId }), { abortSignal: cleanupSignal() })
      .then(
        () => true,
        (e: unknown) => {
          if (status(e) === 404) return true
          // Left in the journal: the sweep after the next start tries again.
          process.emitWarning(`could not abort multipart upload ${UploadId} of ${name}: ${(e as Error).message}`)
          return false
        },
      )
    if (done) await this.journal?.end(Bucket, name, UploadId).catch(() => undefined)
  }

  async delete(key: Key, signal: AbortSignal): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.settings.bucket, Key: this.objectName(key) }), { abortSignal: signal })
  }

  async close(): Promise<void> {
    if (this.sweeper) {
      clearInterval(this.sweeper.timer)
      this.sweeper.stop.abort()
    }
    this.client.destroy()
  }
}

/** One part of an object: the pieces its bytes arrived in, in order. */
export interface Part {
  readonly pieces: readonly Buffer[]
  readonly length: number
  /** The SHA-256 of the part's bytes, hex, when the reader was asked for it. */
  readonly sha256?: string
}

function sha256Hex(pieces: readonly Buffer[]): string {
  const h = createHash('sha256')
  for (const p of pieces) h.update(p)
  return h.digest('hex')
}

/**
 * Reads a byte stream as parts of exactly `size` bytes (the last shorter). Nothing is
 * copied: a piece that crosses a part boundary is split into two views of it. With `hash`,
 * each part's SHA-256 is taken as its pieces arrive.
 */
export class PartReader {
  private readonly it: AsyncIterator<Buffer>
  private held: Buffer | undefined
  done = false

  constructor(
    private readonly body: Readable,
    private readonly size: number,
    private readonly hash = false,
  ) {
    this.it = (body as AsyncIterable<Buffer>)[Symbol.asyncIterator]()
  }

  /** The next part; undefined when the stream had nothing more. Sets `done` once the stream ended. */
  async next(): Promise<Part | undefined> {
    const pieces: Buffer[] = []
    const h = this.hash ? createHash('sha256') : undefined
    let have = 0
    const add = (piece: Buffer) => {
      let v = piece
      if (have + v.length > this.size) {
        const keep = this.size - have
        this.held = v.subarray(keep)
        v = v.subarray(0, keep)
      }
      pieces.push(v)
      h?.update(v)
      have += v.length
    }
    if (this.held) {
      const v = this.held
      this.held = undefined
      add(v)
    }
    while (have < this.size && !this.done) {
      const r = await this.it.next()
      if (r.done) {
        this.done = true
        break
      }
      if (r.value.length === 0) continue
      add(r.value)
    }
    if (have === this.size && !this.done && !this.held) {
      // Exactly one part: the stream may have ended right here; look ahead so that an
      // object of exactly one part is not sent as a one-part multipart upload.
      const r = await this.it.next()
      if (r.done) this.done = true
      else if (r.value.length > 0) this.held = r.value
    }
    if (have === 0) return undefined
    return { pieces, length: have, ...(h ? { sha256: h.digest('hex') } : {}) }
  }

  close(): void {
    if (!this.done) this.body.destroy()
  }
}
