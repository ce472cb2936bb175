// A real redis-server for tests (Debian's, installed by scripts/test-deps/20-redis.sh): on
// a unix socket in a temp directory (`--port 0` turns TCP off), so no port is picked and
// no other process can be reached by mistake. Stopped (and its directory removed) after
// the test.
import { spawn, type ChildProcess } from 'node:child_process'
import * as net from 'node:net'
import { join } from 'node:path'
import { defer, stopChild, tempDir, type After } from './annex.js'
import { waitUntil } from './wait.js'

export interface RedisServer {
  /** unix:///…/redis.sock, as --redis takes it. */
  readonly url: string
  readonly socket: string
  readonly child: ChildProcess
  /** Stops the server (SIGTERM, then SIGKILL after 10 s). */
  stop(): Promise<void>
  /** Starts it again on the same socket (empty: nothing is saved). */
  restart(): Promise<void>
}

async function waitForSocket(path: string, child: ChildProcess, timeoutMs: number, output: () => string): Promise<void> {
  await waitUntil(`redis-server to listen on ${path}`, timeoutMs, async () => {
    if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}: ${output()}`)
    return new Promise<boolean>((resolve) => {
      const s = net.connect(path)
      s.once('connect', () => {
        s.destroy()
        resolve(true)
      })
      s.once('error', () => resolve(false))
    })
  }, 20).catch((e: Error) => {
    throw child.exitCode === null ? new Error(`${e.message}: ${output()}`) : e
  })
}

export async function startRedis(t: After): Promise<RedisServer> {
  const dir = await tempDir(t, 'annex-proxy-redis-')
  const socket = join(dir, 'redis.sock')
  let child!: ChildProcess
  let out = ''
  const start = async () => {
    out = ''
    child = spawn('redis-server', ['--port', '0', '--unixsocket', socket, '--unixsocketperm', '700', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] })
    child.stdout!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-4000)))
    child.stderr!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-4000)))
    await waitForSocket(socket, child, 30_000, () => out)
  }
  const stop = () => stopChild(child)
  await start()
  defer(t, stop)
  return {
    url: `unix://${socket}`,
    socket,
    get child() {
      return child
    },
    stop,
    restart: start,
  }
}
