// What one served repository answers for (spec §2.9, §3): its own UUID, and — when it
// is a gateway — each cluster and proxied remote that proxy.log lists and the §3.2
// check allows. Each UUID resolves to a Remote: the repository itself, a Cluster over
// node remotes, or a proxied node. Configuration comes from the repository (git config
// and git-annex branch, re-read on change), so updatecluster or a new `wanted` takes
// effect without a restart. Node remotes and clusters are opened once and reused; one
// that a change replaces or leaves unused is closed (it refuses new calls at once and
// finishes those in flight), and close() closes them all.
//
// A request that looked a remote up just before a change and calls it only after the
// change gets ClosedError (503), and git-annex retries on its next run: reference
// counting per request would need a release from every caller, for a rare window.
//
// The S3 SDK and undici are imported when the first S3 or annex+http remote opens: a server
// that serves none (a forge of plain repositories) starts without loading them (seconds on
// a busy machine).
import type { ServerEvents } from '../metrics/metrics.js'
import { isAbsolute, resolve } from 'node:path'
import type { Key } from '../keys/key.js'
import { serializeKey, tryParseKey } from '../keys/key.js'
import { Cluster, type ClusterNode as NodeRemote, type ClusterPolicy, type Holders, type Placement } from '../remotes/cluster.js'
import { LocationLog, type Settle } from '../annex/location-log.js'
import { LocalRepo, openLocalRepo } from '../remotes/local-repo.js'
import { Recorded } from '../remotes/recorded.js'
import type { Logger, Op, Remote, Uuid } from '../remotes/remote.js'
import { openStdioRepo, sshCommand } from '../remotes/stdio-repo.js'
import type { HasherKind } from '../streams/verify.js'
import { isClusterUuid } from '../annex/uuid.js'
import { GatewayConfig, type ClusterInfo, type GatewaySnapshot, type RemoteInfo } from './gateway-config.js'
import { RepoSizes } from '../annex/repo-sizes.js'
import { LocalCoordinator, NO_RESERVATION, type Coordinator, type Reservation } from '../placement/coordinator.js'
import { decidePlacement, hasRoom, liveSizes, type PlacementDecision } from '../placement/decide.js'
import { Reserved } from './reserved.js'
import { reservedBytes } from '../placement/ledger.js'
import { hopsVia } from '../placement/hops.js'
import { DiskFullError } from '../errors.js'
import { isAbsolute as isAbsolutePath, join } from 'node:path'
import { ChunkLog } from '../remotes/special/chunk-log.js'
import { DirectoryStore } from '../remotes/directory/directory-store.js'
import { servingPath } from '../remotes/special/serving-path.js'
import { SpecialRemote } from '../remotes/special/special-remote.js'
import { chunkConfigOf } from '../remotes/special/chunks.js'
import { ViaGitAnnex } from '../remotes/special/via-git-annex.js'
import { Guarded } from './guarded.js'
import type { LocationFact } from '../placement/ledger.js'
import { ChunkCached } from '../remotes/chunk-cached.js'
import { ChunkCache, type CacheSpace } from '../streams/chunk-cache.js'
import { DiskReserve } from '../streams/disk-reserve.js'
import { StagingReserved } from '../remotes/staging-reserved.js'
import type { S3IndirectUploads, IndirectUploadOptions } from '../remotes/s3/indirect-upload.js'
import { findS3Credentials } from '../remotes/s3/credentials.js'
import { parseS3Settings } from '../remotes/s3/settings.js'
import { BadRequestError, ConfigError, RemoteUnavailableError } from '../errors.js'

/** Everything open() reads from a RemoteInfo: when this changes, the node is opened anew. */
function openedAs(info: RemoteInfo): string {
  const sorted = (m: ReadonlyMap<string, string>) => [...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  // Its cost orders nodes; it does not change how one is reached.
  const git = sorted(info.gitConfig).filter(([k]) => !k.startsWith('annex-cost'))
  return JSON.stringify([info.name, info.uuid, info.url ?? '', info.annexUrl ?? '', info.special, sorted(info.remoteConfig), git])
}

/** The (node, served UUID) pairs the snapshot reaches through its remotes, whatever a request's bypass. */
function reachable(snap: GatewaySnapshot): Set<string> {
  const out = new Set<string>()
  const add = (info: RemoteInfo, uuid: Uuid) => out.add(`${openedAs(info)} ${uuid}`)
  for (const t of snap.served.values()) {
    if (t.kind === 'remote') add(t.remote, t.remote.uuid)
    else if (t.kind === 'via-gateway') add(t.gateway, t.uuid)
    else if (t.kind === 'cluster') {
      for (const n of t.cluster.nodes) {
        const info = snap.remotes.get(n.remote)
        if (info) add(info, n.via === 'node' ? info.uuid : t.cluster.uuid)
      }
    }
  }
  return out
}

interface OpenedNode {
  /** openedAs(info) and the UUID it reaches: compared with reachable(). */
  readonly reaches: string
  readonly remote: Promise<Remote | undefined>
}

export interface GatewayOptions {
  readonly hasher: HasherKind
  readonly log: Logger
  /** Bytes buffered per node branch of a cluster upload. */
  readonly fanoutHighWaterMark: number
  /** A node that takes no bytes for this long is dropped from a cluster upload. */
  readonly fanoutStallMs: number
  /** Most requests served at once (--jobs): the most sessions or connections one node gets. */
  readonly jobs?: number
  /** Idle git-annex-shell sessions kept open to each proxied remote (--proxyconnections; default: all). */
  readonly proxyConnections?: number
  /** Parts of one S3 multipart upload sent at once (--s3-parts; default: S3Store's). */
  readonly s3PartsInFlight?: number
  /**
   * Where placement state lives: this process (default) or Redis, shared by a fleet of
   * gateways over the same nodes. Shared by every gateway of the process; not closed here.
   */
  readonly coordinator?: Coordinator
  /** Data-plane events for metrics (cluster nodes dropped from uploads). */
  readonly events?: Pick<ServerEvents, 'fanoutNodeDropped'>
  /**
   * Retrieves from remotes reached over a network or through git-annex go through a chunk
   * cache in the gateway's .git/annex, within this shared budget (--cache-size).
   */
  readonly cache?: { readonly space: CacheSpace; readonly chunkBytes: number }
  /**
   * When this repository's location-log changes settle (LocationLog): 'journal' (default:
   * committed when idle, as git annex p2phttp; for a p2pstdio session, when it ends, as
   * git-annex-shell) or 'commit' (before each answer: --location-log-commit answer, for clients
   * that fetch the branch after each answer).
   */
  readonly locationLogSettle?: Settle
}

/** An S3 special remote a client may upload to directly (presigned PUT), and how to record it. */
export interface IndirectTarget {
  readonly uploads: S3IndirectUploads
  /** The remote as the gateway serves it. */
  readonly remote: Remote
  /** Records in the gateway's location log that the remote holds `key`. */
  recordPresent(key: Key): Promise<void>
}

export class Gateway {
  private readonly nodes = new Map<string, OpenedNode>()
  /** Remotes on a local filesystem that the chunk cache would not speed up. */
  private readonly onDisk = new WeakSet<Remote>()
  private readonly indirectUploads = new Map<string, { signature: string; uploads: Promise<S3IndirectUploads> }>()
  private readonly clusters = new Map<string, { members: readonly NodeRemote[]; cluster: Cluster }>()
  /** Remotes replaced or unused, closing: close() waits for them too. */
  private readonly retiring = new Set<Promise<void>>()
  private closed = false
  private readonly unsubscribe: () => void
  private readonly repoSizes: RepoSizes
  private readonly coordinator: Coordinator
  private readonly ownCoordinator: boolean

  private constructor(
    readonly dir: string,
    readonly self: LocalRepo,
    private readonly config: GatewayConfig,
    private readonly locationLog: LocationLog,
    private readonly opts: GatewayOptions,
    private readonly chunkCache: ChunkCache | undefined,
  ) {
    this.repoSizes = new RepoSizes(config.reader)
    this.ownCoordinator = opts.coordinator === undefined
    this.coordinator = opts.coordinator ?? new LocalCoordinator()
    // What other gateways of a fleet stored or removed on our nodes goes into our own
    // location log, as syncing the branches would bring it later: sizes, locations and
    // routing then agree across the fleet.
    this.unsubscribe = this.coordinator.subscribe?.((facts) => this.learn(facts)) ?? (() => {})
    config.on('change', (snap: GatewaySnapshot) => this.retireUnreachable(snap))
  }

  static async open(dir: string, opts: GatewayOptions): Promise<Gateway> {
    const settle = opts.locationLogSettle ? { settle: opts.locationLogSettle } : {}
    // One writer for the repository's location log: its own content and its nodes' (spec §3.6).
    const locationLog = new LocationLog(dir, { log: opts.log, ...settle })
    const self = await openLocalRepo(dir, { hasher: opts.hasher, log: opts.log, locationLog })
    let cache: ChunkCache | undefined
    try {
      if (opts.cache && opts.cache.space.maxBytes > 0) {
        // On the gateway's own filesystem, under its own annex.diskreserve.
        const annexDir = `${self.layout.gitDir}/annex`
        cache = await ChunkCache.open({
          dir: `${annexDir}/annex-proxy-cache`,
          chunkBytes: opts.cache.chunkBytes,
          space: opts.cache.space,
          reserve: new DiskReserve(annexDir, self.diskReserve),
          log: opts.log,
        })
      }
      const config = await GatewayConfig.open(dir, { log: opts.log })
      config.on('error', (err: unknown) => opts.log.warn({ repo: dir, err }, 'gateway configuration could not be re-read; keeping the last one'))
      return new Gateway(dir, self, config, locationLog, opts, cache)
    } catch (err) {
      await cache?.close()
      await self.close()
      await locationLog.close()
      throw err
    }
  }

  get uuid(): Uuid {
    return this.self.uuid
  }

  /** Every UUID answered for right now. */
  uuids(): Uuid[] {
    return [this.self.uuid, ...[...this.config.current.servedUuids()].filter((u) => u !== this.self.uuid)]
  }

  serves(uuid: string): boolean {
    return uuid === this.self.uuid || this.config.current.servedUuids().has(uuid as Uuid)
  }

  /**
   * The Remote answering for `uuid`. `bypass` lists gateways already on the request's
   * path: a cluster never routes back through them or through us (spec §3.3).
   */
  async lookup(uuid: string, bypass: readonly string[] = []): Promise<Remote | undefined> {
    if (uuid === this.self.uuid) return this.self
    const snap = this.config.current
    const target = snap.served.get(uuid as Uuid)
    if (!target) return undefined
    const path = this.pathOf(snap, bypass)
    switch (target.kind) {
      case 'self':
        return this.self
      case 'cluster':
        return this.cluster(snap, target.cluster, path)
      case 'remote': {
        const r = await this.node(target.remote)
        return r ? this.single(r) : undefined
      }
      case 'via-gateway': {
        if (path.includes(target.gateway.uuid)) return undefined
        const r = await this.through(target.gateway, target.uuid, path)
        return r ? this.single(r) : undefined
      }
    }
  }

  /**
   * The gateways a request relayed from here has passed: ours, plus those of the client's
   * bypass that proxy something (proxy.log). Other UUIDs cannot change any gateway's
   * routing, so dropping them keeps the set of distinct paths (and connections) small.
   */
  private pathOf(snap: GatewaySnapshot, bypass: readonly string[]): Uuid[] {
    const known = bypass.filter((u) => u !== this.self.uuid && snap.proxyLog.has(u as Uuid)) as Uuid[]
    return [this.self.uuid, ...new Set(known)].sort()
  }

  private async cluster(snap: GatewaySnapshot, info: ClusterInfo, path: readonly Uuid[]): Promise<Cluster | undefined> {
    const members: NodeRemote[] = []
    for (const n of info.nodes) {
      const remoteInfo = snap.remotes.get(n.remote)
      if (!remoteInfo) continue
      let r: Remote | undefined
      if (n.via === 'node') r = await this.node(remoteInfo)
      // The same cluster behind another gateway, unless that gateway is already on the path.
      else if (!path.includes(remoteInfo.uuid)) r = await this.through(remoteInfo, info.uuid, path)
      // A GET prefers, at equal cost, the node with the fewest gateways in between.
      if (r) members.push({ remote: r, cost: n.cost, hops: n.via === 'node' ? 1 : hopsVia(snap.proxyLog, remoteInfo.uuid, info.uuid) })
    }
    const cacheKey = `${info.uuid}|${path.join(',')}`
    const cached = this.clusters.get(cacheKey)
    const same = (a: readonly NodeRemote[], b: readonly NodeRemote[]) => a.length === b.length && a.every((m, i) => m.remote === b[i]!.remote && m.cost === b[i]!.cost && m.hops === b[i]!.hops)
    if (cached && !cached.cluster.closed && same(cached.members, members)) return cached.cluster
    if (cached) this.retire(cached.cluster)
    const policy: ClusterPolicy = {
      nodes: members,
      targets: (key, op, reserve) => this.targets(members, key, op, reserve ?? false),
      holders: (key) => this.holders(members, key),
      record: (key, uuids, present) => this.record(key, uuids, present),
    }
    const cluster = new Cluster(info.uuid, policy, {
      highWaterMark: this.opts.fanoutHighWaterMark,
      stallMs: this.opts.fanoutStallMs,
      hasher: this.opts.hasher,
      ...(this.opts.events ? { onNodeDropped: (c: Uuid, n: Uuid) => this.opts.events!.fanoutNodeDropped(c, n) } : {}),
    })
    this.clusters.set(cacheKey, { members, cluster })
    return cluster
  }

  /** The configuration as last read (re-read when it changes). */
  get snapshot(): GatewaySnapshot {
    return this.config.current
  }

  /**
   * The nodes of cluster `name` this gateway reaches itself (not the same cluster behind
   * other gateways), each as served on its own: stores admitted under its maxsize and
   * logged, removes kept off content locked through any gateway. What rebalance moves
   * content between. undefined: no such cluster.
   */
  async clusterNodes(name: string): Promise<Array<{ uuid: Uuid; name: string; remote: Remote }> | undefined> {
    const snap = this.config.current
    const info = snap.clusters.get(name)
    if (!info) return undefined
    const out: Array<{ uuid: Uuid; name: string; remote: Remote }> = []
    for (const n of info.nodes) {
      const ri = n.via === 'node' ? snap.remotes.get(n.remote) : undefined
      const r = ri ? await this.node(ri) : undefined
      if (ri && r) out.push({ uuid: ri.uuid, name: ri.name, remote: this.single(r) })
    }
    return out
  }

  /** Repository sizes as git-annex counts them, and every sized key's logged locations, read now. */
  async placementState(): Promise<{ committed: Map<Uuid, number>; holdings: Array<{ key: Key; uuids: readonly Uuid[] }> }> {
    await this.repoSizes.refresh()
    return { committed: this.repoSizes.sizes(), holdings: this.repoSizes.holdings() }
  }

  /** Who holds `key` by the gateway's location log, read now (dead repositories left out). */
  locationsOf(key: Key): Promise<Uuid[]> {
    return this.config.locations(key)
  }

  /** Records in the gateway's location log that `uuid` has (or no longer has) the key. */
  recordLocation(key: Key, uuid: Uuid, present: boolean): Promise<void> {
    return this.record(key, [uuid], present)
  }

  /** A file of the git-annex branch (journal included), e.g. numcopies.log. */
  readBranchFile(path: string): Promise<string | undefined> {
    return this.config.reader.readText(path)
  }

  /** A node served on its own: what it stores is logged, and counted against its maxsize while in flight. */
  private single(r: Remote): Remote {
    const uuid = r.uuid
    return new Reserved(new Recorded(r, (k, us, p) => this.record(k, us, p)), { admit: (key, op, reserve) => this.admit(uuid, key, op, reserve) })
  }

  /**
   * Room for `key` on node `uuid` under its maxsize, counting uploads in flight to it from
   * anywhere (cluster fan-outs and single-node uploads, through any gateway of a fleet), as
   * a cluster decides (placement/decide.ts hasRoom). With `reserve`, the key's size counts
   * on the node until release(). A node without maxsize, or that the location log says
   * holds the key already, needs no room. None: DiskFullError.
   */
  private async admit(uuid: Uuid, key: Key, op: Op, reserve: boolean): Promise<Reservation> {
    if (!this.config.current.maxSize.has(uuid)) return NO_RESERVATION
    const state = { locations: new Set<string>() as ReadonlySet<string>, committed: new Map() as ReadonlyMap<string, number> }
    const size = key.size ?? 0
    const placed = await this.coordinator.place<boolean>({
      nodes: [uuid],
      key: serializeKey(key),
      shared: true,
      prepare: () => this.prepare(key, op, state),
      decide: (reservations) => {
        if (state.locations.has(uuid)) return { value: true, reserve: [], size: 0 }
        const sizes = liveSizes(state.committed, reservedBytes(reservations, (k, u) => this.repoSizes.counts(k, u)))
        const room = hasRoom(this.config.current, sizes, uuid, size)
        return { value: room, reserve: room && reserve ? [uuid] : [], size }
      },
    })
    if (!placed.value) {
      await placed.reservation.release()
      throw new DiskFullError(`${serializeKey(key)} does not fit on ${uuid} under its maxsize, counting uploads in flight`)
    }
    return placed.reservation
  }

  /** What a placement decision reads: the key's locations and (when a maxsize matters) repository sizes. */
  private async prepare(key: Key, op: Op, into: { locations: ReadonlySet<string>; committed: ReadonlyMap<string, number> }): Promise<void> {
    into.locations = new Set<string>(await this.config.locations(key))
    if (this.config.current.maxSize.size === 0) return
    // Sizes that cannot be brought up to date are used as last read: a placement a little
    // off is better than a refused upload.
    await this.repoSizes.refresh().catch((err: unknown) => op.log.warn({ err }, 'repository sizes could not be re-read; using the last ones'))
    into.committed = this.repoSizes.sizes()
  }

  /**
   * Spec §3.4 as decided by placement/decide.ts: nodes lacking the key that want it and have
   * room under their maxsize, else every node lacking it with room, else (all hold it) all.
   * Repository sizes are read only when some repository has a maxsize: without one, no
   * expression's answer depends on them (spec §7.5). With `reserve`, the key's size counts
   * on the targets lacking it until `release()`, for every upload's decision meanwhile,
   * through this gateway or any of its fleet (the coordinator makes decide-and-reserve one
   * step). No node lacking the key has room: DiskFullError, never an overfilled node.
   */
  private async targets(members: readonly NodeRemote[], key: Key, op: Op, reserve: boolean): Promise<Placement> {
    const nodes = members.map((m) => m.remote.uuid)
    const state = { locations: new Set<string>() as ReadonlySet<string>, committed: new Map() as ReadonlyMap<string, number> }
    const placed = await this.coordinator.place<PlacementDecision>({
      nodes,
      key: serializeKey(key),
      shared: nodes.some((u) => this.config.current.maxSize.has(u)),
      prepare: () => this.prepare(key, op, state),
      decide: (reservations) => {
        const reserved = reservedBytes(reservations, (k, u) => this.repoSizes.counts(k, u))
        const value = decidePlacement({ policy: this.config.current, key, file: op.associatedFile, nodes, locations: state.locations, committed: state.committed, reserved })
        return { value, reserve: reserve && value.kind === 'send' ? value.reserve : [], size: value.kind === 'send' ? value.size : 0 }
      },
    })
    const d = placed.value
    if (d.kind === 'full') {
      await placed.reservation.release()
      throw new DiskFullError(`no node of the cluster lacking ${serializeKey(key)} has room for it under its maxsize`)
    }
    const chosen = new Set<string>(d.targets)
    return { nodes: members.filter((m) => chosen.has(m.remote.uuid)), release: () => void placed.reservation.release().catch((err: unknown) => op.log.warn({ err }, 'could not release a placement reservation')) }
  }

  /** Nodes the location log says hold the key, and the rest. */
  private async holders(members: readonly NodeRemote[], key: Key): Promise<Holders> {
    const held = new Set<string>(await this.config.locations(key))
    return { held: members.filter((m) => held.has(m.remote.uuid)), rest: members.filter((m) => !held.has(m.remote.uuid)) }
  }

  private async record(key: Key, uuids: readonly Uuid[], present: boolean): Promise<void> {
    const facts: LocationFact[] = []
    // All at once: they settle together, in one commit of the git-annex branch.
    await Promise.all(
      [...new Set(uuids)]
        // Cluster UUIDs are never written to location logs (spec §3.6).
        .filter((u) => !isClusterUuid(u) && u !== this.self.uuid)
        .map(async (u) => {
          try {
            await this.locationLog.record(key, u, present)
            facts.push({ key: serializeKey(key), uuid: u, present, size: key.size ?? 0 })
          } catch (err) {
            this.opts.log.warn({ key: serializeKey(key), uuid: u, err }, 'could not record location in the gateway')
          }
        }),
    )
    // Published before an upload's reservation is released, so the fleet never counts its
    // bytes neither reserved nor logged; kept for later when Redis is away.
    if (facts.length > 0 && this.coordinator.fleet) await this.coordinator.publish(facts)
  }

  /** Records facts other gateways published about nodes this gateway knows. */
  private async learn(facts: readonly LocationFact[]): Promise<void> {
    const snap = this.config.current
    const known = new Set<string>([...snap.remotes.values()].map((r) => r.uuid))
    for (const f of facts) {
      if (!known.has(f.uuid) || isClusterUuid(f.uuid) || f.uuid === this.self.uuid) continue
      const key = tryParseKey(f.key)
      if (!key) continue
      await this.locationLog.record(key, f.uuid as Uuid, f.present).catch((err: unknown) => this.opts.log.warn({ key: f.key, uuid: f.uuid, err }, 'could not record a location learnt from the fleet'))
    }
  }

  /** The Remote for one of the gateway's git remotes, opened once and reused. */
  private node(info: RemoteInfo): Promise<Remote | undefined> {
    return this.opened(info, info.uuid, [this.self.uuid])
  }

  /**
   * Opens, in the background, the S3 remotes served natively that this gateway proxies or
   * clusters, so that loading the S3 SDK (about 0.6 CPU s) and building their clients, with
   * the bucket's annex-uuid check, happen when the server starts rather than inside the first
   * upload. A remote that cannot be reached now is logged and opened again on its first
   * request, as any node.
   */
  warmS3Remotes(): void {
    if (this.closed) return
    const snap = this.config.current
    const infos = new Map<Uuid, RemoteInfo>()
    for (const t of snap.served.values()) {
      if (t.kind === 'remote') infos.set(t.remote.uuid, t.remote)
      else if (t.kind === 'cluster') {
        for (const n of t.cluster.nodes) {
          const info = snap.remotes.get(n.remote)
          if (info && n.via === 'node') infos.set(info.uuid, info)
        }
      }
    }
    for (const info of infos.values()) {
      if (info.special && servingPath(info.remoteConfig, info.gitConfig).kind === 'S3') void this.node(info)
    }
  }

  /** `uuid` as served by another gateway `gw` (a cluster or a remote it proxies), asked to bypass `path`. */
  private through(gw: RemoteInfo, uuid: Uuid, path: readonly Uuid[]): Promise<Remote | undefined> {
    return this.opened(gw, uuid, path)
  }

  private opened(info: RemoteInfo, uuid: Uuid, bypass: readonly Uuid[]): Promise<Remote | undefined> {
    const reaches = `${openedAs(info)} ${uuid}`
    const id = `${reaches} ${bypass.join(',')}`
    let node = this.nodes.get(id)
    if (!node) {
      const remote = this.open(info, uuid, bypass).then((r) => this.cached(r)).then((r) => (r ? new Guarded(r, this.coordinator) : undefined)).catch((err: unknown) => {
        this.opts.log.warn({ remote: info.name, uuid, err }, 'cannot reach proxied remote')
        if (this.nodes.get(id) === node) this.nodes.delete(id)
        return undefined
      })
      node = { reaches, remote }
      this.nodes.set(id, node)
    }
    return node.remote
  }

  /**
   * After a configuration change: nodes the snapshot no longer reaches (removed, or
   * opened from settings that changed) are closed, and so are the clusters built on them;
   * clusters are rebuilt on their next lookup.
   */
  private retireUnreachable(snap: GatewaySnapshot): void {
    if (this.closed) return
    const keep = reachable(snap)
    const gone: Array<Promise<Remote | undefined>> = []
    for (const [id, node] of this.nodes) {
      if (keep.has(node.reaches)) continue
      this.nodes.delete(id)
      gone.push(node.remote)
    }
    const done = Promise.all(gone).then((remotes) => {
      const stale = new Set(remotes.filter((r): r is Remote => r !== undefined))
      for (const [key, c] of this.clusters) {
        const served = snap.served.get(c.cluster.uuid)?.kind === 'cluster'
        if (served && !c.members.some((m) => stale.has(m.remote))) continue
        this.clusters.delete(key)
        this.retire(c.cluster)
      }
      for (const r of stale) this.retire(r)
    })
    this.track(done)
  }

  /** Closes `r` once its calls in flight are done (close() refuses new ones at once). */
  private retire(r: Remote): void {
    this.track(r.close())
  }

  private track(p: Promise<unknown>): void {
    const t: Promise<void> = p.then(
      () => undefined,
      (err: unknown) => this.opts.log.warn({ err }, 'closing a replaced remote failed'),
    )
    this.retiring.add(t)
    void t.finally(() => this.retiring.delete(t))
  }

  /** @internal For tests: the node remotes and clusters held open right now. */
  held(): { nodes: Promise<Array<Remote | undefined>>; clusters: Cluster[] } {
    return { nodes: Promise.all([...this.nodes.values()].map((n) => n.remote)), clusters: [...this.clusters.values()].map((c) => c.cluster) }
  }

  /**
   * Remotes whose bytes cost time or money to read again — anything but a repository on
   * the gateway's own filesystem — are read through the chunk cache.
   */
  private cached(r: Remote | undefined): Remote | undefined {
    if (!r || !this.chunkCache || r instanceof LocalRepo || this.onDisk.has(r)) return r
    return new ChunkCached(r, this.chunkCache, { hasher: this.opts.hasher })
  }

  /**
   * Reaches `uuid` through git remote `info`: itself when `uuid` is the remote's own UUID,
   * or something it proxies. A local path is opened directly for the remote itself, and
   * through a local git-annex-shell for what it proxies (only git-annex-shell routes it).
   */
  private async open(info: RemoteInfo, uuid: Uuid, bypass: readonly Uuid[]): Promise<Remote | undefined> {
    if (info.special) return uuid === info.uuid ? this.openSpecial(info) : undefined
    const base = { uuid, clientUuid: this.self.uuid, bypass }
    // annex+http nodes (spec §9.20: a capability the reference gateway lacks). undici closes
    // idle connections after the keep-alive timeout; it has no bound on idle ones to honour.
    if (info.annexUrl) return new (await import('../remotes/http-repo.js')).HttpRepo(info.annexUrl, base)
    // A held lock keeps a session: at least 4, as many as requests are served at once.
    const maxSessions = Math.max(4, this.opts.jobs ?? 4)
    const sessions = { maxSessions, maxIdle: Math.min(maxSessions, this.opts.proxyConnections ?? maxSessions) }
    if (!info.url) return undefined
    const url = info.url
    const ssh = /^ssh:\/\/([^/]+)(\/.*)$/.exec(url) ?? /^([^/:]+@?[^/:]*):(.+)$/.exec(url)
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url) && !url.startsWith('file://') && !url.startsWith('ssh://')) return undefined
    if (ssh && !url.startsWith('file://') && !isAbsolute(url) && !url.startsWith('.')) {
      const [, host, path] = ssh
      return openStdioRepo({ ...base, ...sessions, dir: path!, command: sshCommand(host!) })
    }
    const path = resolve(this.dir, url.startsWith('file://') ? url.slice('file://'.length) : url)
    if (uuid !== info.uuid) return openStdioRepo({ ...base, ...sessions, dir: path })
    // A node's branch is read by no client of this gateway: its log settles in the journal
    // and is committed when idle, as by a git-annex-shell session on the node.
    const repo = await openLocalRepo(path, { hasher: this.opts.hasher, log: this.opts.log, logSettle: 'journal' })
    if (repo.uuid !== info.uuid) {
      await repo.close()
      throw new Error(`remote ${info.name} at ${path} has UUID ${repo.uuid}, expected ${info.uuid}`)
    }
    return repo
  }

  /**
   * One of the gateway's special remotes: S3 and directory natively (streamed, verified,
   * git-annex's layout and chunk logs in the gateway's branch), any other through the
   * gateway's own git-annex-shell, which proxies it as the reference does.
   */
  private async openSpecial(info: RemoteInfo): Promise<Remote> {
    const path = servingPath(info.remoteConfig, info.gitConfig)
    const log = this.opts.log
    const chunkLog = ChunkLog.over(this.config.reader)
    switch (path.kind) {
      case 'S3':
        return (await import('../remotes/s3/open.js')).openS3Remote({ uuid: info.uuid, gitDir: this.self.layout.gitDir, config: info.remoteConfig, chunkLog, hasher: this.opts.hasher, log, ...(this.opts.s3PartsInFlight !== undefined ? { store: { partsInFlight: this.opts.s3PartsInFlight } } : {}) })
      case 'directory': {
        const dir = isAbsolutePath(path.dir) ? path.dir : join(this.dir, path.dir)
        log.info({ remote: info.name, uuid: info.uuid, dir }, 'directory special remote served natively')
        const special = new SpecialRemote({ uuid: info.uuid, store: new DirectoryStore(dir), chunking: chunkConfigOf(info.remoteConfig), chunkLog, hasher: this.opts.hasher, log })
        // An upload is booked against the gateway's annex.diskreserve on the directory's own
        // filesystem first, as git-annex's directory remote checks it.
        const remote = new StagingReserved(special, new DiskReserve(dir, this.self.diskReserve), { retrieves: false })
        // A directory reads back as fast as a cached chunk would.
        this.onDisk.add(remote)
        return remote
      }
      case 'git-annex': {
        log.info({ remote: info.name, uuid: info.uuid, why: path.why }, 'special remote served through the gateway\'s git-annex')
        const maxSessions = Math.max(4, this.opts.jobs ?? 4)
        const sessions = { maxSessions, maxIdle: Math.min(maxSessions, this.opts.proxyConnections ?? maxSessions) }
        // The gateway's git-annex stages every transfer whole in its .git/annex (spec §4):
        // booked against the gateway's annex.diskreserve first, which the reference skips.
        const reserve = new DiskReserve(`${this.self.layout.gitDir}/annex`, this.self.diskReserve)
        return new StagingReserved(new ViaGitAnnex(openStdioRepo({ uuid: info.uuid, clientUuid: this.self.uuid, bypass: [], dir: resolve(this.dir), ...sessions })), reserve)
      }
    }
  }

  /**
   * Indirect uploads to `uuid` (presigned PUTs, --indirect-upload): only an unchunked S3
   * special remote served natively qualifies; anything else is refused with the reason.
   */
  async indirect(uuid: string, opts: IndirectUploadOptions): Promise<IndirectTarget> {
    const target = this.config.current.served.get(uuid as Uuid)
    const refuse = (why: string) => new BadRequestError(`indirect upload is not available for ${uuid}: ${why}`)
    if (!target || target.kind !== 'remote' || !target.remote.special) throw refuse('only an S3 special remote the gateway proxies takes indirect uploads')
    const info = target.remote
    const path = servingPath(info.remoteConfig, info.gitConfig)
    if (path.kind !== 'S3') throw refuse(path.kind === 'git-annex' ? `it is served through git-annex (${path.why})` : 'it is not an S3 remote')
    const settings = parseS3Settings(info.remoteConfig)
    if (settings.chunking.kind !== 'none') throw refuse('it is chunked (chunk=); an upload must be one object')
    const signature = JSON.stringify([...info.remoteConfig].sort())
    let entry = this.indirectUploads.get(uuid)
    if (!entry || entry.signature !== signature) {
      const old = entry
      const uploads = (async () => {
        const creds = await findS3Credentials(info.uuid, this.self.layout.gitDir, info.remoteConfig)
        if (!creds) throw new ConfigError(`no S3 credentials for ${info.name} (${info.uuid})`)
        const [{ S3IndirectUploads }, { S3Store }] = await Promise.all([import('../remotes/s3/indirect-upload.js'), import('../remotes/s3/s3-store.js')])
        return new S3IndirectUploads(info.uuid, new S3Store(settings, creds), { ...opts, log: this.opts.log })
      })()
      uploads.catch(() => this.indirectUploads.delete(uuid))
      entry = { signature, uploads }
      this.indirectUploads.set(uuid, entry)
      if (old) void old.uploads.then((u) => u.close(), () => undefined)
    }
    const remote = await this.lookup(uuid)
    if (!remote) throw new RemoteUnavailableError(`cannot reach the S3 remote ${info.name} (${uuid})`)
    return { uploads: await entry.uploads, remote, recordPresent: (key) => this.record(key, [info.uuid], true) }
  }

  /** Clusters first (their calls use the nodes), then the nodes and the repository itself. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.unsubscribe()
    this.config.close()
    const clusters = [...this.clusters.values()].map((c) => c.cluster)
    this.clusters.clear()
    await Promise.all(clusters.map((c) => c.close()))
    const nodes = await Promise.all([...this.nodes.values()].map((n) => n.remote))
    this.nodes.clear()
    await Promise.all([this.self.close(), ...nodes.map((n) => n?.close()), ...this.retiring, this.ownCoordinator ? this.coordinator.close() : undefined])
    await this.chunkCache?.close()
    await Promise.all([...this.indirectUploads.values()].map((e) => e.uploads.then((u) => u.close(), () => undefined)))
    // Last: what the repository and its nodes recorded while finishing goes in too.
    await this.locationLog.close()
  }
}
