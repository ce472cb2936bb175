// The sink of an upload into .git/annex/tmp: every chunk is fed to the verifier and
// then written at its position; final() fsyncs and only then ends the verifier, whose
// flush decides (length and digest). So a failed verification still leaves every
// received byte on disk: a short body is resumable from exactly where it stopped, as
// with git-annex, whose tmp file holds all bytes that arrived. Nothing here commits:
// the owner renames the file into the object store after the pipeline succeeded.
//
// Writes are batched by size: chunks gather until WRITE_BATCH bytes (or WRITE_IDLE_MS
// without reaching it, or the end) and go out as one positioned writev; while one is on
// the disk, the chunks that arrive meanwhile queue up to the window (WRITE_WINDOW). A
// socket delivers an upload in pieces of a few bytes to 64 KiB; one pwrite, one
// thread-pool round trip and one promise each made the write path the largest CPU cost of
// a server receiving 8×64 MiB (node --cpu-prof: writeBuffer 16-26 % of the server's
// samples, 16 000+ writes per 512 MiB). Batching only while a write was in flight left a
// sink that outran its sender (a cluster node behind a git-annex client sending 32 KiB
// chunks) writing nearly every piece on its own; gathering by size does not depend on
// who is faster. The idle flush puts a stalled sender's prefix on disk (resume) within
// WRITE_IDLE_MS; a sink destroyed meanwhile drops at most those gathered bytes, which a
// resume then sends again.
//
// Writeback overlaps the transfer: every SYNC_AHEAD bytes written, a datasync of what is
// on the file so far starts in the background (one at a time; writes go on beside it), so
// the fsync in final() finds only the tail dirty. Without it the kernel (dirty_background
// at 10 % of memory) held every upload's pages until that fsync: a 64 MiB file's answer
// waited for its whole writeback, behind the other streams' writebacks on the same disk.
// A background failure is kept and final() fails with it: fsync reports an error once per
// open file, so the last fsync alone could succeed after an earlier one lost pages.
//
// It never closes the handle: the owner closes it before renaming. (A FileHandle's
// own write stream with autoClose off keeps the handle referenced: close() would
// wait forever.)
import type { FileHandle } from 'node:fs/promises'
import { finished } from 'node:stream/promises'
import { Writable, type Transform } from 'node:stream'

/** Bytes queued while a write is on the disk: the upstream waits beyond them. */
export const WRITE_WINDOW = 1024 * 1024
/** Bytes gathered before a write is issued. Memory per sink: at most this + the window + one chunk. */
export const WRITE_BATCH = 512 * 1024
/** Gathered bytes short of a batch are written after this long without it filling. */
export const WRITE_IDLE_MS = 20
/** Bytes written between two background datasyncs. */
export const SYNC_AHEAD = 8 * 1024 * 1024

export class TmpFileSink extends Writable {
  private position: number
  /** An I/O failure of the tmp file itself (as opposed to bad or missing data). */
  ioError: Error | undefined
  /** Verified chunks not yet handed to the disk. */
  private gathered: Buffer[] = []
  private gatheredBytes = 0
  private idle: NodeJS.Timeout | undefined
  /** The writes issued so far, in order; settles when the last one did. */
  private written: Promise<void> = Promise.resolve()
  /** Bytes written since the last background datasync started. */
  private unsynced = 0
  /** The background datasync in flight; never rejects (its failure lands in ioError). */
  private syncing: Promise<void> | undefined

  constructor(
    private readonly fh: FileHandle,
    start: number,
    private readonly verifier: Transform,
    window: number = WRITE_WINDOW,
    private readonly batch: number = WRITE_BATCH,
    private readonly syncAhead: number = SYNC_AHEAD,
  ) {
    super({ highWaterMark: window })
    this.position = start
    // Its output is the bytes we write ourselves; only its verdict matters, and that
    // arrives through write callbacks and finished(), not as an 'error' event.
    verifier.resume()
    verifier.on('error', () => undefined)
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.take([chunk]).then(() => cb(), cb)
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, cb: (e?: Error | null) => void): void {
    this.take(chunks.map((c) => c.chunk)).then(() => cb(), cb)
  }

  override _final(cb: (e?: Error | null) => void): void {
    this.finish().then(() => cb(), cb)
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    clearTimeout(this.idle)
    this.idle = undefined
    this.verifier.destroy()
    cb(err)
  }

  /** Verifies `chunks`, then gathers them; a full batch is written before more are taken. */
  private async take(chunks: Buffer[]): Promise<void> {
    // The verifier refuses bytes past the key's size before they reach the disk.
    await new Promise<void>((resolve, reject) => {
      let pending = chunks.length
      let failed: Error | undefined
      for (const c of chunks) {
        this.verifier.write(c, (e) => {
          failed ??= e ?? undefined
          if (--pending === 0) (failed ? reject(failed) : resolve())
        })
      }
    })
    for (const c of chunks) {
      this.gathered.push(c)
      this.gatheredBytes += c.length
    }
    if (this.gatheredBytes >= this.batch) return this.flush()
    this.idle ??= setTimeout(() => {
      this.idle = undefined
      this.flush().catch((e: Error) => this.destroy(e))
    }, WRITE_IDLE_MS)
  }

  /** Hands what is gathered to the disk, after the writes before it; settles when it is written. */
  private flush(): Promise<void> {
    clearTimeout(this.idle)
    this.idle = undefined
    const chunks = this.gathered
    if (chunks.length > 0) {
      this.gathered = []
      this.gatheredBytes = 0
      this.written = this.written.then(() => this.writeAll(chunks))
    }
    return this.written
  }

  private async writeAll(chunks: Buffer[]): Promise<void> {
    try {
      let rest = chunks
      while (rest.length > 0) {
        const n = rest.length === 1 ? (await this.fh.write(rest[0]!, 0, rest[0]!.length, this.position)).bytesWritten : (await this.fh.writev(rest, this.position)).bytesWritten
        this.position += n
        this.unsynced += n
        rest = drop(rest, n)
      }
      if (this.unsynced >= this.syncAhead && this.syncing === undefined) this.syncBehind()
    } catch (e) {
      this.ioError = e as Error
      throw e
    }
  }

  /** Starts writing back what is on the file so far; the writes go on meanwhile. */
  private syncBehind(): void {
    this.unsynced = 0
    this.syncing = this.fh.datasync().then(
      () => {
        this.syncing = undefined
      },
      (e: Error) => {
        this.syncing = undefined
        this.ioError ??= e
      },
    )
  }

  private async finish(): Promise<void> {
    await this.flush()
    await this.syncing
    try {
      if (this.ioError) throw this.ioError
      await this.fh.sync()
    } catch (e) {
      this.ioError = e as Error
      throw e
    }
    this.verifier.end()
    await finished(this.verifier)
  }
}

/** What is left of `chunks` after their first `n` bytes. */
function drop(chunks: Buffer[], n: number): Buffer[] {
  let i = 0
  while (i < chunks.length && n >= chunks[i]!.length) n -= chunks[i++]!.length
  if (i === chunks.length) return []
  return n === 0 ? chunks.slice(i) : [chunks[i]!.subarray(n), ...chunks.slice(i + 1)]
}
