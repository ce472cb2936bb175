// Finding git-annex repositories beneath --directory folders without a process per
// repository: a directory walk (symlinks not followed, no descent into repositories) that
// reads each repository's config file itself. A few thousand file reads, in parallel up to
// a bound, instead of a `git config` each.
import { closeSync, constants, type Dirent, fstatSync, openSync, readdirSync, readFileSync, type Stats, statSync } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { lastValue, parseGitConfigFile, type GitConfig } from '../annex/git-config-file.js'
import { isClusterUuid } from '../annex/uuid.js'

/** What a repository's config says about what it serves, read without git. */
export interface RepoInfo {
  /** The directory served: a work tree, or a bare repository. */
  readonly dir: string
  readonly gitDir: string
  /** annex.uuid. */
  readonly uuid: string
  /**
   * Other UUIDs its config says it may answer for (annex.cluster.*, remotes with
   * annex-proxy or annex-cluster-node, clusters of annex-cluster-gateway remotes). Only
   * opening it tells whether it does: proxy.log on its git-annex branch decides (spec §3.2).
   */
  readonly claims: readonly string[]
  /** It has proxying configuration: served as a gateway, not as a plain repository. */
  readonly gateway: boolean
  /**
   * It has remotes that are gateways of its clusters: it may also answer for remotes those
   * gateways proxy, which only its git-annex branch names (spec §3.3).
   */
  readonly viaGateways: boolean
  /** Identity of the config file as read (inode, size, mtime): a change means read it again. */
  readonly stamp: string
}

/** A git repository without annex.uuid (not yet `git annex init`ed): watched, not served. */
export interface PlainGit {
  readonly dir: string
  readonly gitDir: string
}

export type Probe = { readonly kind: 'annex'; readonly info: RepoInfo } | { readonly kind: 'git'; readonly repo: PlainGit } | { readonly kind: 'none' }

const isTrue = (v: string | undefined) => v !== undefined && /^(true|yes|on|1)$/i.test(v)

/** What the config of the repository at `dir` (git dir `gitDir`) says it serves. */
export function repoInfoFrom(dir: string, gitDir: string, cfg: GitConfig, stamp: string): RepoInfo | undefined {
  const uuid = lastValue(cfg, 'annex.uuid')
  if (uuid === undefined || uuid === '') return undefined
  const claims = new Set<string>()
  let gateway = false
  let viaGateways = false
  const remotes = new Map<string, Map<string, string>>()
  for (const [k, vs] of cfg) {
    if (k.startsWith('annex.cluster.')) {
      gateway = true
      const cu = vs.at(-1)!
      if (isClusterUuid(cu)) claims.add(cu)
      continue
    }
    if (!k.startsWith('remote.')) continue
    const last = k.lastIndexOf('.')
    if (last <= 'remote.'.length) continue
    const name = k.slice('remote.'.length, last)
    const settings = remotes.get(name) ?? new Map<string, string>()
    settings.set(k.slice(last + 1), vs.at(-1)!)
    remotes.set(name, settings)
  }
  for (const settings of remotes.values()) {
    const ru = settings.get('annex-uuid')
    const proxied = isTrue(settings.get('annex-proxy'))
    const node = (settings.get('annex-cluster-node') ?? '').trim() !== ''
    const gws = (settings.get('annex-cluster-gateway') ?? '').split(/\s+/).filter(Boolean)
    if (proxied || node || gws.length > 0) gateway = true
    if ((proxied || node) && ru) claims.add(ru)
    for (const cu of gws) if (isClusterUuid(cu)) claims.add(cu)
    if (gws.length > 0) viaGateways = true
  }
  claims.delete(uuid)
  return { dir, gitDir, uuid, claims: [...claims].sort(), gateway, viaGateways, stamp }
}

function errnoOf(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException).code
}

async function readConfig(gitDir: string): Promise<{ text: string; stamp: string } | undefined> {
  const path = join(gitDir, 'config')
  try {
    const [text, st] = await Promise.all([readFile(path, 'utf8'), stat(path)])
    return { text, stamp: stampOf(st) }
  } catch (e) {
    const code = errnoOf(e)
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EACCES' || code === 'EISDIR') return undefined
    throw e
  }
}

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  )

/**
 * Whether `dir` is a git-annex repository (work tree with a `.git` directory, or bare), a
 * git repository without annex.uuid, or neither. Reads one or two files; runs nothing.
 */
export async function probeRepo(dir: string): Promise<Probe> {
  for (const [gitDir, bare] of [[join(dir, '.git'), false], [dir, true]] as const) {
    const read = await readConfig(gitDir)
    if (!read) continue
    // A folder that only happens to hold a file named `config` is no bare repository.
    if (bare && !(await exists(join(dir, 'HEAD')))) continue
    const cfg = parseGitConfigFile(read.text)
    const info = cfg ? repoInfoFrom(dir, gitDir, cfg, read.stamp) : undefined
    return info ? { kind: 'annex', info } : { kind: 'git', repo: { dir, gitDir } }
  }
  return { kind: 'none' }
}

export interface ScanResult {
  readonly repos: RepoInfo[]
  readonly plainGit: PlainGit[]
  /** Directories walked that are not repositories: where new repositories appear. */
  readonly folders: string[]
}

/** Config files already read, by path: a rescan reads only those whose stat changed. */
export type ConfigCache = Map<string, { readonly stamp: string; readonly cfg: GitConfig | undefined }>

/** Longest synchronous stretch of a walk while no request is in flight. */
const SLICE_MS = 2
/** ... and while one is: each of its I/O completions waits at most this long for the walk. */
const BUSY_SLICE_MS = 0.5

/** How a walk shares the event loop, and what it tells its caller as it goes. */
export interface WalkHooks {
  /** Requests are in flight: yield after shorter stretches so their I/O callbacks run soon. */
  readonly busy?: () => boolean
  /** Called for a folder that is no repository before it is read, so nothing made after the read goes unnoticed (watch it here). */
  readonly onFolder?: (dir: string) => void
  /** Called for a git repository without annex.uuid as it is found. */
  readonly onPlainGit?: (repo: PlainGit) => void
}

/**
 * Every repository beneath `root` (`root` itself included), not following symlinks and
 * not descending into repositories. A repository costs a stat or two (HEAD, .git/config)
 * and its config file's open and fstat, a read only when `cache` has not seen that stat,
 * and no readdir; a folder that is no repository costs two stats and one readdir. At 10 000
 * repositories the readdirs were a third of the walk. The calls are synchronous, which for
 * small local reads costs a fraction of the asynchronous ones, and the walk yields to the
 * event loop every 2 ms (0.5 ms while `hooks.busy()`: a request's every I/O completion
 * otherwise waits for the rest of a slice, and a request takes a dozen), so requests go on
 * being served during it; `onRepo` hears of each repository as it is found, so they need
 * not wait for the whole walk.
 */
export async function scanTree(
  root: string,
  cache: ConfigCache = new Map(),
  signal?: AbortSignal,
  known?: ReadonlyMap<string, string>,
  onRepo?: (info: RepoInfo) => void,
  hooks: WalkHooks = {},
): Promise<ScanResult> {
  const out: ScanResult = { repos: [], plainGit: [], folders: [] }
  const stack = [root]
  let slice = performance.now()
  while (stack.length > 0) {
    if (signal?.aborted) break
    if (performance.now() - slice > (hooks.busy?.() ? BUSY_SLICE_MS : SLICE_MS)) {
      await new Promise<void>((r) => setImmediate(r))
      slice = performance.now()
    }
    const dir = stack.pop()!
    // A repository of the last walk is probed where it was. Else a HEAD file makes it a bare
    // repository (one whose config reads); else a .git/config a work tree. Stats that do not
    // throw: an exception per miss cost more than the system calls.
    const gitDir = known?.get(dir)
    let probed = gitDir !== undefined ? probeSync(dir, gitDir, cache) : NONE
    if (probed.kind === 'none' && statQuiet(join(dir, 'HEAD'))?.isFile()) probed = probeSync(dir, dir, cache)
    if (probed.kind === 'none' && statQuiet(join(dir, '.git', 'config'))) probed = probeSync(dir, join(dir, '.git'), cache)
    if (probed.kind === 'annex') {
      out.repos.push(probed.info)
      onRepo?.(probed.info)
      continue
    }
    if (probed.kind === 'git') {
      out.plainGit.push(probed.repo)
      hooks.onPlainGit?.(probed.repo)
      continue
    }
    hooks.onFolder?.(dir)
    let entries: Dirent[]
    try {
      entries = readdirSync(dir, { withFileTypes: true })
    } catch {
      continue
    }
    out.folders.push(dir)
    for (const e of entries) if (e.isDirectory() && e.name !== '.git') stack.push(join(dir, e.name))
  }
  return out
}

const NONE: Probe = { kind: 'none' }

/**
 * The repository at `dir` with git dir `gitDir` (where an earlier walk found one), read as
 * the walk reads it: a bare one needs its HEAD file. A stat or two and a read.
 */
export function probeAt(dir: string, gitDir: string, cache: ConfigCache): Probe {
  if (gitDir === dir && !statQuiet(join(dir, 'HEAD'))?.isFile()) return NONE
  return probeSync(dir, gitDir, cache)
}
const NO_THROW = { throwIfNoEntry: false } as const

/** The stat of `path`, undefined when there is none; only a miss other than ENOENT (ENOTDIR: `.git` is a file, EACCES) costs an exception. */
function statQuiet(path: string): Stats | undefined {
  try {
    return statSync(path, NO_THROW)
  } catch {
    return undefined
  }
}

/** Identity of a config file as read: a change of any part means read it again. */
const stampOf = (st: Stats) => `${st.ino}:${st.size}:${st.mtimeMs}`

/**
 * The repository whose git dir is `gitDir`, from its config file: a config `cache` has seen
 * costs a stat when it is unchanged (a rescan); else an open, fstat and read.
 */
function probeSync(dir: string, gitDir: string, cache: ConfigCache): Probe {
  const path = join(gitDir, 'config')
  const seen = cache.get(path)
  if (seen) {
    const st = statQuiet(path)
    if (!st?.isFile()) return NONE
    const stamp = stampOf(st)
    if (stamp === seen.stamp) return probed(dir, gitDir, seen.cfg, stamp)
  }
  let fd: number
  try {
    // Non-blocking: a FIFO named config would otherwise block the whole process in open().
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK)
  } catch {
    return NONE
  }
  let hit
  let stamp: string
  try {
    const st = fstatSync(fd)
    if (!st.isFile()) return NONE
    stamp = stampOf(st)
    hit = cache.get(path)
    if (hit?.stamp !== stamp) {
      hit = { stamp, cfg: parseGitConfigFile(readFileSync(fd, 'utf8')) }
      cache.set(path, hit)
    }
  } catch {
    return NONE
  } finally {
    closeSync(fd)
  }
  return probed(dir, gitDir, hit.cfg, stamp)
}

function probed(dir: string, gitDir: string, cfg: GitConfig | undefined, stamp: string): Probe {
  const info = cfg ? repoInfoFrom(dir, gitDir, cfg, stamp) : undefined
  return info ? { kind: 'annex', info } : { kind: 'git', repo: { dir, gitDir } }
}
