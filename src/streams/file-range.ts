// Reads a byte range of an open file in large blocks and hands it on in small chunks.
//
// Each read of a file goes through libuv's thread pool: a hand-off to a worker and a wake-up
// of the event loop, 5 futex calls and an eventfd round trip per read (strace -c of a 2 GiB
// GET at 32 KiB reads: 325 000 futex calls, 65 536 pread64), which cost more server CPU than
// the bytes themselves. Reading a large block amortises that. The chunks handed on stay
// small because what the socket is given per write decides how the client's TCP receive
// window grows (bench/HISTORY.md, "cluster-get-read-size"): a downstream pipe writes one
// chunk, waits for it to drain, then the next.
import type { FileHandle } from 'node:fs/promises'
import { Readable } from 'node:stream'

export interface FileRangeOptions {
  /** First byte to read. */
  readonly start: number
  /** One past the last byte to read; fewer bytes are read when the file is shorter. */
  readonly end: number
  /** Bytes per read of the file. */
  readonly readBytes: number
  /** Bytes per chunk handed on (the last chunk of a block may be shorter). */
  readonly chunkBytes: number
}

/**
 * A Readable over [start, end) of `fh`, which it owns: closed when the stream ends or is
 * destroyed, after any read in flight (FileHandle.close waits for its own operations, so a
 * destroy mid-read never closes a descriptor a worker is still reading). The next block is
 * read while the current one is handed on, chunk by chunk as the consumer asks, so a
 * consumer in paused mode (read(), async iteration) gets small chunks too. Memory: two
 * blocks (the one handed on and the one read ahead).
 */
export class FileRangeReadable extends Readable {
  /** Bytes read from the file so far (as fs.ReadStream's). */
  bytesRead = 0
  /** Where the next block read starts. */
  private pos: number
  private readonly opts: FileRangeOptions
  private block: Buffer | undefined
  private blockOff = 0
  private ahead: Promise<Buffer | null> | undefined
  private waiting = false

  constructor(
    private readonly fh: FileHandle,
    opts: FileRangeOptions,
  ) {
    if (!(opts.readBytes > 0 && opts.chunkBytes > 0 && opts.start >= 0 && opts.end >= opts.start)) {
      throw new RangeError(`bad file range ${JSON.stringify(opts)}`)
    }
    super({ highWaterMark: opts.chunkBytes })
    this.opts = opts
    this.pos = opts.start
  }

  /** The next block, or null past the end (or once the file turned out shorter). */
  private readBlock(): Promise<Buffer | null> {
    const want = Math.min(this.opts.readBytes, this.opts.end - this.pos)
    if (want <= 0) return Promise.resolve(null)
    const at = this.pos
    this.pos += want
    // A fresh buffer per block: the chunks handed on may still sit in a socket's queue.
    const buf = Buffer.allocUnsafeSlow(want)
    const p = this.fh.read(buf, 0, want, at).then(({ bytesRead: n }) => {
      this.bytesRead += n
      // The file shrank: no more reads; the reader compares bytesRead with what it expected.
      if (n < want) this.pos = this.opts.end
      return n === 0 ? null : buf.subarray(0, n)
    })
    // A block read ahead and never asked for (destroyed first) must not reject unhandled.
    p.catch(() => undefined)
    return p
  }

  override _read(): void {
    for (;;) {
      const block = this.block
      if (block && this.blockOff < block.length) {
        const to = Math.min(block.length, this.blockOff + this.opts.chunkBytes)
        const chunk = block.subarray(this.blockOff, to)
        this.blockOff = to
        if (!this.push(chunk)) return
        continue
      }
      if (this.waiting) return
      this.block = undefined
      const next = this.ahead ?? this.readBlock()
      this.ahead = undefined
      this.waiting = true
      next.then(
        (buf) => {
          this.waiting = false
          if (this.destroyed) return
          if (buf === null) {
            this.push(null)
            return
          }
          this.block = buf
          this.blockOff = 0
          this.ahead = this.readBlock()
          this._read()
        },
        (err: Error) => this.destroy(err),
      )
      return
    }
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    this.fh.close().then(
      () => cb(err),
      (closeErr: Error) => cb(err ?? closeErr),
    )
  }
}
