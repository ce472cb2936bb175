// Newline-framed input (keeplocked bodies, spec §2.6) read with a bound: each chunk is
// searched once, a pending line is kept as the chunks that make it up (never re-joined
// per chunk), and a line longer than the limit ends the reading there.

export type LineEvent = { readonly kind: 'line'; readonly text: string } | { readonly kind: 'too-long' }

/**
 * Yields each complete line of `source` (without its `\n`), then the unterminated rest if
 * any. A line that grows past `limit` bytes yields `too-long` and stops: nothing more is
 * read from `source`, and at most `limit` bytes plus one chunk were ever held.
 */
export async function* boundedLines(source: AsyncIterable<Uint8Array>, limit: number): AsyncGenerator<LineEvent> {
  let pending: Buffer[] = []
  let pendingBytes = 0
  for await (const chunk of source) {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
    let start = 0
    for (let nl = buf.indexOf(10, start); nl >= 0; nl = buf.indexOf(10, start)) {
      if (pendingBytes + (nl - start) > limit) {
        yield { kind: 'too-long' }
        return
      }
      pending.push(buf.subarray(start, nl))
      const text = Buffer.concat(pending).toString('utf8')
      pending = []
      pendingBytes = 0
      start = nl + 1
      yield { kind: 'line', text }
    }
    if (start < buf.length) {
      pendingBytes += buf.length - start
      if (pendingBytes > limit) {
        yield { kind: 'too-long' }
        return
      }
      pending.push(buf.subarray(start))
    }
  }
  if (pendingBytes > 0) yield { kind: 'line', text: Buffer.concat(pending).toString('utf8') }
}
