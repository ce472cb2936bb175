// Multipart uploads nobody will complete. An upload the gateway aborts itself leaves
// nothing (s3-store.ts), but a gateway killed mid-upload (SIGKILL, OOM, power) leaves its
// parts in the bucket, invisible and billed, and git-annex never aborts nor resumes one
// either (spec §6). Two sweeps clean them:
//  - every multipart upload is written down in the gateway's repository before its first
//    part (`.git/annex/annex-proxy/multipart/<remote uuid>/`) and crossed out once completed
//    or aborted; an entry whose process is gone is an orphan of this gateway, aborted when
//    the remote is next opened (a gateway killed between CreateMultipartUpload and that
//    write leaves an upload without parts, which the second sweep finds);
//  - uploads under the remote's fileprefix with an annex object's name that were started
//    longer ago than a bound (a week, the usual lifecycle rule) are aborted too: whoever
//    started them (a killed git-annex, a gateway whose journal was lost) will not finish.
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { AbortMultipartUploadCommand, ListMultipartUploadsCommand, type S3Client } from '@aws-sdk/client-s3'
import { tryParseKey } from '../../keys/key.js'
import type { Logger } from '../remote.js'

/** Uploads started longer ago than this under an annex object name are abandoned. */
export const ABANDONED_AFTER_MS = 7 * 24 * 3600 * 1000

/** How often a running gateway looks for abandoned uploads. */
export const SWEEP_INTERVAL_MS = 6 * 3600 * 1000

interface Entry {
  readonly bucket: string
  readonly key: string
  readonly uploadId: string
  readonly pid: number
  /** ms since the epoch. */
  readonly started: number
}

/** This process's start, to tell its own entries from those of a dead process with the same pid. */
const processStarted = Date.now() - process.uptime() * 1000

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** The multipart uploads of one S3 remote that this gateway has in progress, on disk. */
export class MultipartJournal {
  constructor(
    /** `.git/annex/annex-proxy/multipart/<remote uuid>` */
    readonly dir: string,
  ) {}

  private file(bucket: string, key: string, uploadId: string): string {
    return join(this.dir, createHash('sha256').update(`${bucket}\0${key}\0${uploadId}`).digest('hex').slice(0, 40))
  }

  /** Writes the upload down (atomically) before any part is sent. */
  async begin(bucket: string, key: string, uploadId: string): Promise<void> {
    const entry: Entry = { bucket, key, uploadId, pid: process.pid, started: Date.now() }
    await mkdir(this.dir, { recursive: true })
    const file = this.file(bucket, key, uploadId)
    const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
    await writeFile(tmp, JSON.stringify(entry))
    await rename(tmp, file)
  }

  /** Crosses the upload out: completed, or aborted. */
  async end(bucket: string, key: string, uploadId: string): Promise<void> {
    await rm(this.file(bucket, key, uploadId), { force: true })
  }

  /** Entries left by processes that are gone. Unreadable entries (a crash while writing) are removed. */
  async orphans(): Promise<(Entry & { readonly file: string })[]> {
    const names = await readdir(this.dir).catch(() => [] as string[])
    const out: (Entry & { readonly file: string })[] = []
    for (const name of names) {
      const file = join(this.dir, name)
      if (name.endsWith('.tmp')) {
        // Left by a process that died before the rename: no part was sent under it yet
        // (the bucket sweep covers that upload).
        const pid = Number(/\.(\d+)\.[0-9a-f]+\.tmp$/.exec(name)?.[1])
        if (!(pid > 0 && alive(pid))) await rm(file, { force: true })
        continue
      }
      let e: Entry
      try {
        e = JSON.parse(await readFile(file, 'utf8')) as Entry
        if (typeof e.uploadId !== 'string' || typeof e.key !== 'string' || typeof e.bucket !== 'string' || typeof e.pid !== 'number') throw new Error('bad entry')
      } catch {
        await rm(file, { force: true })
        continue
      }
      const ours = e.pid === process.pid && e.started >= processStarted
      if (!ours && !(e.pid !== process.pid && alive(e.pid))) out.push({ ...e, file })
    }
    return out
  }
}

export interface SweepTarget {
  readonly client: S3Client
  readonly bucket: string
  readonly fileprefix: string
  /** exporttree annexobjects remote: objects live under `<fileprefix>.git/annex/objects/`. */
  readonly annexObjects: boolean
  readonly journal: MultipartJournal
}

type SdkError = Error & { $metadata?: { httpStatusCode?: number } }
const gone = (e: unknown) => (e as SdkError).$metadata?.httpStatusCode === 404 || (e as SdkError).name === 'NoSuchUpload'

/** Whether `name` is what git-annex (and annex-proxy) call an object of this remote. */
export function isAnnexObjectName(name: string, fileprefix: string, annexObjects: boolean): boolean {
  if (!name.startsWith(fileprefix)) return false
  const rest = name.slice(fileprefix.length)
  if (annexObjects) return /^\.git\/annex\/objects\/[0-9a-f]{3}\/[0-9a-f]{3}\/[^/]+\/[^/]+$/.test(rest)
  return !rest.includes('/') && tryParseKey(rest) !== undefined
}

export interface SweepResult {
  /** Uploads of dead gateway processes that were aborted. */
  readonly orphans: number
  /** Uploads older than the bound that were aborted. */
  readonly abandoned: number
}

/**
 * Aborts this gateway's orphaned uploads, then every upload under an annex object name
 * started before `now - abandonedAfterMs`. Failures are logged and left for the next sweep.
 */
export async function sweepOrphanedUploads(
  t: SweepTarget,
  opts: { readonly log?: Logger; readonly signal?: AbortSignal; readonly now?: number; readonly abandonedAfterMs?: number } = {},
): Promise<SweepResult> {
  const signal = opts.signal ?? AbortSignal.timeout(600_000)
  const abort = async (Key: string, UploadId: string): Promise<boolean> => {
    try {
      await t.client.send(new AbortMultipartUploadCommand({ Bucket: t.bucket, Key, UploadId }), { abortSignal: signal })
      return true
    } catch (e) {
      if (gone(e)) return true
      opts.log?.warn({ bucket: t.bucket, key: Key, uploadId: UploadId, err: (e as Error).message }, 'could not abort an orphaned multipart upload; the next sweep tries again')
      return false
    }
  }
  let orphans = 0
  for (const e of await t.journal.orphans()) {
    if (e.bucket !== t.bucket) continue
    if (await abort(e.key, e.uploadId)) {
      await rm(e.file, { force: true })
      orphans++
    }
  }
  const before = (opts.now ?? Date.now()) - (opts.abandonedAfterMs ?? ABANDONED_AFTER_MS)
  let abandoned = 0
  let KeyMarker: string | undefined
  let UploadIdMarker: string | undefined
  for (;;) {
    const r = await t.client.send(
      new ListMultipartUploadsCommand({ Bucket: t.bucket, ...(t.fileprefix ? { Prefix: t.fileprefix } : {}), ...(KeyMarker ? { KeyMarker } : {}), ...(UploadIdMarker ? { UploadIdMarker } : {}) }),
      { abortSignal: signal },
    )
    for (const u of r.Uploads ?? []) {
      if (!u.Key || !u.UploadId || !u.Initiated) continue
      if (u.Initiated.getTime() >= before || !isAnnexObjectName(u.Key, t.fileprefix, t.annexObjects)) continue
      if (await abort(u.Key, u.UploadId)) abandoned++
    }
    if (!r.IsTruncated || (!r.NextKeyMarker && !r.NextUploadIdMarker)) break
    KeyMarker = r.NextKeyMarker
    UploadIdMarker = r.NextUploadIdMarker
  }
  if (orphans + abandoned > 0) opts.log?.info({ bucket: t.bucket, orphans, abandoned }, 'aborted multipart uploads nobody will complete')
  return { orphans, abandoned }
}
