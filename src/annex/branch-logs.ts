// Pure parsers for the git-annex branch logs a gateway reads (spec §3.2, §3.6, §7).
// Mirrors git-annex 10.20250416: Logs/Line.hs (a line that does not parse is skipped,
// any run of \r and \n ends a line), Logs/UUIDBased.hs (old- and new-style UUID logs),
// Logs/MapLog.hs (newest vector clock wins, ties keep the later line), Logs/Presence/Pure.hs
// (location logs: ties keep the earlier line), Logs/Trust/Pure.hs, Logs/Remote/Pure.hs,
// Logs/Cluster/Basic.hs, Logs/Proxy.hs, Utility/TimeStamp.hs and Types/Cluster.hs.
// Nothing here touches the disk: branch-reader.ts supplies the text.
import { type Key } from '../keys/key.js'
import { hashDirLower, keyFile } from '../keys/object-path.js'
import { asUuid, isClusterUuid, parseTrustValue, type TrustLevel, type Uuid } from './uuid.js'
import { readishInteger } from './data-units.js'

// ---------------------------------------------------------------------------------------
// Vector clocks (spec §7.1)

/**
 * A vector clock: POSIX seconds as the exact decimal `n / 10^scale` (git-annex keeps a
 * Rational, so long fractions must not be rounded into a tie).
 */
export interface Clock {
  readonly n: bigint
  readonly scale: number
}

/** `undefined` is git-annex's `Unknown` clock (an old-style line without timestamp=): older than any. */
export type VectorClock = Clock | undefined

const CLOCK = /^([+-]?)(\d+)(?:\.(\d+))?s?$/

/**
 * Utility/TimeStamp.hs parserPOSIXTime: `[sign]digits[.digits][s]`. Its quirk is kept: the
 * fraction is subtracted only when the integer part is negative, so `-0.5` reads as +0.5.
 */
export function parseClock(s: string): Clock | undefined {
  const m = CLOCK.exec(s)
  if (!m) return undefined
  const int = BigInt(m[2]!) * (m[1] === '-' ? -1n : 1n)
  const frac = m[3] ?? ''
  const scale = frac.length
  const f = frac === '' ? 0n : BigInt(frac)
  const p = 10n ** BigInt(scale)
  return { n: int < 0n ? int * p - f : int * p + f, scale }
}

/** Negative, zero or positive as a is older than, as old as, or newer than b. */
export function compareClocks(a: VectorClock, b: VectorClock): number {
  if (a === undefined) return b === undefined ? 0 : -1
  if (b === undefined) return 1
  const x = a.n * 10n ** BigInt(b.scale)
  const y = b.n * 10n ** BigInt(a.scale)
  return x < y ? -1 : x > y ? 1 : 0
}

/** The clock as git-annex writes it (`1795548033s`); `0` for Unknown. */
export function formatClock(c: VectorClock): string {
  if (c === undefined) return '0'
  if (c.scale === 0) return `${c.n}s`
  const neg = c.n < 0n
  const digits = (neg ? -c.n : c.n).toString().padStart(c.scale + 1, '0')
  return `${neg ? '-' : ''}${digits.slice(0, -c.scale)}.${digits.slice(-c.scale)}s`
}

// ---------------------------------------------------------------------------------------
// Generic UUID-based logs

export interface LogEntry<V> {
  readonly clock: VectorClock
  readonly value: V
}

/** Logs/Line.hs: any combination of \r and \n ends a line; empty lines are dropped. */
export function splitLines(text: string): string[] {
  return text.split(/[\r\n]+/).filter((l) => l !== '')
}

/** MapLog `best`: the newer clock wins, a tie keeps the later line. */
function addBest<F, V>(m: Map<F, LogEntry<V>>, f: F, e: LogEntry<V>): void {
  const old = m.get(f)
  if (old === undefined || compareClocks(old.clock, e.clock) <= 0) m.set(f, e)
}

const TIMESTAMP = ' timestamp='

/**
 * Old-style UUID log (uuid.log, trust.log, group.log, preferred-content.log,
 * required-content.log, remote.log): `<uuid>[ <value…>][ timestamp=<clock>]`.
 * A line starting with a space (a NoUUID bug of old versions) or whose value the
 * parser refuses is skipped.
 */
export function parseOldLog<V>(text: string, parseValue: (v: string) => V | undefined): Map<Uuid, LogEntry<V>> {
  const m = new Map<Uuid, LogEntry<V>>()
  for (const line of splitLines(text)) {
    const sp = line.indexOf(' ')
    const u = sp < 0 ? line : line.slice(0, sp)
    if (u === '') continue
    const rest = sp < 0 ? '' : line.slice(sp)
    let clock: VectorClock
    let raw = rest.slice(1)
    const t = rest.lastIndexOf(TIMESTAMP)
    if (t >= 0) {
      const c = parseClock(rest.slice(t + TIMESTAMP.length))
      if (c !== undefined) {
        clock = c
        raw = rest.slice(1, Math.max(1, t))
      }
    }
    const v = parseValue(raw)
    if (v === undefined) continue
    addBest(m, asUuid(u), { clock, value: v })
  }
  return m
}

/**
 * New-style log (cluster.log, proxy.log, maxsize.log, group-preferred-content.log):
 * `<clock> <field> <value>`; the space after the field is required even for an empty value.
 */
export function parseNewLog<F extends string, V>(
  text: string,
  parseValue: (v: string) => V | undefined,
  parseField: (f: string) => F | undefined = (f) => (f === '' ? undefined : (f as F)),
): Map<F, LogEntry<V>> {
  const m = new Map<F, LogEntry<V>>()
  for (const line of splitLines(text)) {
    const a = line.indexOf(' ')
    if (a < 0) continue
    const clock = parseClock(line.slice(0, a))
    if (clock === undefined) continue
    const b = line.indexOf(' ', a + 1)
    if (b < 0) continue
    const f = parseField(line.slice(a + 1, b))
    if (f === undefined) continue
    const v = parseValue(line.slice(b + 1))
    if (v === undefined) continue
    addBest(m, f, { clock, value: v })
  }
  return m
}

/** The values of a log, without clocks. */
export function values<F, V>(m: ReadonlyMap<F, LogEntry<V>>): Map<F, V> {
  return new Map([...m].map(([k, e]) => [k, e.value]))
}

// ---------------------------------------------------------------------------------------
// Individual logs

export const LOG_FILES = {
  uuid: 'uuid.log',
  remote: 'remote.log',
  trust: 'trust.log',
  group: 'group.log',
  preferredContent: 'preferred-content.log',
  requiredContent: 'required-content.log',
  groupPreferredContent: 'group-preferred-content.log',
  maxSize: 'maxsize.log',
  cluster: 'cluster.log',
  proxy: 'proxy.log',
} as const

/** uuid.log: repository descriptions (`cluster <name>` for clusters). */
export function parseUuidLog(text: string): Map<Uuid, string> {
  return values(parseOldLog(text, (v) => v))
}

export function parseTrustLog(text: string): Map<Uuid, TrustLevel> {
  return values(parseOldLog(text, parseTrustValue))
}

/** group.log: the groups a repository is in (none after `git annex dead`). */
export function parseGroupLog(text: string): Map<Uuid, ReadonlySet<string>> {
  return values(parseOldLog(text, (v) => new Set(v.split(/\s+/).filter(Boolean)) as ReadonlySet<string>))
}

/** preferred-content.log and required-content.log: one expression per repository. */
export function parseExpressionLog(text: string): Map<Uuid, string> {
  return values(parseOldLog(text, (v) => v))
}

/** group-preferred-content.log (`groupwanted`): one expression per group. */
export function parseGroupPreferredContentLog(text: string): Map<string, string> {
  return values(parseNewLog(text, (v) => v))
}

/** maxsize.log: bytes per repository, read as Logs/MaxSize.hs reads them (readish). */
export function parseMaxSizeLog(text: string): Map<Uuid, number> {
  return values(
    parseNewLog(
      text,
      readishInteger,
      (f) => (f === '' ? undefined : asUuid(f)),
    ),
  )
}

/** Logs/Remote/Pure.hs configUnEscape: `&<decimal>;` is that code point, any other `&` stays. */
export function configUnescape(s: string): string {
  return s.replace(/&(\d+);/g, (all, d: string) => {
    const c = Number(d)
    return c <= 0x10ffff ? String.fromCodePoint(c) : all
  })
}

/** configEscape: whitespace and `&` become `&<decimal>;`. */
export function configEscape(s: string): string {
  return s.replace(/[\s&]/gu, (c) => `&${c.codePointAt(0)!};`)
}

/** remote.log: each special remote's `key=value` settings (values unescaped, keys as written). */
export function parseRemoteLog(text: string): Map<Uuid, ReadonlyMap<string, string>> {
  return values(
    parseOldLog(text, (v) => {
      const cfg = new Map<string, string>()
      for (const w of v.split(/\s+/)) {
        if (w === '') continue
        const eq = w.indexOf('=')
        if (eq < 0) cfg.set(w, '')
        else cfg.set(w.slice(0, eq), configUnescape(w.slice(eq + 1)))
      }
      return cfg as ReadonlyMap<string, string>
    }),
  )
}

/** Annex/SpecialRemote/Config.hs sameasInherits: fields a sameas remote takes from its parent only. */
export const SAMEAS_INHERITS: ReadonlySet<string> = new Set(['encryption', 'mac', 'cipher', 'cipherkeys', 'pubkeys', 'chunksize'])

/**
 * remote.log with sameas inheritance applied (Logs/Remote/Pure.hs calcRemoteConfigMap): a
 * config with `sameas-uuid=P` takes the SAMEAS_INHERITS fields from P's config (and cannot
 * set them itself).
 */
export function parseRemoteConfigs(text: string): Map<Uuid, ReadonlyMap<string, string>> {
  const raw = parseRemoteLog(text)
  const out = new Map<Uuid, ReadonlyMap<string, string>>()
  for (const [u, c] of raw) {
    const parent = c.get('sameas-uuid')
    const pc = parent === undefined ? undefined : raw.get(asUuid(parent))
    if (!pc) {
      out.set(u, c)
      continue
    }
    const merged = new Map([...c].filter(([k]) => !SAMEAS_INHERITS.has(k)))
    for (const [k, v] of pc) if (SAMEAS_INHERITS.has(k)) merged.set(k, v)
    out.set(u, merged)
  }
  return out
}

// ---------------------------------------------------------------------------------------
// Clusters and proxies (spec §3.1, §3.2)

/**
 * Git/Remote.hs isLegalName (s == makeLegalName s): only letters, digits, `_`, `-` and `.`,
 * not empty, not starting with `.` or `-`.
 */
export function isLegalRemoteName(name: string): boolean {
  return /^[\p{L}\p{N}_][\p{L}\p{N}_.-]*$/u.test(name)
}

/**
 * Logs/Cluster/Basic.hs parseClusterNodeList: node UUIDs separated by single spaces
 * (a trailing space is fine, a double space spoils the line).
 */
function parseNodeList(v: string): ReadonlySet<Uuid> | undefined {
  if (v === '') return new Set()
  const words = v.split(' ')
  if (words[words.length - 1] === '') words.pop()
  if (words.some((w) => w === '')) return undefined
  return new Set(words.map(asUuid))
}

/**
 * cluster.log: cluster UUID → node UUIDs. Fields that are not cluster UUIDs are dropped,
 * and so are nodes whose trust is dead when `trust` is given (Logs/Cluster.hs getClusters).
 */
export function parseClusterLog(text: string, trust?: ReadonlyMap<Uuid, TrustLevel>): Map<Uuid, ReadonlySet<Uuid>> {
  const raw = values(parseNewLog(text, parseNodeList, (f) => (f === '' ? undefined : asUuid(f))))
  const m = new Map<Uuid, ReadonlySet<Uuid>>()
  for (const [c, nodes] of raw) {
    if (!isClusterUuid(c)) continue
    m.set(c, trust ? new Set([...nodes].filter((n) => trust.get(n) !== 'dead')) : nodes)
  }
  return m
}

export interface ProxyEntry {
  readonly uuid: Uuid
  /** The name the proxying repository gives the remote. */
  readonly name: string
}

/**
 * Logs/Proxy.hs parseProxyList, scanned as its attoparsec parser does: a UUID runs to
 * the next `:` (spaces included), the name to the next space. A word without a name
 * spoils the line. Entries whose name is not a legal git remote name are dropped.
 */
function parseProxyList(v: string): ProxyEntry[] | undefined {
  const out: ProxyEntry[] = []
  let i = 0
  while (i < v.length) {
    const colon = v.indexOf(':', i)
    if (colon <= i) return undefined
    const end = v.indexOf(' ', colon + 1)
    const stop = end < 0 ? v.length : end
    if (stop === colon + 1) return undefined
    out.push({ uuid: asUuid(v.slice(i, colon)), name: v.slice(colon + 1, stop) })
    i = end < 0 ? v.length : end + 1
  }
  return out.filter((p) => isLegalRemoteName(p.name))
}

/** proxy.log: proxying repository UUID → what it proxies, under its own remote names. */
export function parseProxyLog(text: string): Map<Uuid, readonly ProxyEntry[]> {
  return values(parseNewLog(text, parseProxyList, (f) => (f === '' ? undefined : asUuid(f))))
}

// ---------------------------------------------------------------------------------------
// Location logs (spec §7.2, §3.6)

export type LocationStatus = 'present' | 'missing' | 'dead'

export interface LocationLine {
  readonly clock: Clock
  readonly status: LocationStatus
  readonly uuid: Uuid
}

const STATUS: Record<string, LocationStatus> = { '1': 'present', '0': 'missing', X: 'dead' }

/** Branch path of a key's location log: `<hashdirlower><keyFile>.log`. */
export function locationLogPath(key: Key): string {
  return `${hashDirLower(key)}${keyFile(key)}.log`
}

/**
 * Logs/Presence/Pure.hs compactLog: the newest line per UUID; on a tie the EARLIER line
 * wins (foldr insertNewerLogLine). Lines are `<clock> <status> <uuid>`.
 */
export function parseLocationLog(text: string): Map<Uuid, LocationLine> {
  const m = new Map<Uuid, LocationLine>()
  for (const line of splitLines(text)) {
    const a = line.indexOf(' ')
    if (a < 0) continue
    const clock = parseClock(line.slice(0, a))
    const status = STATUS[line.slice(a + 1, a + 2)]
    if (clock === undefined || status === undefined || line[a + 2] !== ' ') continue
    const uuid = asUuid(line.slice(a + 3))
    const old = m.get(uuid)
    if (old === undefined || compareClocks(old.clock, clock) < 0) m.set(uuid, { clock, status, uuid })
  }
  return m
}

/**
 * The UUIDs holding a key: those whose newest line says present, plus every cluster with a
 * node among them (Logs/Location.hs addClusterUUIDs; pass clusters already dead-filtered,
 * as parseClusterLog with trust gives them). Sorted.
 */
export function presentUuids(text: string, clusters?: ReadonlyMap<Uuid, ReadonlySet<Uuid>>): Uuid[] {
  const here = new Set<Uuid>()
  for (const l of parseLocationLog(text).values()) if (l.status === 'present') here.add(l.uuid)
  if (clusters) {
    for (const [c, nodes] of clusters) {
      for (const n of nodes) {
        if (here.has(n)) {
          here.add(c)
          break
        }
      }
    }
  }
  return [...here].sort()
}

// ---------------------------------------------------------------------------------------
// Journal (spec §7.2)

/** The journal file name of a branch path: `_` → `__`, then `/` → `_`. */
export function journalFileName(branchPath: string): string {
  return branchPath.replace(/_/g, '__').replace(/\//g, '_')
}

/**
 * The location log path a journal file stands for, or undefined when it is another log.
 * journalFileName is not invertible in general (`a/_b` and `a_/b` both give `a___b`), but a
 * location log's path is two hash directories and a key file, which never holds a `/`.
 */
export function locationLogOfJournal(name: string): string | undefined {
  const m = /^([0-9a-f]{3})_([0-9a-f]{3})_((?:[^_]|__)+)\.log$/.exec(name)
  return m ? `${m[1]}/${m[2]}/${m[3]!.replace(/__/g, '_')}.log` : undefined
}

/** A key's location log path (`abc/def/<keyFile>.log`): the key file name, else undefined. */
export function locationLogKeyFile(branchPath: string): string | undefined {
  return /^[0-9a-f]{3}\/[0-9a-f]{3}\/([^/]+)\.log$/.exec(branchPath)?.[1]
}

/**
 * A single-value log (Logs/SingleValue.hs: numcopies.log, mincopies.log): `<clock>s <value>`
 * lines, the newest clock wins. undefined when empty.
 */
export function parseSingleValueLog(text: string | undefined): string | undefined {
  let best: { clock: number; value: string } | undefined
  for (const line of (text ?? '').split('\n')) {
    const m = /^(\d+(?:\.\d+)?)s (.*)$/.exec(line.trim())
    if (!m) continue
    const clock = Number(m[1])
    if (!best || clock >= best.clock) best = { clock, value: m[2]! }
  }
  return best?.value
}
