// Placement state shared by a fleet of gateways in one Redis server (--redis URL): the
// rules of ledger.ts, each step one Lua script, so every step is atomic across gateways and
// runs on Redis's clock (leases do not depend on the gateways' clocks agreeing).
//
// Decide-and-reserve across processes is optimistic: read the view (live reservations on
// the nodes, a version per node, location facts from other gateways), apply the facts to
// the local location log, refresh local sizes, decide, then reserve only if no node's
// version moved since the view (compare-and-set); else start over. Releases publish the
// upload's location facts and drop its bytes in one script, so another gateway sees the
// bytes either reserved or logged, never neither.
//
// Redis unavailable: decisions that need the shared view (a node of the decision has a
// maxsize) and removes fail with CoordinationUnavailableError (503); content holds answer
// "not locked"; facts wait in an outbox and go out when Redis is back; reads never touch it.
//
// Keys (prefix P, default `annex-proxy:`): `P res` hash id → reservation JSON, `P exp` zset
// id → lease end (ms), `P v:<node>` versions, `P facts` stream, `P hold:<node>:<key>` and
// `P excl:<node>:<key>` hashes holder → lease end. Scripts build key names from the prefix,
// which needs a standalone Redis (not Redis Cluster).
import { createHash, randomUUID } from 'node:crypto'
import { createClient, type RedisClientType } from '@redis/client'
import { CoordinationUnavailableError, LockedError } from '../errors.js'
import type { Logger, Uuid } from '../remotes/remote.js'
import type { Coordinator, Exclusion, Hold, PlaceRequest, Reservation } from './coordinator.js'
import type { LocationFact, ReservationView } from './ledger.js'

const LIB = `
local P = ARGV[1]
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function purge(t)
  local ids = redis.call('ZRANGEBYSCORE', P .. 'exp', '-inf', t)
  for _, id in ipairs(ids) do
    local rec = redis.call('HGET', P .. 'res', id)
    if rec then
      for _, n in ipairs(cjson.decode(rec).nodes) do redis.call('INCR', P .. 'v:' .. n) end
      redis.call('HDEL', P .. 'res', id)
    end
    redis.call('ZREM', P .. 'exp', id)
  end
end
local function alive(h, t)
  local all = redis.call('HGETALL', h)
  local n = 0
  for i = 1, #all, 2 do
    if tonumber(all[i + 1]) <= t then redis.call('HDEL', h, all[i]) else n = n + 1 end
  end
  return n
end
`

/** ARGV: P, since, maxFacts, nodes… → [reservations JSON, versions, facts (flat), cursor, more] */
const VIEW = `${LIB}
local t = now()
purge(t)
local since = ARGV[2]
local maxFacts = tonumber(ARGV[3])
local want = {}
local versions = {}
for i = 4, #ARGV do
  want[ARGV[i]] = true
  versions[#versions + 1] = redis.call('GET', P .. 'v:' .. ARGV[i]) or '0'
end
local res = {}
local all = redis.call('HGETALL', P .. 'res')
for i = 1, #all, 2 do
  local r = cjson.decode(all[i + 1])
  for _, n in ipairs(r.nodes) do
    if want[n] then res[#res + 1] = all[i + 1]; break end
  end
end
local facts = {}
local cursor = since
local more = 0
local start = since == '0' and '-' or ('(' .. since)
local entries = redis.call('XRANGE', P .. 'facts', start, '+', 'COUNT', maxFacts + 1)
for i, e in ipairs(entries) do
  if i > maxFacts then more = 1; break end
  cursor = e[1]
  local f = e[2]
  local row = {}
  for j = 1, #f, 2 do row[f[j]] = f[j + 1] end
  facts[#facts + 1] = cjson.encode(row)
end
return {'[' .. table.concat(res, ',') .. ']', versions, facts, cursor, more}
`

/** ARGV: P, leaseMs, id, json, nReserve, reserve nodes…, then node/version pairs → 1 reserved, 0 moved */
const RESERVE = `${LIB}
local t = now()
purge(t)
local nres = tonumber(ARGV[5])
for i = 6 + nres, #ARGV, 2 do
  local v = redis.call('GET', P .. 'v:' .. ARGV[i]) or '0'
  if v ~= ARGV[i + 1] then return 0 end
end
if nres > 0 then
  redis.call('HSET', P .. 'res', ARGV[3], ARGV[4])
  redis.call('ZADD', P .. 'exp', t + tonumber(ARGV[2]), ARGV[3])
  for i = 6, 5 + nres do redis.call('INCR', P .. 'v:' .. ARGV[i]) end
end
return 1
`

/** ARGV: P, leaseMs, owner, ids… → lost ids */
const RENEW = `${LIB}
local t = now()
purge(t)
local lost = {}
for i = 4, #ARGV do
  local rec = redis.call('HGET', P .. 'res', ARGV[i])
  if rec and cjson.decode(rec).owner == ARGV[3] then
    redis.call('ZADD', P .. 'exp', 'XX', t + tonumber(ARGV[2]), ARGV[i])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
`

/** ARGV: P, id ('' for none), maxFacts, owner, then key/uuid/present/size quadruples → 1 */
const RELEASE = `${LIB}
local t = now()
purge(t)
for i = 5, #ARGV, 4 do
  redis.call('XADD', P .. 'facts', 'MAXLEN', '~', ARGV[3], '*', 'k', ARGV[i], 'u', ARGV[i + 1], 'p', ARGV[i + 2], 's', ARGV[i + 3], 'g', ARGV[4])
  redis.call('INCR', P .. 'v:' .. ARGV[i + 1])
end
if ARGV[2] ~= '' then
  local rec = redis.call('HGET', P .. 'res', ARGV[2])
  if rec then
    for _, n in ipairs(cjson.decode(rec).nodes) do redis.call('INCR', P .. 'v:' .. n) end
    redis.call('HDEL', P .. 'res', ARGV[2])
  end
  redis.call('ZREM', P .. 'exp', ARGV[2])
end
return 1
`

/** ARGV: P, mine ('hold'|'excl'), theirs, slot, id, leaseMs → 1 taken, 0 refused */
const TAKE = `${LIB}
local t = now()
local theirs = P .. ARGV[3] .. ':' .. ARGV[4]
if alive(theirs, t) > 0 then return 0 end
local mine = P .. ARGV[2] .. ':' .. ARGV[4]
alive(mine, t)
redis.call('HSET', mine, ARGV[5], t + tonumber(ARGV[6]))
redis.call('PEXPIRE', mine, tonumber(ARGV[6]) * 2)
return 1
`

/** ARGV: P, kind, slot, id, leaseMs → 1 renewed, 0 lapsed */
const RENEW_SLOT = `${LIB}
local t = now()
local h = P .. ARGV[2] .. ':' .. ARGV[3]
local exp = redis.call('HGET', h, ARGV[4])
if not exp or tonumber(exp) <= t then return 0 end
redis.call('HSET', h, ARGV[4], t + tonumber(ARGV[5]))
redis.call('PEXPIRE', h, tonumber(ARGV[5]) * 2)
return 1
`

/** ARGV: P, kind, slot, id → 1 */
const DROP_SLOT = `${LIB}
redis.call('HDEL', P .. ARGV[2] .. ':' .. ARGV[3], ARGV[4])
return 1
`

interface Script {
  readonly text: string
  readonly sha: string
}
const script = (text: string): Script => ({ text, sha: createHash('sha1').update(text).digest('hex') })
const SCRIPTS = { VIEW: script(VIEW), RESERVE: script(RESERVE), RENEW: script(RENEW), RELEASE: script(RELEASE), TAKE: script(TAKE), RENEW_SLOT: script(RENEW_SLOT), DROP_SLOT: script(DROP_SLOT) }

export interface RedisCoordinatorOptions {
  /** redis://[user:pass@]host[:port][/db], rediss://…, or unix:///path/to/socket[?db=N]. */
  readonly url: string
  /** Lease of reservations, holds and exclusions in ms: a dead gateway's expire this long after its last renewal. */
  readonly leaseMs?: number
  readonly prefix?: string
  /** Facts kept in the stream for gateways that have not read them. */
  readonly maxFacts?: number
  /** Milliseconds a Redis command may take before Redis counts as unavailable. */
  readonly commandTimeoutMs?: number
  /** Compare-and-set attempts before a decision gives up (contention). */
  readonly maxAttempts?: number
  readonly log?: Logger
}

/** Applies location facts other gateways published to this gateway's own records. */
export type FactSink = (facts: readonly LocationFact[]) => Promise<void>

/** Accepts `unix:///path/sock?db=N` besides what node-redis takes. */
function clientOptions(url: string): Parameters<typeof createClient>[0] {
  if (url.startsWith('unix://')) {
    const u = new URL(url)
    const db = u.searchParams.get('db')
    return { socket: { path: decodeURIComponent(u.pathname), tls: false }, ...(db ? { database: Number(db) } : {}) }
  }
  return { url }
}

type Client = RedisClientType

export class RedisCoordinator implements Coordinator {
  readonly fleet = true
  readonly owner = randomUUID()
  private readonly client: Client
  private readonly prefix: string
  private readonly leaseMs: number
  private readonly maxFacts: number
  private readonly timeoutMs: number
  private readonly maxAttempts: number
  private readonly log: Logger | undefined
  private cursor = '0'
  private readonly sinks = new Set<FactSink>()
  private readonly live = new Set<string>()
  private readonly slots = new Map<string, { kind: 'hold' | 'excl'; slot: string; id: string }>()
  private outbox: LocationFact[] = []
  /** Reservations whose release waits for Redis (their facts are in the outbox). */
  private readonly pendingRelease = new Set<string>()
  private readonly timer: NodeJS.Timeout
  private closed = false
  /** One fact catch-up at a time; decisions wait for the one running. */
  private catchingUp: Promise<void> | undefined

  constructor(opts: RedisCoordinatorOptions) {
    this.prefix = opts.prefix ?? 'annex-proxy:'
    this.leaseMs = opts.leaseMs ?? 30_000
    this.maxFacts = opts.maxFacts ?? 100_000
    this.timeoutMs = opts.commandTimeoutMs ?? 5_000
    this.maxAttempts = opts.maxAttempts ?? 200
    this.log = opts.log
    this.client = createClient({
      ...clientOptions(opts.url),
      // Fail at once while disconnected instead of queueing: callers answer 503 now.
      disableOfflineQueue: true,
      socket: {
        ...(clientOptions(opts.url)?.socket ?? {}),
        connectTimeout: this.timeoutMs,
        reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, 2_000),
      },
    } as Parameters<typeof createClient>[0]) as unknown as Client
    let warned = false
    this.client.on('error', (err: unknown) => {
      if (!warned) this.log?.warn({ err }, 'redis unavailable; uploads needing a reservation and removes are refused until it is back')
      warned = true
    })
    this.client.on('ready', () => {
      if (warned) this.log?.info({}, 'redis available again')
      warned = false
    })
    this.timer = setInterval(() => void this.tick(), Math.max(50, Math.floor(this.leaseMs / 3)))
    this.timer.unref()
  }

  /** Connects (the first attempt may fail: the client keeps trying, and the gateway serves reads meanwhile). */
  async connect(): Promise<void> {
    await this.client.connect()
  }

  /** Registers where facts from other gateways are applied (each served repository). */
  subscribe(sink: FactSink): () => void {
    this.sinks.add(sink)
    return () => void this.sinks.delete(sink)
  }

  private async run(s: Script, args: readonly (string | number)[]): Promise<unknown> {
    if (this.closed) throw new CoordinationUnavailableError('the placement coordinator is closed')
    if (!this.client.isReady) throw new CoordinationUnavailableError('redis is unavailable')
    const argv = [this.prefix, ...args.map(String)]
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new CoordinationUnavailableError(`redis did not answer within ${this.timeoutMs} ms`)), this.timeoutMs)
    })
    try {
      const call = (async () => {
        try {
          return await this.client.sendCommand(['EVALSHA', s.sha, '0', ...argv])
        } catch (e) {
          if (!/NOSCRIPT/.test(String(e))) throw e
          return await this.client.sendCommand(['EVAL', s.text, '0', ...argv])
        }
      })()
      return await Promise.race([call, timeout])
    } catch (e) {
      if (e instanceof CoordinationUnavailableError) throw e
      throw new CoordinationUnavailableError(`redis: ${(e as Error).message}`, { cause: e })
    } finally {
      clearTimeout(timer)
    }
  }

  /** Reads facts other gateways published since the cursor and applies them; returns the view. */
  private async view(nodes: readonly string[]): Promise<{ reservations: ReservationView[]; versions: string[] }> {
    for (;;) {
      const [res, versions, facts, cursor, more] = (await this.run(SCRIPTS.VIEW, [this.cursor, 1000, ...nodes])) as [string, string[], string[], string, number]
      const theirs: LocationFact[] = []
      for (const f of facts) {
        const row = JSON.parse(f) as { k: string; u: string; p: string; s: string; g: string }
        if (row.g !== this.owner) theirs.push({ key: row.k, uuid: row.u, present: row.p === '1', size: Number(row.s) })
      }
      if (theirs.length > 0) await Promise.all([...this.sinks].map((sink) => sink(theirs)))
      this.cursor = cursor
      if (Number(more) === 1) continue
      return { reservations: (JSON.parse(res) as Array<{ key: string; nodes: string[]; size: number }>).map((r) => ({ key: r.key, nodes: r.nodes, size: r.size })), versions }
    }
  }

  /** Catches up with the fleet's facts (one at a time). */
  async catchUp(): Promise<void> {
    while (this.catchingUp) await this.catchingUp
    this.catchingUp = this.view([]).then(
      () => undefined,
      () => undefined,
    )
    await this.catchingUp.finally(() => (this.catchingUp = undefined))
  }

  async place<T>(req: PlaceRequest<T>): Promise<{ value: T; reservation: Reservation }> {
    await this.flush()
    if (!req.shared) {
      // Nothing in the decision depends on other gateways' reservations: Redis is only asked
      // for their facts, and an unavailable Redis does not stop the upload.
      await this.catchUp()
      await req.prepare()
      return { value: req.decide([]).value, reservation: this.nothingReserved() }
    }
    for (let attempt = 0; attempt < this.maxAttempts; attempt++) {
      const view = await this.view(req.nodes)
      await req.prepare()
      const d = req.decide(view.reservations)
      const reserve = d.size > 0 ? [...d.reserve] : []
      const id = reserve.length > 0 ? randomUUID() : ''
      const json = JSON.stringify({ owner: this.owner, nodes: reserve, size: d.size, key: req.key })
      const checks = req.nodes.flatMap((n, i) => [n, view.versions[i] ?? '0'])
      const ok = Number(await this.run(SCRIPTS.RESERVE, [this.leaseMs, id || 'none', json, reserve.length, ...reserve, ...checks]))
      if (ok !== 1) continue
      if (!id) return { value: d.value, reservation: this.nothingReserved() }
      this.live.add(id)
      return { value: d.value, reservation: this.reservation(id) }
    }
    throw new CoordinationUnavailableError(`placement of ${req.key} kept conflicting with other gateways' (${this.maxAttempts} attempts)`)
  }

  /** A decision that reserved nothing: its release only publishes what it is given. */
  private nothingReserved(): Reservation {
    return { release: async (facts = []) => (facts.length > 0 ? this.publish(facts) : undefined) }
  }

  private reservation(id: string): Reservation {
    let done: Promise<void> | undefined
    return {
      release: (facts = []) => {
        done ??= (async () => {
          const pending = [...this.outbox, ...facts]
          this.outbox = []
          try {
            await this.run(SCRIPTS.RELEASE, [id, this.maxFacts, this.owner, ...factArgs(pending)])
            this.live.delete(id)
          } catch (err) {
            // Keep the bytes reserved (the lease is renewed) until the facts are out: the
            // next tick retries, so other gateways never see them neither reserved nor logged.
            this.outbox.push(...pending)
            this.pendingRelease.add(id)
            this.log?.warn({ err }, 'could not release a reservation in redis; retrying')
          }
        })()
        return done
      },
    }
  }

  async publish(facts: readonly LocationFact[]): Promise<void> {
    this.outbox.push(...facts)
    await this.flush()
  }

  /** Sends queued facts (and releases that waited for them); failures stay queued. */
  private async flush(): Promise<void> {
    if (this.outbox.length === 0 && this.pendingRelease.size === 0) return
    const facts = this.outbox
    this.outbox = []
    const ids = [...this.pendingRelease]
    try {
      await this.run(SCRIPTS.RELEASE, ['', this.maxFacts, this.owner, ...factArgs(facts)])
      for (const id of ids) {
        await this.run(SCRIPTS.RELEASE, [id, this.maxFacts, this.owner])
        this.pendingRelease.delete(id)
        this.live.delete(id)
      }
    } catch (err) {
      if (this.outbox !== facts) this.outbox = [...facts, ...this.outbox]
      this.log?.debug({ err }, 'facts wait for redis')
    }
  }

  /** Renews leases, retries what waits for Redis, catches up with other gateways' facts. */
  private async tick(): Promise<void> {
    if (this.closed || !this.client.isReady) return
    try {
      if (this.live.size > 0) {
        const lost = (await this.run(SCRIPTS.RENEW, [this.leaseMs, this.owner, ...this.live])) as string[]
        for (const id of lost) {
          this.live.delete(id)
          this.log?.error({ reservation: id }, 'a reservation lapsed before its upload ended (gateway stalled longer than the lease?)')
        }
      }
      for (const [k, s] of this.slots) {
        if (!Number(await this.run(SCRIPTS.RENEW_SLOT, [s.kind, s.slot, s.id, this.leaseMs]))) {
          this.slots.delete(k)
          this.log?.warn({ slot: s.slot, kind: s.kind }, 'a content hold lapsed in redis')
        }
      }
      await this.flush()
      await this.catchUp()
    } catch (err) {
      this.log?.debug({ err }, 'redis housekeeping failed')
    }
  }

  async hold(node: Uuid, key: string): Promise<Hold | undefined> {
    const slot = `${node}:${key}`
    const id = randomUUID()
    try {
        if (!Number(await this.run(SCRIPTS.TAKE, ['hold', 'excl', slot, id, this.leaseMs]))) return undefined
      this.slots.set(`hold\0${slot}\0${id}`, { kind: 'hold', slot, id })
    } catch (err) {
      // A lock nobody else can see would be a false promise: not locked.
      if (err instanceof CoordinationUnavailableError) return undefined
      throw err
    }
    return { release: () => this.drop('hold', slot, id) }
  }

  async exclude(node: Uuid, key: string): Promise<Exclusion> {
    const slot = `${node}:${key}`
    const id = randomUUID()
    if (!Number(await this.run(SCRIPTS.TAKE, ['excl', 'hold', slot, id, this.leaseMs]))) throw new LockedError('content is locked (through a gateway of this fleet)')
    this.slots.set(`excl\0${slot}\0${id}`, { kind: 'excl', slot, id })
    return { release: () => this.drop('excl', slot, id) }
  }

  private async drop(kind: 'hold' | 'excl', slot: string, id: string): Promise<void> {
    this.slots.delete(`${kind}\0${slot}\0${id}`)
    await this.run(SCRIPTS.DROP_SLOT, [kind, slot, id]).catch((err: unknown) => this.log?.warn({ err }, 'could not drop a content hold in redis; it expires with its lease'))
  }

  async close(): Promise<void> {
    if (this.closed) return
    clearInterval(this.timer)
    await this.flush().catch(() => undefined)
    this.closed = true
    await this.client.close().catch(() => undefined)
  }
}

function factArgs(facts: readonly LocationFact[]): string[] {
  return facts.flatMap((f) => [f.key, f.uuid, f.present ? '1' : '0', String(f.size)])
}
