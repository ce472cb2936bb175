// Where `serve` listens: a TCP address, a unix socket (--socket), a socket systemd passes
// (LISTEN_FDS, socket activation) or the listening socket of the process being replaced
// (hand-over on SIGHUP). The last two keep one socket across a restart, so the kernel goes
// on accepting connections while processes change and no client sees a refusal.
import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmod, lstat, rename, rm, stat } from 'node:fs/promises'
import { connect } from 'node:net'
import { basename, dirname, join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { ConfigError } from '../errors.js'

/** systemd's first passed descriptor (sd_listen_fds(3)). */
const SD_LISTEN_FDS_START = 3
/** Set in the environment of a successor started by handOver(): it was given the socket as systemd gives it. */
const HANDOVER_ENV = 'ANNEX_PROXY_HANDOVER'
const HANDOVER_WAIT_MS = 60_000
const SOCKET_MODE = 0o660

export interface Listening {
  readonly address: string
  readonly how: 'tcp' | 'socket' | 'systemd' | 'handover'
  /** Removes the unix socket file when it is still the one this process served. */
  release(): Promise<void>
}

export interface ListenTarget {
  readonly bind: string
  readonly port: number
  readonly socket: string | undefined
}

/**
 * The descriptor systemd passed, when it passed one to this process. The variables are
 * removed so that processes this one starts do not take the socket for theirs.
 */
function systemdFd(env: NodeJS.ProcessEnv): number | undefined {
  const fds = env.LISTEN_FDS
  const pid = env.LISTEN_PID
  delete env.LISTEN_FDS
  delete env.LISTEN_PID
  delete env.LISTEN_FDNAMES
  if (fds === undefined) return undefined
  if (pid !== undefined && pid !== String(process.pid)) return undefined
  if (fds !== '1') throw new ConfigError(`LISTEN_FDS=${fds}: annex-proxy listens on exactly one socket (one ListenStream= in the .socket unit)`)
  return SD_LISTEN_FDS_START
}

async function isLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path)
    s.once('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.once('error', () => resolve(false))
  })
}

/**
 * Binds `path` safely: a stale socket file (nothing accepts on it) is replaced, a live one
 * or anything that is not a socket is left alone with an error. The socket is bound under
 * a private name, given its mode, then renamed into place, so the path never names a
 * socket with other permissions, and a client never finds the path missing.
 */
async function listenOnPath(app: FastifyInstance, path: string): Promise<void> {
  const existing = await lstat(path).catch(() => undefined)
  if (existing && !existing.isSocket()) throw new ConfigError(`--socket ${path}: exists and is not a socket; not replaced`)
  if (existing && (await isLive(path))) throw new ConfigError(`--socket ${path}: another server is listening there (stop it, or send it SIGHUP to hand over)`)
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}`)
  await app.listen({ path: tmp })
  try {
    await chmod(tmp, SOCKET_MODE)
    await rename(tmp, path)
  } catch (err) {
    await rm(tmp, { force: true })
    throw err
  }
}

export async function listen(app: FastifyInstance, target: ListenTarget, env: NodeJS.ProcessEnv = process.env): Promise<Listening> {
  const handover = env[HANDOVER_ENV] === '1'
  delete env[HANDOVER_ENV]
  const fd = systemdFd(env)
  let how: Listening['how']
  if (fd !== undefined) {
    // Past fastify's listen(), which only knows addresses and paths (it fails on a unix
    // socket given by descriptor); its close() closes the server all the same.
    await app.ready()
    await new Promise<void>((resolve, reject) => {
      app.server.once('error', reject)
      app.server.listen({ fd }, () => {
        app.server.off('error', reject)
        resolve()
      })
    })
    how = handover ? 'handover' : 'systemd'
  } else if (target.socket !== undefined) {
    await listenOnPath(app, target.socket)
    how = 'socket'
  } else {
    await app.listen({ host: target.bind, port: target.port })
    how = 'tcp'
  }
  const a = app.server.address()
  const address = typeof a === 'string' ? a : a ? `${a.address}:${a.port}` : (target.socket ?? '')
  // The socket file this process answers on, to remove on shutdown only while it still is
  // (a successor may serve the same file, or a new server may have replaced it).
  // A socket systemd passed is systemd's to remove.
  const path = how === 'socket' || how === 'handover' ? target.socket : undefined
  const ino = path === undefined ? undefined : await stat(path).then((s) => s.ino, () => undefined)
  let released = false
  return {
    address: how === 'socket' || (how === 'handover' && path !== undefined) ? path! : address,
    how,
    async release() {
      if (released || path === undefined || ino === undefined) return
      released = true
      const now = await stat(path).catch(() => undefined)
      if (now?.ino === ino) await rm(path, { force: true })
    },
  }
}

/** Tells a successor, when it is one, that it serves: its predecessor may stop accepting. */
export function announceReady(): void {
  if (process.send && process.connected) {
    process.send({ type: 'ready' }, () => {
      if (process.connected) process.disconnect()
    })
  }
}

/**
 * Starts a copy of this process (same arguments) and gives it the listening socket the way
 * systemd would (descriptor 3, LISTEN_FDS=1). Resolves with its pid once it serves; the
 * caller then stops accepting and drains. If it does not come up it is stopped, and this
 * process goes on serving.
 */
export async function handOver(app: FastifyInstance): Promise<number> {
  const fd = (app.server as unknown as { _handle?: { fd?: number } })._handle?.fd
  if (typeof fd !== 'number' || fd < 0) throw new Error('the listening socket has no descriptor to hand over')
  const env: NodeJS.ProcessEnv = { ...process.env, LISTEN_FDS: '1', [HANDOVER_ENV]: '1' }
  delete env.LISTEN_PID
  const child: ChildProcess = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: ['ignore', 'inherit', 'inherit', fd, 'ipc'],
    env,
  })
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => done(new Error(`the new process did not serve within ${HANDOVER_WAIT_MS} ms`)), HANDOVER_WAIT_MS)
      function done(err?: Error) {
        clearTimeout(timer)
        child.off('message', onMessage)
        child.off('exit', onExit)
        child.off('error', done)
        if (err) reject(err)
        else resolve()
      }
      function onMessage(msg: unknown) {
        if ((msg as { type?: unknown } | null)?.type === 'ready') done()
      }
      function onExit(code: number | null, signal: string | null) {
        done(new Error(`the new process exited (${signal ?? code}) before serving`))
      }
      child.on('message', onMessage)
      child.once('exit', onExit)
      child.once('error', done)
    })
  } catch (err) {
    child.kill('SIGKILL')
    throw err
  }
  child.unref()
  if (child.connected) child.disconnect()
  return child.pid!
}
