// The transfer loop of `annex-proxy upload`: -J workers take files in order; each computes the
// file's key (hashing off the event loop), asks the server for its offset (putoffset: ALREADY-HAVE
// skips the file, an offset resumes a partial upload) and streams the rest. The server verifies
// the whole content against the key before it commits anything, so a file changed between
// hashing and sending is refused there and reported here, and the run goes on.
//
// Keys of the files next in line are hashed ahead (HASH_AHEAD per job, only files hashed from
// disk, so no memory is held for them): a job that finished a send starts the next one at once
// instead of first reading a whole file for its key. Without it each wave of -J sends waited
// for its files' hashing (8×64 MiB at -J4: the second wave started ~0.3 s after the first ended).
import { createReadStream } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import { Readable, Transform } from 'node:stream'
import { AbortedError, OverloadedError, RemoteUnavailableError, StalledError } from '../errors.js'
import { createHasher, type HasherKind } from '../keys/backend.js'
import { serializeKey, type Key } from '../keys/key.js'
import type { P2PHttpClient } from '../protocol/http/client.js'
import type { SourceFile } from './files.js'
import type { Digest, HashPool } from './hash-pool.js'
import { keyOf, type ExtensionRules, type UploadBackend } from './key-of.js'
import { FileChangedError } from '../errors.js'

export type Outcome = 'stored' | 'present' | 'failed'

export interface FileResult {
  readonly file: string
  readonly key: string | undefined
  /** Bytes sent in this run (0 when the server already had the content). */
  readonly bytes: number
  readonly size: number
  /** Where the send started: > 0 when a partial upload was resumed. */
  readonly offset: number
  readonly seconds: number
  readonly result: Outcome
  /** Repositories the server reported now holding the content (cluster nodes), besides the target. */
  readonly plusuuids: readonly string[]
  readonly error?: string
}

export interface UploadEvents {
  /** A file's transfer began (after its key is known). */
  start?(file: SourceFile, key: Key, offset: number): void
  /** `n` more bytes of `file` went out. */
  progress?(file: SourceFile, n: number): void
  done?(r: FileResult): void
}

export interface UploaderOptions {
  readonly client: P2PHttpClient
  readonly uuid: string
  readonly backend: UploadBackend
  readonly extensionRules: ExtensionRules
  readonly hashes: HashPool
  readonly hasher: HasherKind
  readonly jobs: number
  /** Files up to this size are read once, into memory, for both their key and their send. */
  readonly readAhead: number
  readonly signal: AbortSignal
  readonly events?: UploadEvents
  /** Attempts per file on 503, a lost connection or a stall (default 4). */
  readonly attempts?: number
  /** A request that moves no byte and gets no answer for this long is abandoned and retried (default 120 s). */
  readonly stallMs?: number
}

/** Files up to this size are hashed on the event loop: a worker round trip costs more. */
const INLINE_HASH_MAX = 64 * 1024
const SEND_BLOCK = 1024 * 1024
/** Files hashed ahead of the jobs, per job. */
const HASH_AHEAD = 1

/** Uploads every file; resolves with one result per file, in the order they finished. */
export async function uploadFiles(files: readonly SourceFile[], o: UploaderOptions): Promise<FileResult[]> {
  const results: FileResult[] = []
  const jobs = Math.max(1, Math.min(o.jobs, files.length))
  // Digests started ahead, by file index; taken (deleted) by the job that sends the file.
  const ahead = new Map<number, Promise<Digest>>()
  let hashedTo = 0
  let next = 0
  const hashAhead = () => {
    while (hashedTo < Math.min(files.length, next + jobs * HASH_AHEAD) && !o.signal.aborted) {
      const i = hashedTo++
      const f = files[i]!
      if (f.size <= o.readAhead) continue
      const d = o.hashes.hashFile(f.path)
      // Its failure is reported by the job that takes it; one never taken (abort) is dropped.
      d.catch(() => undefined)
      ahead.set(i, d)
    }
  }
  const worker = async () => {
    while (next < files.length && !o.signal.aborted) {
      const i = next++
      const f = files[i]!
      // Started in file order, the jobs' own files first: a pool worker hashes in order.
      hashAhead()
      const hashed = ahead.get(i)
      ahead.delete(i)
      const r = await uploadOne(f, o, hashed)
      results.push(r)
      o.events?.done?.(r)
    }
  }
  await Promise.all(Array.from({ length: jobs }, worker))
  return results
}

/** `hashed`: the file's digest when it was started ahead. */
async function uploadOne(f: SourceFile, o: UploaderOptions, hashed?: Promise<Digest>): Promise<FileResult> {
  const t0 = performance.now()
  let key: Key | undefined
  let sent = 0
  let offset = 0
  let size = f.size
  const result = (outcome: Outcome, plusuuids: readonly string[], error?: string): FileResult => ({
    file: f.name,
    key: key && serializeKey(key),
    bytes: sent,
    size,
    offset,
    seconds: (performance.now() - t0) / 1000,
    result: outcome,
    plusuuids,
    ...(error !== undefined ? { error } : {}),
  })
  try {
    let data: Buffer | undefined
    let hex: string
    let mtimeMs: number
    if (f.size <= o.readAhead) {
      const st = await stat(f.path)
      data = await readFile(f.path)
      mtimeMs = st.mtimeMs
      if (data.length <= INLINE_HASH_MAX) {
        const h = await createHasher(o.backend.algorithm, o.hasher)
        h.update(data)
        hex = h.digest()
      } else {
        hex = (await o.hashes.hashBytes(data)).hex
      }
      size = data.length
    } else {
      const d = await (hashed ?? o.hashes.hashFile(f.path))
      hex = d.hex
      size = d.size
      mtimeMs = d.mtimeMs
    }
    key = keyOf(o.backend, size, hex, f.name, o.extensionRules)
    const attempts = o.attempts ?? 4
    for (let attempt = 1; ; attempt++) {
      // One signal per attempt: the run's abort, or this attempt stalling (no byte out and no
      // answer for stallMs; the reference server sometimes stops answering, spec §9.19).
      const attemptAc = new AbortController()
      const onRunAbort = () => attemptAc.abort(o.signal.reason)
      o.signal.addEventListener('abort', onRunAbort, { once: true })
      const stallMs = o.stallMs ?? 120_000
      const watchdog = setTimeout(() => attemptAc.abort(new StalledError(`no progress for ${stallMs / 1000} s`)), stallMs)
      const signal = attemptAc.signal
      try {
        const po = await o.client.putOffset(o.uuid, key, { signal })
        watchdog.refresh()
        if (po.kind === 'alreadyhave') return result('present', po.plusUuids)
        offset = po.offset
        if (offset > size) offset = 0
        o.events?.start?.(f, key, offset)
        const counter = new Transform({
          transform(chunk: Buffer, _enc, cb) {
            sent += chunk.length
            watchdog.refresh()
            o.events?.progress?.(f, chunk.length)
            cb(null, chunk)
          },
        })
        const source: Readable =
          data !== undefined
            ? Readable.from([data.subarray(offset)], { objectMode: false })
            : size > offset
              ? createReadStream(f.path, { start: offset, end: size - 1, highWaterMark: SEND_BLOCK })
              : Readable.from([], { objectMode: false })
        source.on('error', (e) => counter.destroy(e))
        const body = source.pipe(counter)
        const r = await o.client.put(o.uuid, key, body, { signal, offset, length: size - offset, associatedFile: f.name })
        if (r.stored) {
          if (data === undefined) await unchanged(f.path, size, mtimeMs)
          return result('stored', r.plusUuids)
        }
        if (!(await isUnchanged(f.path, size, mtimeMs))) throw new FileChangedError('changed while being uploaded: the server refused content that no longer matches its key')
        return result('failed', r.plusUuids, 'the server did not store it (its verification refused the content, or no repository would take it)')
      } catch (e) {
        if (o.signal.aborted) throw new AbortedError('interrupted', { cause: e })
        const stalled = signal.aborted ? (signal.reason as Error) : undefined
        const retriable = stalled !== undefined || e instanceof OverloadedError || e instanceof RemoteUnavailableError
        if (attempt >= attempts || !retriable) throw stalled ?? e
        await new Promise((r) => setTimeout(r, 250 * 2 ** attempt))
      } finally {
        clearTimeout(watchdog)
        o.signal.removeEventListener('abort', onRunAbort)
      }
    }
  } catch (e) {
    const msg = o.signal.aborted ? 'interrupted' : e instanceof Error ? e.message : String(e)
    return result('failed', [], msg)
  }
}

async function isUnchanged(path: string, size: number, mtimeMs: number): Promise<boolean> {
  try {
    const st = await stat(path)
    return st.size === size && st.mtimeMs === mtimeMs
  } catch {
    return false
  }
}

/**
 * The server stored what it verified, so that content is safe under its key; but the file no
 * longer is that content, and saying "stored" for it would mislead.
 */
async function unchanged(path: string, size: number, mtimeMs: number): Promise<void> {
  if (!(await isUnchanged(path, size, mtimeMs))) throw new FileChangedError('changed while being uploaded: the content of its key as first read was stored, not the file as it is now')
}
