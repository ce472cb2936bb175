// A TCP relay on 127.0.0.1 that limits client→server throughput and remembers the
// request lines it saw, so a test can interrupt an upload at a known point.
import * as net from 'node:net'
import { Transform, type TransformCallback, pipeline } from 'node:stream'
import { type After, defer } from './annex.js'

export interface ThrottleProxy {
  readonly port: number
  /** Request lines (e.g. `POST /git-annex/…/v4/put?…`) in the order seen. */
  readonly requests: string[]
  close(): Promise<void>
}

function throttle(bytesPerSecond: number): Transform {
  const started = Date.now()
  let sent = 0
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      sent += chunk.length
      const due = started + (sent / bytesPerSecond) * 1000
      const wait = due - Date.now()
      if (wait > 0) setTimeout(() => cb(null, chunk), wait)
      else cb(null, chunk)
    },
  })
}

function sniff(requests: string[]): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      // Request lines start a chunk in practice; a regex over its head is enough for tests.
      const head = chunk.subarray(0, 4096).toString('latin1')
      for (const m of head.matchAll(/(?:^|\r\n)((?:GET|POST|HEAD) \/\S+) HTTP\/1\.1/g)) requests.push(m[1]!)
      cb(null, chunk)
    },
  })
}

export async function startThrottleProxy(t: After, targetPort: number, bytesPerSecond: number): Promise<ThrottleProxy> {
  const requests: string[] = []
  const sockets = new Set<net.Socket>()
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1')
    sockets.add(client).add(upstream)
    const done = () => {
      client.destroy()
      upstream.destroy()
    }
    pipeline(client, sniff(requests), throttle(bytesPerSecond), upstream, done)
    pipeline(upstream, client, done)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  const close = async () => {
    for (const s of sockets) s.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
  defer(t, close)
  return { port, requests, close }
}
