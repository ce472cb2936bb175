// An HTTP proxy in front of a real S3 server that injects faults: S3 error answers
// (500 InternalError, 503 SlowDown, …) and connections cut mid-request, chosen per request
// by a rule. Everything else is passed through unchanged (Host included, so SigV4
// signatures made for the proxy's address verify at the server). Listens on 127.0.0.1:0.
import { createServer, request, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { After } from './annex.js'
import { defer } from './annex.js'

export type Fault =
  | { readonly kind: 'pass' }
  /** An S3 error document with this status and code (e.g. 503 SlowDown, 500 InternalError). */
  | { readonly kind: 'error'; readonly status: number; readonly code: string }
  /** The connection is cut after `afterBytes` bytes of the request body arrived (no answer). */
  | { readonly kind: 'cut'; readonly afterBytes: number }

export interface RequestInfo {
  readonly method: string
  /** Path and query as sent. */
  readonly url: string
  /** The S3 operation, roughly: PutObject, UploadPart, CreateMultipartUpload, CompleteMultipartUpload, AbortMultipartUpload, GetObject, HeadObject, DeleteObject, other. */
  readonly op: string
  /** Requests of this op seen so far, this one included (1-based). */
  readonly nth: number
}

export interface FaultProxy {
  readonly port: number
  readonly endpoint: string
  /** Replaces the rule deciding each request's fate. */
  rule(r: (req: RequestInfo) => Fault): void
  /** Faults injected so far, as `op:kind`. */
  readonly injected: string[]
  /** Requests seen per op. */
  readonly seen: Map<string, number>
  /** The most requests of each op open at once (from its arrival until its answer closed). */
  readonly peak: Map<string, number>
  close(): Promise<void>
}

function opOf(req: IncomingMessage): string {
  const u = new URL(req.url ?? '/', 'http://x')
  const q = u.searchParams
  const m = req.method ?? 'GET'
  if (m === 'PUT' && q.has('partNumber') && q.has('uploadId')) return 'UploadPart'
  if (m === 'PUT') return 'PutObject'
  if (m === 'POST' && q.has('uploads')) return 'CreateMultipartUpload'
  if (m === 'POST' && q.has('uploadId')) return 'CompleteMultipartUpload'
  if (m === 'DELETE' && q.has('uploadId')) return 'AbortMultipartUpload'
  if (m === 'DELETE') return 'DeleteObject'
  if (m === 'GET' && q.has('uploads')) return 'ListMultipartUploads'
  if (m === 'GET') return 'GetObject'
  if (m === 'HEAD') return 'HeadObject'
  return 'other'
}

export async function startFaultProxy(t: After, targetPort: number): Promise<FaultProxy> {
  let decide: (req: RequestInfo) => Fault = () => ({ kind: 'pass' })
  const injected: string[] = []
  const seen = new Map<string, number>()
  const open = new Map<string, number>()
  const peak = new Map<string, number>()
  const server: Server = createServer((req, res) => {
    const op = opOf(req)
    const nth = (seen.get(op) ?? 0) + 1
    seen.set(op, nth)
    const now = (open.get(op) ?? 0) + 1
    open.set(op, now)
    peak.set(op, Math.max(peak.get(op) ?? 0, now))
    res.once('close', () => open.set(op, open.get(op)! - 1))
    const fault = decide({ method: req.method ?? 'GET', url: req.url ?? '/', op, nth })
    if (fault.kind === 'error') {
      injected.push(`${op}:${fault.status} ${fault.code}`)
      // Read the body away first, as a server does before answering.
      req.resume()
      req.once('end', () => {
        const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${fault.code}</Code><Message>injected by the test fault proxy</Message><RequestId>fault</RequestId></Error>`
        res.writeHead(fault.status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) })
        res.end(body)
      })
      return
    }
    if (fault.kind === 'cut') {
      injected.push(`${op}:cut`)
      let got = 0
      const cut = () => {
        req.socket.destroy()
      }
      if (fault.afterBytes <= 0) return cut()
      req.on('data', (d: Buffer) => {
        got += d.length
        if (got >= fault.afterBytes) cut()
      })
      req.once('end', cut)
      return
    }
    const up = request(
      { host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers: req.headers },
      (ures) => {
        res.writeHead(ures.statusCode ?? 502, ures.headers)
        ures.pipe(res)
        ures.once('error', () => res.destroy())
      },
    )
    up.once('error', () => res.destroy())
    req.pipe(up)
    req.once('error', () => up.destroy())
    res.once('close', () => {
      if (!res.writableFinished) up.destroy()
    })
  })
  server.keepAliveTimeout = 5_000
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  const close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  defer(t, close)
  return {
    port,
    endpoint: `http://127.0.0.1:${port}`,
    rule(r) {
      decide = r
    },
    injected,
    seen,
    peak,
    close,
  }
}
