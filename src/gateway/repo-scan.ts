// Finding git-annex repositories beneath --directory folders without a process per
// repository: a directory walk (symlinks not followed, no descent into repositories) that
// reads each repository's config file itself. A few thousand file reads, in parallel up to
// a bound, instead of a `git config` each.
import { type Dirent, readdirSync, readFileSync, statSync } from 'node:fs'
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
    const [text, st] = await Promise.all([readFile(path, 'utf8'), stat(path, { bigint: true })])
    return { text, stamp: `${st.ino}:${st.size}:${st.mtimeNs}` }
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

const SLICE_MS = 4

/**
 * Every repository beneath `root` (`root` itself included), not following symlinks and
 * not descending into repositories. Each directory costs one readdir and, for a
 * repository, one stat (and a read when its config changed since `cache` saw it). The
 * calls are synchronous, which for small local reads costs a fraction of the asynchronous
 * ones, and the walk yields to the event loop every few milliseconds, so requests go on
 * being served during it.
 */
export async function scanTree(root: string, cache: ConfigCache = new Map(), signal?: AbortSignal, known?: ReadonlyMap<string, string>): Promise<ScanResult> {
  const out: ScanResult = { repos: [], plainGit: [], folders: [] }
  const stack = [root]
  let slice = performance.now()
  while (stack.length > 0) {
    if (signal?.aborted) break
    if (performance.now() - slice > SLICE_MS) {
      await new Promise<void>((r) => setImmediate(r))
      slice = performance.now()
    }
    const dir = stack.pop()!
    // A repository of the last walk: its config's stat is enough, unless it is gone.
    const gitDir = known?.get(dir)
    if (gitDir !== undefined) {
      const p = probeSync(dir, gitDir, cache)
      if (p.kind === 'annex') {
        out.repos.push(p.info)
        continue
      }
      if (p.kind === 'git') {
        out.plainGit.push(p.repo)
        continue
      }
    }
    let entries: Dirent[]
    try {
      entries = readdirSync(dir, { withFileTypes: true })
    } catch {
      continue
    }
    const names = new Set(entries.map((e) => e.name))
    let probed: Probe = { kind: 'none' }
    if (entries.some((e) => e.name === '.git' && e.isDirectory())) probed = probeSync(dir, join(dir, '.git'), cache)
    else if (names.has('HEAD') && names.has('config')) probed = probeSync(dir, dir, cache)
    if (probed.kind === 'annex') out.repos.push(probed.info)
    else if (probed.kind === 'git') out.plainGit.push(probed.repo)
    else {
      out.folders.push(dir)
      for (const e of entries) if (e.isDirectory() && e.name !== '.git') stack.push(join(dir, e.name))
    }
  }
  return out
}

function probeSync(dir: string, gitDir: string, cache: ConfigCache): Probe {
  const path = join(gitDir, 'config')
  let st
  try {
    st = statSync(path, { bigint: true })
  } catch {
    return { kind: 'none' }
  }
  if (!st.isFile()) return { kind: 'none' }
  const stamp = `${st.ino}:${st.size}:${st.mtimeNs}`
  let hit = cache.get(path)
  if (hit?.stamp !== stamp) {
    let text: string
    try {
      text = readFileSync(path, 'utf8')
    } catch {
      return { kind: 'none' }
    }
    hit = { stamp, cfg: parseGitConfigFile(text) }
    cache.set(path, hit)
  }
  const info = hit.cfg ? repoInfoFrom(dir, gitDir, hit.cfg, stamp) : undefined
  return info ? { kind: 'annex', info } : { kind: 'git', repo: { dir, gitDir } }
}
