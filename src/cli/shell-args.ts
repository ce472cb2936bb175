// git-annex-shell's command line, as the reference reads it (CmdLine/GitAnnexShell.hs,
// CmdLine/GitAnnexShell/Checks.hs, Utility/ShellEscape.hs, Git/Construct.hs), as pure
// functions: which commands annex-proxy serves and which go to the real git-annex-shell,
// the arguments of p2pstdio, the server mode from the environment, and the
// GIT_ANNEX_SHELL_DIRECTORY restriction.
import { isAbsolute, join, normalize, resolve } from 'node:path'
import { ShellRefusal } from '../errors.js'
import type { ServerMode } from '../protocol/p2p/server-session.js'

/**
 * Utility/ShellEscape.hs shellUnEscape: words split at single spaces; '…' and "…" quote
 * (no escapes inside), quotes may sit inside a word. What ssh clients of git-annex send is
 * `unwords (map shellEscape args)`, which this splits back exactly.
 */
export function shellUnEscape(s: string): string[] {
  const out: string[] = []
  let i = 0
  while (i < s.length) {
    let w = ''
    for (;;) {
      if (i >= s.length) break
      const c = s[i++]!
      if (c === ' ') break
      if (c === "'" || c === '"') {
        const end = s.indexOf(c, i)
        if (end < 0) {
          w += s.slice(i)
          i = s.length
          break
        }
        w += s.slice(i, end)
        i = end + 1
      } else w += c
    }
    out.push(w)
  }
  return out
}

/** Utility/ShellEscape.hs shellEscape: single quotes, with ' as '"'"'. */
export function shellEscape(s: string): string {
  return `'${s.split("'").join(`'"'"'`)}'`
}

export type ShellRoute =
  /** `git-annex-shell p2pstdio DIR …`: served by annex-proxy; `args` follow "p2pstdio". */
  | { readonly kind: 'p2pstdio'; readonly args: readonly string[] }
  /** Anything else: the real git-annex-shell, given the original arguments unchanged. */
  | { readonly kind: 'real' }

/**
 * CmdLine/GitAnnexShell.hs `run`: leading `-c` options are skipped (sshd passes the command of
 * a login shell, or authorized_keys `command=` passes $SSH_ORIGINAL_COMMAND, that way); a
 * single argument starting "git-annex-shell " is the whole command line and is split again.
 */
export function routeShellArgs(argv: readonly string[]): ShellRoute {
  let a = [...argv]
  while (a[0] === '-c') a = a.slice(1)
  if (a.length === 1 && a[0]!.startsWith('git-annex-shell ')) a = shellUnEscape(a[0]!).slice(1)
  if (a.length >= 2 && a[0] === 'p2pstdio') return { kind: 'p2pstdio', args: a.slice(1) }
  return { kind: 'real' }
}

export interface P2pStdioArgs {
  /** The repository as given (absolute, `/~/…`, `~/…` or relative to home). */
  readonly dir: string
  readonly clientUuid: string
  /** `--uuid`: what to serve (the repository's, or a UUID it proxies); absent: the repository itself. */
  readonly uuid: string | undefined
  readonly debug: boolean
}

/**
 * `DIR CLIENTUUID [--uuid UUID] [--debug] [-- field=value … --]`, in any order after DIR,
 * as git-annex-shell's option parser takes them (Remote/Helper/Ssh.hs puts `--debug` after
 * DIR and the fields last). Unknown options are refused, as by the reference.
 */
export function parseP2pStdioArgs(args: readonly string[]): P2pStdioArgs {
  const [dir, ...rest] = args
  if (dir === undefined) throw new ShellRefusal('bad parameters: p2pstdio needs a directory')
  let uuid: string | undefined
  let debug = false
  const positional: string[] = []
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!
    if (a === '--') {
      // Fields between two `--` (remoteuuid=, autoinit=) do not concern p2pstdio.
      const end = rest.indexOf('--', i + 1)
      i = end < 0 ? rest.length : end
    } else if (a === '--uuid') {
      const v = rest[++i]
      if (v === undefined) throw new ShellRefusal('option --uuid needs a value')
      uuid = v
    } else if (a.startsWith('--uuid=')) uuid = a.slice('--uuid='.length)
    else if (a === '--debug') debug = true
    else if (a === '--quiet' || a === '-q' || a === '--verbose' || a === '-v') continue
    else if (a.startsWith('-') && a.length > 1) throw new ShellRefusal(`unknown option ${a}`)
    else positional.push(a)
  }
  if (positional.length === 0) throw new ShellRefusal('missing UUID parameter')
  if (positional.length > 1) throw new ShellRefusal(`unexpected parameter ${positional[1]}`)
  return { dir, clientUuid: positional[0]!, uuid, debug }
}

/** Checks.hs checkEnvSet: set and not empty. */
const isSet = (v: string | undefined) => v !== undefined && v !== ''

/** Command/P2PStdIO.hs: GIT_ANNEX_SHELL_READONLY wins over GIT_ANNEX_SHELL_APPENDONLY. */
export function serverModeFromEnv(env: NodeJS.ProcessEnv): ServerMode {
  if (isSet(env.GIT_ANNEX_SHELL_READONLY)) return 'read-only'
  if (isSet(env.GIT_ANNEX_SHELL_APPENDONLY)) return 'append-only'
  return 'read-write'
}

/**
 * Git/Construct.hs repoAbsPath: a leading `~/` (also after a `/`, so `/~/x`) is the home
 * directory, `~user/` another user's; a relative path is relative to home.
 */
export function repoAbsPath(dir: string, home: string, homeOf: (user: string) => string | undefined = () => undefined): string {
  let d = dir
  let prefix = ''
  while (d.startsWith('/')) {
    prefix += '/'
    d = d.slice(1)
  }
  if (d === '~' || d.startsWith('~/')) d = join(home, d.slice(1))
  else if (d.startsWith('~')) {
    const slash = d.indexOf('/')
    const user = slash < 0 ? d.slice(1) : d.slice(1, slash)
    const h = homeOf(user)
    if (h !== undefined) d = join(h, slash < 0 ? '' : d.slice(slash + 1))
    else d = prefix + d
  } else d = prefix + d
  return normalize(isAbsolute(d) ? d : resolve(home, d))
}

/**
 * Checks.hs checkDirectory: with GIT_ANNEX_SHELL_DIRECTORY set, only that directory may be
 * served (compared literally, then both made absolute against home). Returns the refusal's
 * text, or undefined when allowed.
 */
export function directoryRefusal(env: NodeJS.ProcessEnv, dir: string, home: string): string | undefined {
  const allowed = env.GIT_ANNEX_SHELL_DIRECTORY
  if (allowed === undefined) return undefined
  if (normalize(allowed) === normalize(dir)) return undefined
  const canon = (d: string) => {
    if (d.startsWith('~/')) return normalize(d)
    if (d.startsWith('/~/')) return normalize(d.slice(1))
    return normalize(resolve(home, d))
  }
  const a = canon(allowed)
  const b = canon(dir)
  if (stripSlash(a) === stripSlash(b)) return undefined
  return `Only allowed to access ${a} not ${b}`
}

const stripSlash = (p: string) => (p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p)
