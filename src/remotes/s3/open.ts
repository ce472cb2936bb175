// Opens an S3 special remote of a gateway natively: settings from its remote.log fields,
// credentials as git-annex finds them, the bucket's `annex-uuid` object checked (and
// written when missing, as git-annex's genBucket does), then the generic SpecialRemote.
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3'
import { ConfigError, RemoteUnavailableError } from '../../errors.js'
import type { HasherKind } from '../../streams/verify.js'
import type { Logger, Uuid } from '../remote.js'
import type { ChunkLog } from '../special/chunk-log.js'
import { SpecialRemote } from '../special/special-remote.js'
import { findS3Credentials } from './credentials.js'
import { parseS3Settings } from './settings.js'
import { S3SettingsError } from '../../errors.js'
import { S3Store, type S3StoreOptions } from './s3-store.js'
import { MultipartJournal } from './orphaned-uploads.js'
import { join } from 'node:path'

export interface OpenS3Options {
  readonly uuid: Uuid
  /** The gateway's git directory (for .git/annex/creds/<uuid>). */
  readonly gitDir: string
  /** The remote's remote.log fields. */
  readonly config: ReadonlyMap<string, string>
  readonly chunkLog: ChunkLog
  readonly hasher?: HasherKind
  readonly log?: Logger
  readonly store?: S3StoreOptions
  readonly env?: NodeJS.ProcessEnv
}

type SdkError = Error & { $metadata?: { httpStatusCode?: number } }

export async function openS3Remote(o: OpenS3Options): Promise<SpecialRemote> {
  let settings
  try {
    settings = parseS3Settings(o.config)
  } catch (e) {
    if (e instanceof S3SettingsError) throw new ConfigError(e.message)
    throw e
  }
  const creds = await findS3Credentials(o.uuid, o.gitDir, o.config, o.env)
  if (!creds) throw new ConfigError('Set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to use S3')
  const journal = new MultipartJournal(join(o.gitDir, 'annex', 'annex-proxy', 'multipart', o.uuid))
  const store = new S3Store(settings, creds, { journal, ...o.store })
  try {
    if (!settings.annexObjects) await checkBucketUuid(store, o.uuid)
  } catch (e) {
    await store.close()
    throw e
  }
  // Multipart uploads a killed gateway left behind are aborted now and then periodically.
  store.startSweeping(o.log)
  o.log?.info({ uuid: o.uuid, bucket: settings.bucket, endpoint: settings.endpoint, credentials: creds.source }, 'S3 special remote served natively')
  // A chunk larger than a part is itself a multipart upload with its own parts in flight:
  // one such chunk at a time keeps memory at one upload's parts.
  const writesInFlight = settings.chunking.kind === 'chunks' && settings.chunking.size > store.partSize ? 1 : 2
  return new SpecialRemote({ uuid: o.uuid, store, chunking: settings.chunking, chunkLog: o.chunkLog, writesInFlight, ...(o.hasher ? { hasher: o.hasher } : {}), ...(o.log ? { log: o.log } : {}) })
}

/** checkUUIDFile / writeUUIDFile: the bucket must be this remote's, or be made so. */
async function checkBucketUuid(store: S3Store, uuid: string): Promise<void> {
  const Bucket = store.settings.bucket
  const Key = store.uuidObject
  const signal = AbortSignal.timeout(60_000)
  let missingBucket = false
  try {
    const r = await store.client.send(new GetObjectCommand({ Bucket, Key }), { abortSignal: signal })
    const text = await r.Body!.transformToString('utf8')
    if (text === uuid) return
    throw new ConfigError(`S3 bucket ${Bucket}: its ${Key} object names another special remote (${JSON.stringify(text.slice(0, 64))}), not ${uuid}`)
  } catch (e) {
    if (e instanceof ConfigError) throw e
    const err = e as SdkError
    if (err.name === 'NoSuchBucket') missingBucket = true
    else if (!(err.name === 'NoSuchKey' || err.$metadata?.httpStatusCode === 404)) {
      throw new RemoteUnavailableError(`${store.description}: cannot read ${Key}: ${err.message}`, { cause: e })
    }
  }
  try {
    if (missingBucket) await store.client.send(new CreateBucketCommand({ Bucket }), { abortSignal: signal })
    await store.client.send(new PutObjectCommand({ Bucket, Key, Body: Buffer.from(uuid), StorageClass: store.settings.storageClass as never, ...(Object.keys(store.settings.metadata).length > 0 ? { Metadata: { ...store.settings.metadata } } : {}) }), { abortSignal: signal })
  } catch (e) {
    throw new RemoteUnavailableError(`${store.description}: cannot write ${Key}: ${(e as Error).message}`, { cause: e })
  }
}
