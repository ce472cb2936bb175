// Bytes from a P2P peer → lines/messages and DATA payload streams (spec §1.1).
// A `DATA <n>` line is followed by exactly n raw bytes and no newline. A payload is handed
// out as a Readable that pulls from the input only as it is read, so a slow consumer
// slows the peer down (no unbounded buffering); the next line cannot be read before the
// payload has been consumed, and a payload abandoned half-way leaves the stream
// unframeable, so the reader fails for good.
import { Readable } from 'node:stream'
import { PeerClosedError, ProtocolError, RemoteUnavailableError } from '../../errors.js'
import { parse } from './codec.js'
import type { Message } from './messages.js'

/** The reference gives up when this many characters arrive without a newline. */
export const MAX_LINE_CHARS = 32768

const EMPTY = Buffer.alloc(0)
const NL = 10

/** Characters in UTF-8 bytes: every byte that does not continue a sequence starts one. */
function charCount(b: Buffer): number {
  let n = 0
  for (let i = 0; i < b.length; i++) if ((b[i]! & 0xc0) !== 0x80) n++
  return n
}

export interface Frame {
  readonly message: Message
  /** For DATA: its bytes. Consume (or destroy) it before expecting the next frame. */
  readonly payload?: Readable
}

export class FrameReader {
  private readonly it: AsyncIterator<Buffer | string>
  private buf: Buffer = EMPTY
  private eof = false
  private busy: Promise<void> | undefined
  private failure: Error | undefined
  private readonly maxChars: number

  constructor(input: AsyncIterable<Buffer | string>, opts: { maxLineChars?: number } = {}) {
    this.it = input[Symbol.asyncIterator]()
    this.maxChars = opts.maxLineChars ?? MAX_LINE_CHARS
  }

  /** Marks the reader unusable; every later read throws `err`. */
  fail(err: Error): Error {
    this.failure ??= err
    return this.failure
  }

  get failed(): Error | undefined {
    return this.failure
  }

  /** Pulls one more chunk into the buffer; false at end of input. */
  private async pull(): Promise<boolean> {
    if (this.eof) return false
    let r: IteratorResult<Buffer | string>
    try {
      r = await this.it.next()
    } catch (e) {
      throw this.fail(new PeerClosedError(`connection to the peer failed: ${(e as Error).message}`, { cause: e }))
    }
    if (r.done) {
      this.eof = true
      return false
    }
    const chunk = typeof r.value === 'string' ? Buffer.from(r.value) : r.value
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk])
    return true
  }

  /** The next line without its `\n`, or undefined at a clean end of input. */
  async readLine(): Promise<string | undefined> {
    if (this.busy) await this.busy
    if (this.failure) throw this.failure
    let scanned = 0
    for (;;) {
      const i = this.buf.indexOf(NL, scanned)
      if (i >= 0) {
        const line = this.buf.subarray(0, i)
        if (line.length >= this.maxChars && charCount(line) >= this.maxChars) break
        this.buf = this.buf.subarray(i + 1)
        return line.toString('utf8')
      }
      scanned = this.buf.length
      if (this.buf.length >= this.maxChars && charCount(this.buf) >= this.maxChars) break
      if (!(await this.pull())) {
        if (this.buf.length === 0) return undefined
        throw this.fail(new PeerClosedError('the peer closed the connection in the middle of a line'))
      }
    }
    throw this.fail(new ProtocolError(`the peer sent ${this.maxChars} characters without a newline`))
  }

  /** The next message, or undefined at a clean end of input; an unparseable line is a ProtocolError. */
  async readMessage(): Promise<Message | undefined> {
    const line = await this.readLine()
    if (line === undefined) return undefined
    const m = parse(line)
    if (!m) throw this.fail(new ProtocolError(`unparseable line from the peer: ${JSON.stringify(line.slice(0, 200))}`))
    return m
  }

  /**
   * The `n` raw bytes following a DATA header, as a stream that reads from the input only
   * as it is consumed. It errors with PeerClosedError if the input ends first.
   */
  payload(n: number): Readable {
    if (this.failure) return Readable.from([]).destroy(this.failure) as Readable
    if (this.busy) throw new Error('FrameReader: the previous payload has not been consumed')
    if (n === 0) return Readable.from([], { objectMode: false })
    let left = n
    let release!: () => void
    this.busy = new Promise<void>((r) => (release = r)).then(() => {
      this.busy = undefined
    })
    const reader = this
    return new Readable({
      read() {
        void (async () => {
          if (reader.buf.length === 0 && !(await reader.pull())) {
            throw reader.fail(new PeerClosedError(`the peer closed the connection with ${left} of ${n} DATA bytes unsent`))
          }
          const take = Math.min(left, reader.buf.length)
          const part = reader.buf.subarray(0, take)
          reader.buf = reader.buf.subarray(take)
          left -= take
          this.push(part)
          if (left === 0) this.push(null)
        })().catch((e: Error) => this.destroy(e))
      },
      destroy(err, cb) {
        if (left > 0) {
          const why = err instanceof RemoteUnavailableError ? err : new PeerClosedError(`a DATA payload was abandoned with ${left} of ${n} bytes unread`, { cause: err ?? undefined })
          reader.fail(why)
        }
        release()
        cb(err)
      },
    })
  }

  /** Messages in order; a DATA frame carries its payload, which must be consumed before the loop goes on. */
  async *frames(): AsyncGenerator<Frame, void, undefined> {
    for (;;) {
      const message = await this.readMessage()
      if (!message) return
      if (message.type === 'DATA') {
        const payload = this.payload(message.length)
        yield { message, payload }
      } else yield { message }
    }
  }
}
