// The sink of an upload into .git/annex/tmp: every chunk is fed to the verifier and
// then written at its position; final() fsyncs and only then ends the verifier, whose
// flush decides (length and digest). So a failed verification still leaves every
// received byte on disk: a short body is resumable from exactly where it stopped, as
// with git-annex, whose tmp file holds all bytes that arrived. Nothing here commits:
// the owner renames the file into the object store after the pipeline succeeded.
//
// It never closes the handle: the owner closes it before renaming. (A FileHandle's
// own write stream with autoClose off keeps the handle referenced: close() would
// wait forever.)
import type { FileHandle } from 'node:fs/promises'
import { finished } from 'node:stream/promises'
import { Writable, type Transform } from 'node:stream'

export class TmpFileSink extends Writable {
  private position: number
  /** An I/O failure of the tmp file itself (as opposed to bad or missing data). */
  ioError: Error | undefined

  constructor(
    private readonly fh: FileHandle,
    start: number,
    private readonly verifier: Transform,
  ) {
    super()
    this.position = start
    // Its output is the bytes we write ourselves; only its verdict matters, and that
    // arrives through write callbacks and finished(), not as an 'error' event.
    verifier.resume()
    verifier.on('error', () => undefined)
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.verifyThenWrite(chunk).then(() => cb(), cb)
  }

  override _final(cb: (e?: Error | null) => void): void {
    this.finish().then(() => cb(), cb)
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.verifier.destroy()
    cb(err)
  }

  private async verifyThenWrite(chunk: Buffer): Promise<void> {
    // The verifier refuses bytes past the key's size before they reach the disk.
    await new Promise<void>((resolve, reject) => this.verifier.write(chunk, (e) => (e ? reject(e) : resolve())))
    let off = 0
    try {
      while (off < chunk.length) {
        const { bytesWritten } = await this.fh.write(chunk, off, chunk.length - off, this.position)
        off += bytesWritten
        this.position += bytesWritten
      }
    } catch (e) {
      this.ioError = e as Error
      throw e
    }
  }

  private async finish(): Promise<void> {
    try {
      await this.fh.sync()
    } catch (e) {
      this.ioError = e as Error
      throw e
    }
    this.verifier.end()
    await finished(this.verifier)
  }
}
