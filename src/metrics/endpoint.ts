// --metrics-port: /metrics on a listener of its own, so scrapes never queue behind transfers
// and the port can be firewalled apart from the data port.
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { ServerMetrics } from './metrics.js'

export interface MetricsListener {
  readonly port: number
  close(): Promise<void>
}

export async function listenMetrics(metrics: ServerMetrics, bind: string, port: number): Promise<MetricsListener> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]
    if (req.method !== 'GET' || path !== '/metrics') {
      res.writeHead(404).end()
      return
    }
    metrics.text().then(
      (text) => res.writeHead(200, { 'content-type': metrics.contentType }).end(text),
      (e: unknown) => res.writeHead(500).end(String(e)),
    )
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, bind, () => resolve())
  })
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
