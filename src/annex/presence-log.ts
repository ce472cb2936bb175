// A location log changed exactly as git-annex changes it (Logs/Location.hs logChange →
// Logs/Presence.hs maybeAddLog → Annex/Branch.hs maybeChange), so that a journal file we write
// is byte for byte the one `git annex setpresentkey` would have written from the same content
// and clock. Pure: content in, content out. Strings hold bytes as latin1, so ordering and
// comparisons are git-annex's ByteString ones.

import { parseClock } from './branch-logs.js'

/** A vector clock as git-annex holds it: a POSIXTime, i.e. a Pico (10^-12 s), here in picoseconds. */
export type Picos = bigint

const PICO = 10n ** 12n

export type PresenceStatus = '1' | '0' | 'X'

export interface PresenceLine {
  readonly clock: Picos
  readonly status: PresenceStatus
  /** The rest of the line after `<clock> <status> ` (a UUID in a location log), as bytes. */
  readonly info: string
}

/**
 * The clock as git-annex's POSIXTime holds it: branch-logs.ts's exact parse (parserPOSIXTime,
 * quirks included), floored to picoseconds as Fixed's fromRational does (toward zero, the
 * sign applying to the whole).
 */
export function parsePosixTime(s: string): Picos | undefined {
  const c = parseClock(s)
  return c === undefined ? undefined : (c.n * PICO) / 10n ** BigInt(c.scale)
}

/** How a POSIXTime shows itself (Fixed's showFixed True, then "s"): "1700000000s", "1700000000.5s". */
export function showPosixTime(t: Picos): string {
  if (t < 0n) return `-${showPosixTime(-t)}`
  const whole = t / PICO
  const frac = t % PICO
  return frac === 0n ? `${whole}s` : `${whole}.${frac.toString().padStart(12, '0').replace(/0+$/, '')}s`
}

/**
 * Logs/Presence/Pure.hs parseLog: lines split on any run of \r and \n; a line that does not
 * parse is left out (and so dropped when the log is rewritten, as git-annex drops it).
 */
export function parsePresenceLog(content: string): PresenceLine[] {
  const out: PresenceLine[] = []
  for (const line of content.split(/[\r\n]+/)) {
    const a = line.indexOf(' ')
    if (a < 0) continue
    const clock = parsePosixTime(line.slice(0, a))
    const status = line[a + 1]
    if (clock === undefined || (status !== '1' && status !== '0' && status !== 'X') || line[a + 2] !== ' ') continue
    out.push({ clock, status, info: line.slice(a + 3) })
  }
  return out
}

/** buildLog: one `<clock> <status> <info>` line each. */
export function buildPresenceLog(lines: readonly PresenceLine[]): string {
  return lines.map((l) => `${showPosixTime(l.clock)} ${l.status} ${l.info}\n`).join('')
}

/** Annex/VectorClock.hs advanceVectorClock: one second past the newest earlier clock when that is not older than the candidate. */
export function advanceClock(candidate: Picos, previous: readonly Picos[]): Picos {
  if (previous.length === 0) return candidate
  const prev = previous.reduce((a, b) => (b > a ? b : a))
  return prev >= candidate ? prev + PICO : candidate
}

/**
 * Annex/VectorClock/Utility.hs startVectorClock: GIT_ANNEX_VECTOR_CLOCK when it parses,
 * else the time in whole seconds.
 */
export function candidateClock(env: NodeJS.ProcessEnv = process.env, nowMs: number = Date.now()): Picos {
  const fixed = env.GIT_ANNEX_VECTOR_CLOCK
  const t = fixed === undefined ? undefined : parsePosixTime(fixed)
  return t ?? BigInt(Math.floor(nowMs / 1000)) * PICO
}

/**
 * maybeAddLog + maybeChange for one change: the new content of the log, or undefined when
 * git-annex would leave the file as it is (the info already has that status, or the
 * rewritten content is the same bytes).
 */
export function changePresenceLog(content: string, info: string, status: PresenceStatus, candidate: Picos): string | undefined {
  const old = parsePresenceLog(content)
  const line: PresenceLine = { clock: advanceClock(candidate, old.filter((l) => l.info === info).map((l) => l.clock)), status, info }
  // logMap = foldr insertNewerLogLine: from the last line back, a line replaces one whose clock is not newer.
  const m = new Map<string, PresenceLine>()
  for (let i = old.length - 1; i >= 0; i--) {
    const l = old[i]!
    const e = m.get(l.info)
    if (e === undefined || e.clock <= l.clock) m.set(l.info, l)
  }
  // insertNewStatus: no churn when the info already has that status.
  if (m.get(info)?.status === status) return undefined
  m.set(info, line)
  // mapLog = Map.elems: ordered by info, bytewise.
  const next = buildPresenceLog([...m.values()].sort((a, b) => (a.info < b.info ? -1 : a.info > b.info ? 1 : 0)))
  return next === content ? undefined : next
}

/** Annex/Journal.hs discardIncompleteAppend: a journal file not ending in a newline loses its last, partial line. */
export function discardIncompleteAppend(content: string): string {
  if (content === '' || content.endsWith('\n')) return content
  const nl = content.lastIndexOf('\n')
  return nl < 0 ? '' : content.slice(0, nl + 1)
}
