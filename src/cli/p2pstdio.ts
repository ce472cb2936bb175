// `annex-proxy p2pstdio DIR CLIENTUUID --uuid UUID`: a drop-in for `git-annex-shell p2pstdio`
// (Command/P2PStdIO.hs). Serves the repository at DIR, or the proxied remote or cluster
// `--uuid` names, on stdin/stdout through the same Gateway the HTTP server uses; the
// location log is committed before the process exits, as git-annex-shell does.
// stdout is the protocol: everything a person should read goes to stderr, like the
// reference's "git-annex: …" lines, which ssh shows the user.
import { execFileSync } from 'node:child_process'
import { homedir } from 'node:os'
import { ProxyError, SessionEndedError, ShellRefusal } from '../errors.js'
import { Gateway } from '../gateway/gateway.js'
import { serve, type ServedRepo } from '../protocol/p2p/server-session.js'
import type { Logger } from '../remotes/remote.js'
import { directoryRefusal, parseP2pStdioArgs, repoAbsPath, serverModeFromEnv } from './shell-args.js'
import { stderrLogger } from './stderr-log.js'

function homeOf(user: string): string | undefined {
  try {
    const line = execFileSync('getent', ['passwd', user], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
    return line.split(':')[5] || undefined
  } catch {
    return undefined
  }
}

/** Runs one session; resolves with the exit status. */
export async function runP2pStdio(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const args = parseP2pStdioArgs(argv)
  const log: Logger = stderrLogger(args.debug ? 'debug' : (env.ANNEX_PROXY_LOG_LEVEL ?? 'warn'))
  const home = env.HOME ?? homedir()
  const refusal = directoryRefusal(env, args.dir, home)
  if (refusal) throw new ShellRefusal(refusal)
  const dir = repoAbsPath(args.dir, home, homeOf)
  const mode = serverModeFromEnv(env)

  let gateway: Gateway
  try {
    gateway = await Gateway.open(dir, {
      hasher: 'auto',
      log,
      fanoutHighWaterMark: 1 << 20,
      fanoutStallMs: 60_000,
      // Committed when the session ends, before the client's ssh exits (as git-annex-shell).
      locationLogSettle: 'journal',
    })
  } catch (e) {
    throw new ShellRefusal(openFailure(e, dir, args.uuid), { cause: e })
  }

  const closing = new AbortController()
  const stop = () => {
    closing.abort()
    // Unblocks a session waiting for the next request.
    process.stdin.destroy()
  }
  const signals = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const
  for (const s of signals) process.once(s, stop)
  try {
    const uuid = args.uuid ?? gateway.uuid
    if (!gateway.serves(uuid)) throw new ShellRefusal(`expected repository UUID ${uuid} but found UUID ${gateway.uuid}`)
    const served: ServedRepo = { uuid, resolve: (bypass) => gateway.lookup(uuid, bypass) }
    await serve({ input: process.stdin, output: process.stdout }, served, { mode, log, client: args.clientUuid, signal: closing.signal })
    return 0
  } catch (e) {
    if (closing.signal.aborted) return 0
    if (e instanceof SessionEndedError || e instanceof ShellRefusal) throw e
    log.error({ err: e }, 'session failed')
    return 1
  } finally {
    for (const s of signals) process.off(s, stop)
    // Commits the location log before the client is told the session is over.
    await gateway.close().catch((e: unknown) => log.error({ err: e }, 'closing the repository failed'))
    log.debug('session ended')
  }
}

function openFailure(e: unknown, dir: string, expected: string | undefined): string {
  const msg = e instanceof Error ? e.message : String(e)
  if (/is not a git repository/.test(msg)) {
    return `failed to read git config of git repository on ${dir}; perhaps this repository is not set up correctly or has moved`
  }
  if (/no annex\.uuid/.test(msg)) {
    return expected !== undefined ? `expected repository UUID ${expected} but found uninitialized repository` : 'Not a git-annex or gcrypt repository.'
  }
  return e instanceof ProxyError ? msg : `cannot open ${dir}: ${msg}`
}
