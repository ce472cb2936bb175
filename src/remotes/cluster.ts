// A cluster as one Remote (spec §3.4), a composite of its nodes' Remotes:
// - store: one pass over the body, teed to every target node concurrently and paced
//   by the slowest; a node that fails or stalls is dropped without failing the rest;
//   each node verifies before it commits, so nothing unverified lands anywhere;
// - retrieve: from the best-ranked holder, failing over mid-stream to the next one
//   and resuming at the byte reached;
// - remove: from every node; lock: not supported (clients lock single nodes).
import { type Readable, Readable as ReadableClass, pipeline } from 'node:stream'
import { AbortedError, NotSupportedError, ProxyError } from '../errors.js'
import type { Key } from '../keys/key.js'
import { ewma, rankHolders } from '../placement/node-choice.js'
import { skip } from '../streams/skip.js'
import { tee, type Tee } from '../streams/tee.js'
import { verifiedTee, type HasherKind, type Vouched } from '../streams/verify.js'
import { monotonicSeconds } from '../annex/clock.js'
import { RemoteBase, type Capability, type Lock, type Op, type Removed, type Remote, type Retrieved, type StoreOp, type StoreStart, type Stored, type Uuid } from './remote.js'

export interface ClusterNode {
  readonly remote: Remote
  readonly cost: number
  /** Gateways on the path to its content: 1 when reached directly (default), more behind other gateways. */
  readonly hops?: number
}

/** What the gateway knows and decides about a cluster (placement, location logs). */
export interface ClusterPolicy {
  readonly nodes: readonly ClusterNode[]
  /**
   * Nodes an upload of `key` goes to (spec §3.4: wanted, else not holding, else all). With
   * `reserve`, the key's size counts on them as in flight (for maxsize and size-balanced
   * choices made meanwhile) until `release()`.
   */
  targets(key: Key, op: Op, reserve?: boolean): Promise<Placement>
  /**
   * The nodes believed to hold `key` (asked first), and the rest (asked after, so a stale
   * log costs a lookup, not a false "absent").
   */
  holders(key: Key, op: Op): Promise<Holders>
  /** Records where content now is (present) or is not, in the gateway's location log. */
  record(key: Key, uuids: readonly Uuid[], present: boolean): Promise<void>
}

export interface Holders {
  readonly held: readonly ClusterNode[]
  readonly rest: readonly ClusterNode[]
}

export interface Placement {
  readonly nodes: readonly ClusterNode[]
  release(): void
}

export interface ClusterOptions {
  /** Bytes buffered per node branch of an upload; memory per upload ≤ (nodes+1) × (this + one chunk). */
  readonly highWaterMark: number
  /** A node whose branch has not drained for this long is dropped from the upload. */
  readonly stallMs: number
  /** Told of each node dropped from an upload (metrics). */
  readonly onNodeDropped?: (cluster: Uuid, node: Uuid) => void
  /** Hash implementation for verifying uploads at the gateway. */
  readonly hasher?: HasherKind
}

interface NodeStats {
  inFlight: number
  throughput: number | undefined
}

const everyNode = (nodes: readonly ClusterNode[], cap: Capability) => nodes.length > 0 && nodes.every((n) => n.remote.capabilities.has(cap))

export class Cluster extends RemoteBase {
  readonly capabilities: ReadonlySet<Capability>
  private readonly stats = new Map<string, NodeStats>()

  constructor(
    readonly uuid: Uuid,
    private readonly policy: ClusterPolicy,
    private readonly opts: ClusterOptions,
  ) {
    super()
    const caps: Capability[] = ['remove-before', 'timestamp']
    if (everyNode(policy.nodes, 'retrieve-from-offset')) caps.push('retrieve-from-offset')
    if (everyNode(policy.nodes, 'resume-store')) caps.push('resume-store')
    this.capabilities = new Set(caps)
  }

  private statsOf(uuid: string): NodeStats {
    let s = this.stats.get(uuid)
    if (!s) this.stats.set(uuid, (s = { inFlight: 0, throughput: undefined }))
    return s
  }

  /**
   * Holders first, each group ranked on its own: ranking them together put a cheaper or idler
   * node that lacks the key before the holders, and every GET paid a miss there first.
   */
  private async candidates(key: Key, op: Op): Promise<ClusterNode[]> {
    const { held, rest } = await this.policy.holders(key, op)
    return [...this.ranked(held), ...this.ranked(rest)]
  }

  private ranked(nodes: readonly ClusterNode[]): ClusterNode[] {
    const loads = nodes.map((n) => ({ node: n, uuid: n.remote.uuid as string, cost: n.cost, hops: n.hops ?? 1, ...this.statsOf(n.remote.uuid) }))
    return rankHolders(loads).map((l) => l.node)
  }

  protected override describe(): string {
    return `cluster ${this.uuid}`
  }

  protected async doCheckPresent(key: Key, op: Op): Promise<boolean> {
    for (const n of await this.candidates(key, op)) {
      try {
        if (await n.remote.checkPresent(key, op)) return true
      } catch (err) {
        op.log.warn({ node: n.remote.uuid, err }, 'cluster node failed checkpresent')
      }
    }
    return false
  }

  protected async doRetrieve(key: Key, offset: number, op: Op): Promise<Retrieved> {
    if (offset > 0 && !this.capabilities.has('retrieve-from-offset')) throw new NotSupportedError('a node of this cluster cannot retrieve from an offset')
    const queue = await this.candidates(key, op)
    const open = async (at: number): Promise<{ node: ClusterNode; r: Retrieved } | undefined> => {
      while (queue.length > 0) {
        const node = queue.shift()!
        try {
          const r = await node.remote.retrieve(key, at, op)
          if (r.length > 0 || (key.size !== undefined && at >= key.size && (await node.remote.checkPresent(key, op)))) return { node, r }
          r.body.destroy()
        } catch (err) {
          if (op.signal.aborted) throw err
          op.log.warn({ node: node.remote.uuid, err }, 'cluster node failed to start a retrieve')
        }
      }
      return undefined
    }
    const first = await open(offset)
    if (!first) return { length: 0, body: ReadableClass.from([]), valid: Promise.resolve(false) }
    const length = first.r.length
    const end = offset + length
    let settle!: (ok: boolean) => void
    const valid = new Promise<boolean>((r) => (settle = r))
    const self = this
    async function* failover(): AsyncGenerator<Buffer> {
      let cur = first!
      let pos = offset
      for (;;) {
        const s = self.statsOf(cur.node.remote.uuid)
        s.inFlight++
        const started = performance.now()
        const startPos = pos
        try {
          for await (const chunk of cur.r.body as AsyncIterable<Buffer>) {
            // A node must not send more than it announced for this range.
            const room = end - pos
            const part = chunk.length > room ? chunk.subarray(0, room) : chunk
            pos += part.length
            if (part.length > 0) yield part
          }
          if (pos === end && (await cur.r.valid)) {
            settle(true)
            return
          }
          throw new AbortedError(`node ${cur.node.remote.uuid} ended after ${pos - offset} of ${length} bytes`)
        } catch (err) {
          if (op.signal.aborted) throw err
          op.log.warn({ node: cur.node.remote.uuid, at: pos, err }, 'cluster node failed mid-retrieve; failing over')
          cur.r.body.destroy()
          const next = await open(pos)
          if (!next || next.r.length !== end - pos) {
            next?.r.body.destroy()
            throw err
          }
          cur = next
        } finally {
          s.inFlight--
          const secs = (performance.now() - started) / 1000
          if (secs > 0.01 && pos > startPos) s.throughput = ewma(s.throughput, (pos - startPos) / secs)
        }
      }
    }
    const body = ReadableClass.from(failover(), { objectMode: false })
    body.once('close', () => settle(false))
    return { length, body, valid }
  }

  protected async doStartStore(key: Key, op: Op): Promise<StoreStart> {
    const starts = await this.startAll((await this.policy.targets(key, op)).nodes, key, op)
    const pending = starts.filter((s) => s.start.kind === 'offset')
    if (pending.length === 0 && starts.length > 0) return { kind: 'present', plusUuids: this.holding(starts) }
    const offsets = pending.map((s) => (s.start.kind === 'offset' ? s.start.offset : 0))
    return { kind: 'offset', offset: offsets.length === 0 ? 0 : Math.min(...offsets) }
  }

  private async startAll(nodes: readonly ClusterNode[], key: Key, op: Op) {
    const settled = await Promise.allSettled(nodes.map(async (node) => ({ node, start: await node.remote.startStore(key, op) })))
    const out: Array<{ node: ClusterNode; start: StoreStart }> = []
    settled.forEach((s, i) => {
      if (s.status === 'fulfilled') out.push(s.value)
      else op.log.warn({ node: nodes[i]!.remote.uuid, err: s.reason as unknown }, 'cluster node failed to start a store')
    })
    return out
  }

  protected async doStore(key: Key, body: Readable, offset: number, op: StoreOp): Promise<Stored> {
    if (offset > 0 && !this.capabilities.has('resume-store')) throw new NotSupportedError('a node of this cluster cannot resume a store')
    const placement = await this.policy.targets(key, op, true)
    try {
      return await this.fanout(key, body, offset, placement.nodes, op)
    } finally {
      placement.release()
    }
  }

  private async fanout(key: Key, body: Readable, offset: number, targets: readonly ClusterNode[], op: StoreOp): Promise<Stored> {
    const starts = await this.startAll(targets, key, op)
    const have = this.holding(starts)
    const sending = starts.filter((s) => s.start.kind === 'offset')
    if (sending.length === 0) {
      // The body is not needed: RemoteBase drains it.
      if (have.length > 0) return { stored: true, plusUuids: have }
      throw new AbortedError('no node of the cluster could take the upload')
    }
    // A whole upload is verified once, here, before any node sees a byte; nodes in this
    // process commit on that verdict instead of hashing the bytes again (nodes over a network
    // verify on their side). A resumed one cannot be: its prefix is on the nodes, which
    // verify it with the rest themselves.
    const teeOpts = { highWaterMark: this.opts.highWaterMark, stallMs: this.opts.stallMs }
    const fan: Tee & { vouchers?: readonly Vouched[] } =
      offset === 0 ? await verifiedTee(key, sending.length, { ...teeOpts, ...(this.opts.hasher ? { hasher: this.opts.hasher } : {}) }) : tee(sending.length, teeOpts)
    const results = sending.map(({ node, start }, i) => {
      const kept = start.kind === 'offset' ? start.offset : 0
      // A node that keeps more than the body's start gets only what it lacks.
      const from = Math.max(offset, kept)
      const branch = from > offset ? pipeline(fan.branches[i]!, skip(from - offset), () => {}) : fan.branches[i]!
      const vouched = from === 0 ? fan.vouchers?.[i] : undefined
      // A node that refuses before reading its branch must not hold the others back
      // until the stall timeout: its branch is detached as soon as it gives up.
      return node.remote.store(key, branch, from, { ...op, vouched }).catch((err: unknown) => {
        fan.branches[i]!.destroy(err instanceof Error ? err : new AbortedError(String(err)))
        throw err
      })
    })
    const onAbort = () => fan.input.destroy(new AbortedError('upload aborted'))
    op.signal.addEventListener('abort', onAbort, { once: true })
    const piped = new Promise<void>((resolve, reject) => pipeline(body, fan.input, (err) => (err ? reject(err) : resolve()))).finally(() =>
      op.signal.removeEventListener('abort', onAbort),
    )
    const [sent, ...stored] = await Promise.allSettled([piped, ...results])
    const ok: Uuid[] = []
    const failures: unknown[] = []
    stored.forEach((r, i) => {
      const node = sending[i]!.node
      if (r.status === 'fulfilled' && r.value.stored) ok.push(node.remote.uuid, ...r.value.plusUuids)
      else if (r.status === 'rejected') {
        failures.push(r.reason)
        this.opts.onNodeDropped?.(this.uuid, node.remote.uuid)
        op.log.warn({ node: node.remote.uuid, err: r.reason as unknown }, 'cluster node did not store')
      }
    })
    if (ok.length === 0) {
      // Every target failed: report the nodes' own reason (hash mismatch, short body, …).
      throw failures.find((f) => f instanceof ProxyError) ?? (sent.status === 'rejected' ? sent.reason : new AbortedError('no node stored the content'))
    }
    await this.policy.record(key, ok, true)
    return { stored: true, plusUuids: this.others([...ok, ...have]) }
  }

  protected async doStorePresent(key: Key, op: Op): Promise<Stored> {
    const got = await Promise.allSettled(this.policy.nodes.map((n) => n.remote.storePresent(key, op).then((s) => (s.stored ? [n.remote.uuid, ...s.plusUuids] : []))))
    const ok = got.flatMap((g) => (g.status === 'fulfilled' ? g.value : []))
    if (ok.length > 0) await this.policy.record(key, ok, true)
    return { stored: ok.length > 0, plusUuids: this.others(ok) }
  }

  protected doRemove(key: Key, op: Op): Promise<Removed> {
    return this.removeAll(key, op, (r) => r.remove(key, op))
  }

  /**
   * `deadline` is on the gateway's clock (timestamp()); each node is asked against its own
   * (spec §3.4 GETTIMESTAMP, which the reference skips over HTTP, §9.17): its clock now plus
   * the time left here, measured after its answer, so a node's window is never longer than
   * the client's.
   */
  protected doRemoveBefore(key: Key, deadline: number, op: Op): Promise<Removed> {
    return this.removeAll(key, op, async (r) => {
      const theirs = await r.timestamp(op)
      const left = deadline - monotonicSeconds()
      if (left <= 0) return { removed: false, plusUuids: [] }
      return r.removeBefore(key, Math.min(Number.MAX_SAFE_INTEGER, Math.floor(theirs + left)), op)
    })
  }

  private async removeAll(key: Key, op: Op, each: (r: Remote) => Promise<Removed>): Promise<Removed> {
    // Only nodes that held the content are reported gone, so clients log real changes.
    const got = await Promise.allSettled(
      this.policy.nodes.map(async (n) => {
        const had = await n.remote.checkPresent(key, op).catch(() => true)
        return { node: n, had, r: await each(n.remote) }
      }),
    )
    const gone: Uuid[] = []
    let allRemoved = true
    let firstError: unknown
    for (const g of got) {
      if (g.status === 'rejected') {
        allRemoved = false
        firstError ??= g.reason
        continue
      }
      if (!g.value.r.removed) allRemoved = false
      else if (g.value.had) gone.push(g.value.node.remote.uuid)
      gone.push(...g.value.r.plusUuids)
    }
    if (gone.length > 0) await this.policy.record(key, gone, false)
    if (!allRemoved && gone.length === 0 && firstError !== undefined && !(firstError instanceof ProxyError)) throw firstError
    return { removed: allRemoved, plusUuids: this.others(gone) }
  }

  /** The repositories that answered "present" before an upload: nodes and what they report holding. */
  private holding(starts: ReadonlyArray<{ node: ClusterNode; start: StoreStart }>): Uuid[] {
    return this.others(starts.flatMap((s) => (s.start.kind === 'present' ? [s.node.remote.uuid, ...s.start.plusUuids] : [])))
  }

  /**
   * Distinct UUIDs to report, without this cluster's own: a node that is this cluster
   * behind another gateway answers for its nodes, and a cluster is never listed (spec §3.4).
   */
  private others(uuids: readonly Uuid[]): Uuid[] {
    return [...new Set(uuids)].filter((u) => u !== this.uuid)
  }

  protected async doTimestamp(_op: Op): Promise<number> {
    return monotonicSeconds()
  }

  protected async doLock(_key: Key, _op: Op): Promise<Lock | undefined> {
    // Spec §3.4: LOCKCONTENT to a cluster always fails; clients lock single nodes.
    throw new NotSupportedError('a cluster cannot lock content; lock one of its nodes')
  }

  /**
   * Nothing of its own to release once its calls have drained (RemoteBase): the nodes
   * belong to the gateway, which may serve them on their own too, and closes them itself.
   */
  protected async doClose(): Promise<void> {}
}
