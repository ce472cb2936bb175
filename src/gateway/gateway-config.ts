// What a gateway serves (spec §3): a typed, frozen snapshot built from `git config --list`
// and the git-annex branch logs (journal included), and a watcher that rebuilds it when
// the git-annex branch, the journal or .git/config change, without a restart.
import { EventEmitter } from 'node:events'
import { watch, type FSWatcher } from 'node:fs'
import { stat } from 'node:fs/promises'
import { homedir } from 'node:os'
import { isAbsolute, join, resolve } from 'node:path'
import type { Key } from '../keys/key.js'
import { runGit } from '../annex/git.js'
import { parseGitConfigList } from '../annex/git-config-file.js'
import type { Logger } from '../remotes/remote.js'
import { asUuid, isClusterUuid, readTrustLevel, type TrustLevel, type Uuid } from '../annex/uuid.js'
import {
  journalFileName,
  locationLogPath,
  LOG_FILES,
  parseClusterLog,
  parseExpressionLog,
  parseGroupLog,
  parseGroupPreferredContentLog,
  parseMaxSizeLog,
  parseProxyLog,
  parseRemoteConfigs,
  parseTrustLog,
  parseUuidLog,
  presentUuids,
  type ProxyEntry,
} from '../annex/branch-logs.js'
import { BranchReader } from '../annex/branch-reader.js'

/** Config/Cost.hs: a local git repository or directory remote is cheap, the rest expensive. */
export const CHEAP_REMOTE_COST = 100
export const EXPENSIVE_REMOTE_COST = 200

export interface RemoteInfo {
  /** The git remote name. */
  readonly name: string
  readonly uuid: Uuid
  /** Where its remote.log settings live: annex-config-uuid for a sameas remote, else uuid. */
  readonly configUuid: Uuid
  readonly url: string | undefined
  readonly annexUrl: string | undefined
  /** remote.<name>.annex-cost, else git-annex's default for its kind. */
  readonly cost: number
  /** remote.<name>.annex-proxy=true. */
  readonly proxy: boolean
  /** Cluster names from remote.<name>.annex-cluster-node. */
  readonly clusterNode: readonly string[]
  /** Cluster UUIDs from remote.<name>.annex-cluster-gateway. */
  readonly clusterGateway: readonly Uuid[]
  /** A special remote (no git url, or a remote.log type other than git). */
  readonly special: boolean
  /** Its remote.log settings (type=, name=, encryption=, …, sameas fields inherited); empty for git remotes. */
  readonly remoteConfig: ReadonlyMap<string, string>
  /** Every remote.<name>.* git config setting, keys lower-cased after the name. */
  readonly gitConfig: ReadonlyMap<string, string>
}

export interface ClusterNode {
  readonly uuid: Uuid
  /** The gateway's remote that reaches the node. */
  readonly remote: string
  /** 'node': a configured annex-cluster-node; 'gateway': the same cluster behind another gateway (§3.3 b). */
  readonly via: 'node' | 'gateway'
  readonly cost: number
}

export interface ClusterInfo {
  readonly name: string
  readonly uuid: Uuid
  /** The node set of spec §3.3, sorted by cost (then remote name). */
  readonly nodes: readonly ClusterNode[]
}

export type ServedTarget =
  | { readonly kind: 'self'; readonly uuid: Uuid }
  | { readonly kind: 'cluster'; readonly uuid: Uuid; readonly cluster: ClusterInfo }
  | { readonly kind: 'remote'; readonly uuid: Uuid; readonly remote: RemoteInfo }
  /** A remote another gateway (of one of our clusters) proxies, reached through that gateway. */
  | { readonly kind: 'via-gateway'; readonly uuid: Uuid; readonly gateway: RemoteInfo; readonly name: string }

export interface GatewaySnapshot {
  readonly uuid: Uuid
  /** Cluster name → cluster, for each annex.cluster.<name> in git config. */
  readonly clusters: ReadonlyMap<string, ClusterInfo>
  /** Configured remotes that have an annex-uuid, by name. */
  readonly remotes: ReadonlyMap<string, RemoteInfo>
  /** cluster.log, dead nodes removed. */
  readonly clusterLog: ReadonlyMap<Uuid, ReadonlySet<Uuid>>
  readonly proxyLog: ReadonlyMap<Uuid, readonly ProxyEntry[]>
  readonly descriptions: ReadonlyMap<Uuid, string>
  /** trust.log overridden by remote.<name>.annex-trustlevel. */
  readonly trust: ReadonlyMap<Uuid, TrustLevel>
  readonly groups: ReadonlyMap<Uuid, ReadonlySet<string>>
  readonly preferredContent: ReadonlyMap<Uuid, string>
  readonly requiredContent: ReadonlyMap<Uuid, string>
  readonly groupPreferredContent: ReadonlyMap<string, string>
  readonly maxSize: ReadonlyMap<Uuid, number>
  /** What this gateway answers for: its own UUID plus proxy.log entries passing §3.2. */
  readonly served: ReadonlyMap<Uuid, ServedTarget>
  servedUuids(): ReadonlySet<Uuid>
}

const isTrue = (v: string | undefined) => v !== undefined && /^(true|yes|on|1)$/i.test(v)

/** Git config keys as `git config --list` prints them (section, variable lower-cased). */
interface RemoteSection {
  name: string
  settings: Map<string, string>
}

function remoteSections(cfg: ReadonlyMap<string, string[]>): Map<string, RemoteSection> {
  const out = new Map<string, RemoteSection>()
  for (const [k, vs] of cfg) {
    if (!k.startsWith('remote.')) continue
    const last = k.lastIndexOf('.')
    if (last <= 'remote.'.length) continue
    const name = k.slice('remote.'.length, last)
    const s = out.get(name) ?? { name, settings: new Map<string, string>() }
    s.settings.set(k.slice(last + 1).toLowerCase(), vs[vs.length - 1]!)
    out.set(name, s)
  }
  return out
}

/** A git url naming a path on this machine (git's rule: scp-like `host:path` has a colon before any slash). */
function isLocalUrl(url: string): boolean {
  if (url.startsWith('file://') || url.startsWith('/') || url.startsWith('.')) return true
  const colon = url.indexOf(':')
  const slash = url.indexOf('/')
  return colon < 0 || (slash >= 0 && slash < colon)
}

function defaultCost(url: string | undefined, special: boolean, type: string | undefined): number {
  if (special) return type === 'directory' ? CHEAP_REMOTE_COST : EXPENSIVE_REMOTE_COST
  return url !== undefined && isLocalUrl(url) ? CHEAP_REMOTE_COST : EXPENSIVE_REMOTE_COST
}

export interface LogTexts {
  uuid: string
  remote: string
  trust: string
  group: string
  preferredContent: string
  requiredContent: string
  groupPreferredContent: string
  maxSize: string
  cluster: string
  proxy: string
}

/** Reads every log the snapshot needs, journal overlay included. */
export async function readLogs(reader: BranchReader): Promise<LogTexts> {
  const names = Object.keys(LOG_FILES) as (keyof typeof LOG_FILES)[]
  const texts = await Promise.all(names.map((n) => reader.readText(LOG_FILES[n])))
  return Object.fromEntries(names.map((n, i) => [n, texts[i]!])) as unknown as LogTexts
}

/** Builds the snapshot from `git config --list -z` output and the log texts. Pure. */
export function buildSnapshot(configZ: string, logs: LogTexts): GatewaySnapshot {
  const cfg = parseGitConfigList(configZ)
  const own = cfg.get('annex.uuid')?.at(-1)
  if (!own) throw new Error('not a git-annex repository: annex.uuid is not set')
  const uuid = asUuid(own)

  const remoteLog = parseRemoteConfigs(logs.remote)
  const remotes = new Map<string, RemoteInfo>()
  for (const s of remoteSections(cfg).values()) {
    const ru = s.settings.get('annex-uuid')
    if (!ru) continue
    const url = s.settings.get('url')
    // A sameas remote shares its parent's UUID; its own settings are under annex-config-uuid.
    const configUuid = asUuid(s.settings.get('annex-config-uuid') ?? ru)
    const rc = remoteLog.get(configUuid) ?? new Map<string, string>()
    const type = rc.get('type')
    const special = url === undefined || (type !== undefined && type !== 'git')
    const costSetting = Number(s.settings.get('annex-cost'))
    remotes.set(s.name, {
      name: s.name,
      uuid: asUuid(ru),
      configUuid,
      url,
      annexUrl: s.settings.get('annexurl'),
      cost: s.settings.has('annex-cost') && Number.isFinite(costSetting) ? costSetting : defaultCost(url, special, type),
      proxy: isTrue(s.settings.get('annex-proxy')),
      clusterNode: (s.settings.get('annex-cluster-node') ?? '').split(/\s+/).filter(Boolean),
      clusterGateway: (s.settings.get('annex-cluster-gateway') ?? '').split(/\s+/).filter(Boolean).map(asUuid),
      special,
      remoteConfig: special ? rc : new Map(),
      gitConfig: s.settings,
    })
  }

  // Logs/Trust.hs trustMapLoad: a remote's annex-trustlevel overrides trust.log, even `dead`.
  const trust = parseTrustLog(logs.trust)
  for (const r of remotes.values()) {
    const t = r.gitConfig.get('annex-trustlevel')
    const level = t === undefined ? undefined : readTrustLevel(t)
    if (level) trust.set(r.uuid, level)
  }

  const clusterLog = parseClusterLog(logs.cluster, trust)
  const proxyLog = parseProxyLog(logs.proxy)
  const byCost = (a: { cost: number; remote: string }, b: { cost: number; remote: string }) =>
    a.cost - b.cost || (a.remote < b.remote ? -1 : a.remote > b.remote ? 1 : 0)

  /** The node set of spec §3.3; `name` undefined for a cluster not in annex.cluster.* (only gateway nodes). */
  const nodesOf = (name: string | undefined, cu: Uuid): ClusterNode[] => {
    const logged = clusterLog.get(cu) ?? new Set<Uuid>()
    const nodes: ClusterNode[] = []
    for (const r of remotes.values()) {
      // (a): a configured node of this cluster name, listed in cluster.log for it.
      if (name !== undefined && r.clusterNode.includes(name) && logged.has(r.uuid)) nodes.push({ uuid: r.uuid, remote: r.name, via: 'node', cost: r.cost })
      // (b): the same cluster proxied by another gateway of it.
      else if (r.clusterGateway.includes(cu) && (proxyLog.get(r.uuid) ?? []).some((p) => p.uuid === cu))
        nodes.push({ uuid: cu, remote: r.name, via: 'gateway', cost: r.cost })
    }
    return nodes.sort(byCost)
  }

  const clusters = new Map<string, ClusterInfo>()
  for (const [k, vs] of cfg) {
    if (!k.startsWith('annex.cluster.')) continue
    const name = k.slice('annex.cluster.'.length)
    const cu = asUuid(vs[vs.length - 1]!)
    if (!isClusterUuid(cu)) continue
    clusters.set(name, { name, uuid: cu, nodes: nodesOf(name, cu) })
  }

  const served = new Map<Uuid, ServedTarget>([[uuid, { kind: 'self', uuid }]])
  const clusterByUuid = new Map([...clusters.values()].map((c) => [c.uuid, c]))
  const clusterNames = new Set(clusters.keys())
  const gatewayRemotes = [...remotes.values()].filter((r) => r.clusterGateway.length > 0)
  const candidates: RemoteInfo[] = []
  const viaGateway: Extract<ServedTarget, { kind: 'via-gateway' }>[] = []
  for (const p of proxyLog.get(uuid) ?? []) {
    if (served.has(p.uuid)) continue
    if (isClusterUuid(p.uuid)) {
      // §3.2: listed in cluster.log is enough (git-annex-shell accepts it even without
      // annex.cluster.* configured; then only nodes behind other gateways can serve it).
      if (!clusterLog.has(p.uuid)) continue
      const c = clusterByUuid.get(p.uuid) ?? { name: p.name, uuid: p.uuid, nodes: nodesOf(undefined, p.uuid) }
      served.set(p.uuid, { kind: 'cluster', uuid: p.uuid, cluster: c })
      continue
    }
    const r = remotes.get(p.name)
    if (r && r.uuid === p.uuid && (r.proxy || r.clusterNode.some((n) => clusterNames.has(n)))) {
      candidates.push(r)
      continue
    }
    // Proxied by a gateway of a cluster: the client-side name is `<gateway remote>-<its name>`.
    for (const gr of gatewayRemotes) {
      const q = (proxyLog.get(gr.uuid) ?? []).find((e) => e.uuid === p.uuid && `${gr.name}-${e.name}` === p.name)
      if (q) viaGateway.push({ kind: 'via-gateway', uuid: p.uuid, gateway: gr, name: q.name })
    }
  }
  // The lowest-cost matching remote is used (§3.2).
  for (const r of candidates.sort((a, b) => byCost({ cost: a.cost, remote: a.name }, { cost: b.cost, remote: b.name })))
    if (!served.has(r.uuid)) served.set(r.uuid, { kind: 'remote', uuid: r.uuid, remote: r })
  for (const v of viaGateway.sort((a, b) => a.gateway.cost - b.gateway.cost)) if (!served.has(v.uuid)) served.set(v.uuid, v)

  const servedSet: ReadonlySet<Uuid> = new Set(served.keys())
  return Object.freeze({
    uuid,
    clusters,
    remotes,
    clusterLog,
    proxyLog,
    descriptions: parseUuidLog(logs.uuid),
    trust,
    groups: parseGroupLog(logs.group),
    preferredContent: parseExpressionLog(logs.preferredContent),
    requiredContent: parseExpressionLog(logs.requiredContent),
    groupPreferredContent: parseGroupPreferredContentLog(logs.groupPreferredContent),
    maxSize: parseMaxSizeLog(logs.maxSize),
    served,
    servedUuids: () => servedSet,
  })
}


/** `git config --list -z` in `repo`: the one subprocess a snapshot needs. */
export function readGitConfig(repo: string): Promise<string> {
  return runGit(repo, ['config', '--list', '-z'])
}

/** Reads git config and the branch logs of the reader's repository into a snapshot. */
export async function loadSnapshot(reader: BranchReader): Promise<GatewaySnapshot> {
  const [configZ, logs] = await Promise.all([readGitConfig(reader.repo), readLogs(reader)])
  return buildSnapshot(configZ, logs)
}

/**
 * The repository's config files `git config --list` read: `<gitDir>/config` and the files
 * its include.path / includeIf.*.path settings name (relative ones taken from the git dir,
 * where the including file is; `~/` from the home directory).
 */
export function configFiles(gitDir: string, configZ: string): string[] {
  const files = [join(gitDir, 'config')]
  for (const [k, vs] of parseGitConfigList(configZ)) {
    if (k !== 'include.path' && !(k.startsWith('includeif.') && k.endsWith('.path'))) continue
    for (const v of vs) files.push(v.startsWith('~/') ? join(homedir(), v.slice(2)) : resolve(gitDir, v))
  }
  return files
}

function sameLogs(a: LogTexts, b: LogTexts): boolean {
  return (Object.keys(LOG_FILES) as (keyof LogTexts)[]).every((n) => a[n] === b[n])
}

// ---------------------------------------------------------------------------------------
// Change detection

export interface WatchOptions {
  /** Fallback poll of the fingerprint, in ms (fs.watch may miss events on some filesystems). */
  pollMs?: number
  /** Quiet time after an event before re-reading, in ms. */
  debounceMs?: number
  /** Use fs.watch for prompt notice (default true); polling alone otherwise. */
  fsWatch?: boolean
  log?: Logger
}

async function statPrint(path: string): Promise<string> {
  return stat(path, { bigint: true }).then(
    (s) => `${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`,
    () => '-',
  )
}

/**
 * What a change to the served configuration touches, in two parts so that a change to the
 * branch alone costs no `git config` subprocess: `config`, the config files; `logs`, the
 * git-annex ref (loose or packed) and the journal copies of the logs a snapshot reads.
 * Location logs are left out: every upload writes one to the journal and none is part of a
 * snapshot (locations() reads them live). Stat only; no subprocess.
 */
interface Fingerprint {
  readonly config: string
  readonly logs: string
}

const JOURNALLED_LOGS = Object.values(LOG_FILES).map(journalFileName)

async function fingerprint(reader: BranchReader, configPaths: readonly string[]): Promise<Fingerprint> {
  const g = reader.gitDir
  const logPaths = [join(g, 'packed-refs'), join(g, 'refs', 'heads', 'git-annex')]
  for (const dir of [reader.journalDir, reader.privateJournalDir]) for (const f of JOURNALLED_LOGS) logPaths.push(join(dir, f))
  const [config, logs] = await Promise.all([Promise.all(configPaths.map(statPrint)), Promise.all(logPaths.map(statPrint))])
  return { config: config.join('|'), logs: logs.join('|') }
}

/**
 * Keeps a current snapshot. Emits 'change' (snapshot) after a re-read that was caused by
 * a change, and 'error' (err) when a re-read fails (the previous snapshot stays current).
 */
export class GatewayConfig extends EventEmitter {
  private snap: GatewaySnapshot
  private print: Fingerprint
  /** What the snapshot was built from: kept so a change to the branch alone re-reads only the logs. */
  private configZ: string
  private logs: LogTexts
  private readonly watchers = new Map<string, FSWatcher>()
  private poll: NodeJS.Timeout | undefined
  private debounce: NodeJS.Timeout | undefined
  private running: Promise<void> | undefined
  private again = false
  private closed = false

  private constructor(
    readonly reader: BranchReader,
    read: { configZ: string; logs: LogTexts; print: Fingerprint },
    private readonly opts: Required<Omit<WatchOptions, 'log'>> & { log?: Logger },
  ) {
    super()
    this.configZ = read.configZ
    this.logs = read.logs
    this.print = read.print
    this.snap = buildSnapshot(read.configZ, read.logs)
  }

  /** Opens a reader on `repo`, loads the first snapshot and starts watching. */
  static async open(repo: string, opts: WatchOptions = {}): Promise<GatewayConfig> {
    const reader = await BranchReader.open(isAbsolute(repo) ? repo : resolve(repo))
    try {
      // Stat before reading: a change made meanwhile is then seen by the first check.
      const before = await fingerprint(reader, [join(reader.gitDir, 'config')])
      const [configZ, logs] = await Promise.all([readGitConfig(reader.repo), readLogs(reader)])
      // Included files were not known before the read, so not stat'ed: an unmatchable
      // config print makes the first check read them once more and stat them.
      const print = configFiles(reader.gitDir, configZ).length === 1 ? before : { ...before, config: '' }
      const g = new GatewayConfig(reader, { configZ, logs, print }, {
        pollMs: opts.pollMs ?? 2000,
        debounceMs: opts.debounceMs ?? 100,
        fsWatch: opts.fsWatch ?? true,
        ...(opts.log ? { log: opts.log } : {}),
      })
      g.start()
      return g
    } catch (e) {
      await reader.close()
      throw e
    }
  }

  get current(): GatewaySnapshot {
    return this.snap
  }

  /**
   * Who holds `key` by this repository's location log (journal included), as
   * `git annex whereis` lists them: clusters derived from their live nodes (§3.6), dead
   * repositories left out unless asked for. Sorted.
   */
  async locations(key: Key, opts: { includeDead?: boolean } = {}): Promise<Uuid[]> {
    const s = this.snap
    const all = presentUuids(await this.reader.readText(locationLogPath(key)), s.clusterLog)
    return opts.includeDead ? all : all.filter((u) => s.trust.get(u) !== 'dead')
  }

  /** Re-reads now if anything changed; resolves when the snapshot is current. */
  async refresh(): Promise<void> {
    if (this.running) {
      this.again = true
      return this.running
    }
    this.running = this.check().finally(() => {
      this.running = undefined
    })
    return this.running
  }

  async close(): Promise<void> {
    this.closed = true
    for (const w of this.watchers.values()) w.close()
    this.watchers.clear()
    if (this.poll) clearInterval(this.poll)
    if (this.debounce) clearTimeout(this.debounce)
    await this.running?.catch(() => undefined)
    await this.reader.close()
  }

  private start(): void {
    this.ensureWatchers()
    this.poll = setInterval(() => this.kick(), this.opts.pollMs)
    this.poll.unref()
  }

  /** Watches the directories whose entries change with the configuration; ones made later are added on the next check. */
  private ensureWatchers(): void {
    if (!this.opts.fsWatch || this.closed) return
    const g = this.reader.gitDir
    for (const d of [g, join(g, 'refs', 'heads'), join(g, 'annex'), this.reader.journalDir, this.reader.privateJournalDir]) {
      if (this.watchers.has(d)) continue
      try {
        const w = watch(d, { persistent: false }, () => this.kick())
        w.on('error', () => {
          w.close()
          this.watchers.delete(d)
        })
        this.watchers.set(d, w)
      } catch {
        // Not there (yet): the poll covers it until it appears.
      }
    }
  }

  private kick(): void {
    if (this.closed) return
    if (this.debounce) clearTimeout(this.debounce)
    this.debounce = setTimeout(() => {
      this.debounce = undefined
      this.refresh().catch(() => undefined)
    }, this.opts.debounceMs)
    this.debounce.unref()
  }

  private async check(): Promise<void> {
    this.ensureWatchers()
    do {
      this.again = false
      if (this.closed) return
      const files = configFiles(this.reader.gitDir, this.configZ)
      const print = await fingerprint(this.reader, files)
      const configChanged = print.config !== this.print.config
      if (!configChanged && print.logs === this.print.logs) continue
      try {
        const [configZ, logs] = await Promise.all([configChanged ? readGitConfig(this.reader.repo) : this.configZ, readLogs(this.reader)])
        // Something moved while we read: read again so we never keep a half-written state.
        // Includes named anew are stat'ed from the next check on: that counts as a move.
        const newFiles = configFiles(this.reader.gitDir, configZ)
        const after = await fingerprint(this.reader, newFiles)
        if (after.config !== print.config || after.logs !== print.logs || newFiles.join('\0') !== files.join('\0')) this.again = true
        this.print = print
        // The journal commit before each answer moves the ref without touching these logs.
        if (configZ === this.configZ && sameLogs(logs, this.logs)) continue
        const snap = buildSnapshot(configZ, logs)
        this.configZ = configZ
        this.logs = logs
        this.snap = snap
        if (!this.closed) this.emit('change', snap)
      } catch (e) {
        this.opts.log?.warn({ err: e }, 'reloading the gateway configuration failed')
        if (!this.closed && this.listenerCount('error') > 0) this.emit('error', e)
      }
    } while (this.again && !this.closed)
  }
}
