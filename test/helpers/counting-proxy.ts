// A TCP relay on 127.0.0.1 that counts the bytes a server sends back and remembers the
// request lines it saw, optionally slowing the server→client direction: what a test
// needs to tell how much a gateway fetched from a remote, or to interrupt a download
// (or, slowing the client→server direction, an upload).
import * as net from 'node:net'
import { Transform, type TransformCallback, pipeline } from 'node:stream'
import { type After, defer } from './annex.js'

export interface CountingProxy {
  readonly port: number
  /** Request lines (`GET /bucket/key …`) in the order seen. */
  readonly requests: string[]
  /** Bytes the server sent towards clients so far (headers included). */
  readonly downBytes: number
  /** Relayed connections that have ended (either side closed). */
  readonly closedConnections: number
  close(): Promise<void>
}

function sniff(requests: string[]): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      // Request lines start a chunk in practice; a regex over its head is enough for tests.
      const head = chunk.subarray(0, 4096).toString('latin1')
      for (const m of head.matchAll(/(?:^|\r\n)((?:GET|POST|PUT|HEAD|DELETE) \/\S*) HTTP\/1\.1/g)) requests.push(m[1]!)
      cb(null, chunk)
    },
  })
}

function meter(onBytes: (n: number) => void, bytesPerSecond: number | undefined): Transform {
  const started = Date.now()
  let sent = 0
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      sent += chunk.length
      onBytes(chunk.length)
      const wait = bytesPerSecond === undefined ? 0 : started + (sent / bytesPerSecond) * 1000 - Date.now()
      if (wait > 0) setTimeout(() => cb(null, chunk), wait)
      else cb(null, chunk)
    },
  })
}

export async function startCountingProxy(t: After, targetPort: number, opts: { downBytesPerSecond?: number; upBytesPerSecond?: number } = {}): Promise<CountingProxy> {
  const requests: string[] = []
  let down = 0
  let ended = 0
  const sockets = new Set<net.Socket>()
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1')
    sockets.add(client).add(upstream)
    let counted = false
    const done = () => {
      if (!counted) ended++
      counted = true
      client.destroy()
      upstream.destroy()
      sockets.delete(client)
      sockets.delete(upstream)
    }
    pipeline(client, sniff(requests), meter(() => undefined, opts.upBytesPerSecond), upstream, done)
    pipeline(upstream, meter((n) => (down += n), opts.downBytesPerSecond), client, done)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  let closed: Promise<void> | undefined
  const close = () =>
    (closed ??= (async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    })())
  defer(t, close)
  return {
    port,
    requests,
    get downBytes() {
      return down
    },
    get closedConnections() {
      return ended
    },
    close,
  }
}
