// `annex-proxy rebalance`: carries out placement/rebalance.ts's plan for a cluster through
// the gateway's own data plane. Each copy streams from a node holding the key into the new
// node, which verifies it before committing, and is logged in the gateway's location log;
// only then may a copy be dropped, and only while the copies left (locked for the drop, as
// git-annex's drop proves numcopies) are at least numcopies. Removes go through the same
// Guarded nodes as client drops, so content locked through any gateway (lockcontent) is
// not dropped. A copy that finds no room waits for the drops of other moves and is retried
// while anything progresses.
import { ConfigError, DiskFullError, LockedError } from '../errors.js'
import type { Key } from '../keys/key.js'
import { serializeKey } from '../keys/key.js'
import type { Lock, Logger, Op, Remote, Uuid } from '../remotes/remote.js'
import { parseSingleValueLog } from '../annex/branch-logs.js'
import { planRebalance, type KeyMove, type RebalancePlan } from '../placement/rebalance.js'
import type { Gateway } from './gateway.js'

export interface RebalanceOptions {
  readonly cluster: string
  readonly dryRun: boolean
  /** Moves carried out at once. */
  readonly jobs: number
  readonly log: Logger
  readonly signal: AbortSignal
  /** One line per event (the plan in a dry run, each step otherwise). */
  readonly say: (line: string) => void
}

export interface RebalanceResult {
  readonly plan: RebalancePlan
  /** Node names by UUID, for reports. */
  readonly names: ReadonlyMap<string, string>
  readonly numCopies: number
  /** Moves carried out completely. */
  readonly done: number
  /** Moves not (or not completely) carried out, with why. */
  readonly failed: ReadonlyArray<{ readonly key: string; readonly reason: string }>
  readonly bytesCopied: number
}

/** annex.numcopies and mincopies from the git-annex branch (git-annex's defaults: 1). */
async function copiesNeeded(gateway: Gateway): Promise<number> {
  const read = async (path: string) => {
    const v = Number(parseSingleValueLog(await gateway.readBranchFile(path)))
    return Number.isInteger(v) && v > 0 ? v : 1
  }
  return Math.max(await read('numcopies.log'), await read('mincopies.log'))
}

export async function rebalance(gateway: Gateway, opts: RebalanceOptions): Promise<RebalanceResult> {
  const members = await gateway.clusterNodes(opts.cluster)
  if (!members) throw new ConfigError(`no cluster named ${opts.cluster} in ${gateway.dir} (annex.cluster.${opts.cluster} is not set)`)
  const names = new Map<string, string>(members.map((m) => [m.uuid, m.name]))
  const remotes = new Map<string, Remote>(members.map((m) => [m.uuid, m.remote]))
  const nodeUuids = members.map((m) => m.uuid)
  const snap = gateway.snapshot
  const { committed, holdings } = await gateway.placementState()
  const numCopies = await copiesNeeded(gateway)
  const onNodes = new Set<string>(nodeUuids)
  const keys = holdings
    .filter((h) => h.uuids.some((u) => onNodes.has(u)))
    .map((h) => ({ key: h.key, locations: new Set<string>(h.uuids.filter((u) => snap.trust.get(u) !== 'dead')) }))
  const plan = planRebalance({ policy: snap, nodes: nodeUuids, keys, committed, numCopies })
  const name = (u: string) => names.get(u) ?? u
  const describe = (m: KeyMove) => [...m.add.map((u) => `copy to ${name(u)}`), ...m.drop.map((u) => `drop from ${name(u)}`)].join(', ')
  if (opts.dryRun) {
    for (const m of plan.moves) opts.say(`${serializeKey(m.key)}: ${describe(m)}`)
    return { plan, names, numCopies, done: 0, failed: [], bytesCopied: 0 }
  }

  const op: Op = { signal: opts.signal, log: opts.log }
  const failed: Array<{ key: string; reason: string }> = []
  let done = 0
  let bytesCopied = 0
  let pending = [...plan.moves]
  // Copies that found no room wait for other moves' drops: rounds go on while one progresses.
  for (;;) {
    const waiting: KeyMove[] = []
    let progressed = false
    await pool(pending, opts.jobs, async (m) => {
      if (opts.signal.aborted) return
      const k = serializeKey(m.key)
      try {
        const r = await carryOut(m)
        bytesCopied += r.copied
        if (r.copied > 0 || r.dropped > 0) progressed = true
        if (r.kept.length > 0) failed.push({ key: k, reason: r.kept.join('; ') })
        else done++
        opts.say(`${k}: ${describe(m)}: ${r.kept.length > 0 ? `incomplete (${r.kept.join('; ')})` : 'ok'}`)
      } catch (err) {
        if (err instanceof DiskFullError) waiting.push(m)
        else {
          failed.push({ key: k, reason: (err as Error).message })
          opts.say(`${k}: ${describe(m)}: failed (${(err as Error).message})`)
        }
      }
    })
    if (waiting.length === 0 || !progressed || opts.signal.aborted) {
      for (const m of waiting) {
        failed.push({ key: serializeKey(m.key), reason: 'no room on the new node (the drops that would make room did not happen)' })
        opts.say(`${serializeKey(m.key)}: ${describe(m)}: not done (no room)`)
      }
      break
    }
    pending = waiting
  }
  return { plan, names, numCopies, done, failed, bytesCopied }

  /**
   * One key: every copy first (verified by the node, logged), then the drops that numcopies
   * allows. DiskFullError when a copy found no room and nothing was done yet.
   */
  async function carryOut(m: KeyMove): Promise<{ copied: number; dropped: number; kept: string[] }> {
    const kept: string[] = []
    let copied = 0
    let dropped = 0
    const held = new Set<string>(await gateway.locationsOf(m.key))
    for (const t of m.add) {
      if (held.has(t)) continue
      const sources = [...held].filter((u) => remotes.has(u) && !m.add.includes(u as Uuid))
      const n = await copy(m.key, sources, t)
      copied += n
      held.add(t)
    }
    for (const d of m.drop) {
      if (!held.has(d)) continue
      const reason = await drop(m.key, d, [...held].filter((u) => u !== d))
      if (reason === undefined) {
        held.delete(d)
        dropped++
      } else kept.push(`kept on ${name(d)}: ${reason}`)
    }
    return { copied, dropped, kept }
  }

  /** Streams the key from the first source that has it into `to`; bytes sent. */
  async function copy(key: Key, sources: readonly string[], to: Uuid): Promise<number> {
    const dst = remotes.get(to)!
    const start = await dst.startStore(key, op)
    if (start.kind === 'present') {
      // There already, not logged yet: log it, as a store would have.
      await gateway.recordLocation(key, to, true)
      return 0
    }
    let lastError: unknown = new Error(`no node holding ${serializeKey(key)} could be read`)
    for (const from of sources) {
      const src = remotes.get(from)!
      const offset = start.offset > 0 && src.capabilities.has('retrieve-from-offset') ? start.offset : 0
      try {
        const r = await src.retrieve(key, offset, op)
        if (r.length === 0 && (key.size ?? 0) > offset) {
          r.body.destroy()
          continue
        }
        const stored = await dst.store(key, r.body, offset, { ...op, senderValid: r.valid })
        if (!stored.stored) throw new Error(`${name(to)} did not store it`)
        return r.length
      } catch (err) {
        // No room is the new node's answer whatever the source: the move waits.
        if (err instanceof DiskFullError) throw err
        lastError = err
        opts.log.warn({ key: serializeKey(key), from: name(from), to: name(to), err }, 'rebalance: copy failed')
      }
    }
    throw lastError
  }

  /**
   * Drops `key` from `from` if numcopies copies stay, counting those that can be locked
   * now on the other nodes (and trusted repositories outside the cluster). undefined when
   * dropped, else why not.
   */
  async function drop(key: Key, from: Uuid, others: readonly string[]): Promise<string | undefined> {
    const locks: Lock[] = []
    try {
      for (const u of others) {
        const r = remotes.get(u)
        if (!r || snap.trust.get(u as Uuid) === 'untrusted') continue
        const l = await r.lock(key, op).catch(() => undefined)
        if (l) locks.push(l)
      }
      const trustedOutside = others.filter((u) => !remotes.has(u) && snap.trust.get(u as Uuid) === 'trusted').length
      const verified = locks.length + trustedOutside
      if (verified < numCopies) return `only ${verified} other cop${verified === 1 ? 'y' : 'ies'} could be verified, numcopies is ${numCopies}`
      const removed = await remotes.get(from)!.remove(key, op)
      return removed.removed ? undefined : 'the node did not remove it'
    } catch (err) {
      return err instanceof LockedError ? 'locked by a client' : (err as Error).message
    } finally {
      await Promise.all(locks.map((l) => l.release().catch(() => undefined)))
    }
  }
}

/** Runs `fn` over `items`, `jobs` at a time. */
async function pool<T>(items: readonly T[], jobs: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!)
  }
  await Promise.all(Array.from({ length: Math.max(1, Math.min(jobs, items.length)) }, worker))
}
