// Chunked special remotes as git-annex lays them out (Remote/Helper/Chunked.hs,
// Logs/Chunk.hs, Logs/Chunk/Pure.hs of 10.20250416). Pure: no I/O.
//
// - A key stored with `chunk=S` becomes chunk keys `KEY-s<total>-S<S>-C<n>--NAME`, n from 1;
//   chunk n holds bytes [(n-1)·S, n·S) of the content, the last one shorter; empty content
//   is one empty chunk. Only stable keys are chunked (not URL/VURL).
// - The chunk log `<hashdirlower><keyFile>.log.cnk` has lines
//   `<vclock> <remoteuuid>:<chunksize> <chunkcount>`, one per (remote, chunk size), newest
//   clock wins; count 0 means removed. It is written only after every chunk is stored.
// - Where git-annex looks, in order (chunkKeys'): with chunk= configured the logged lists,
//   then the unchunked object, then a speculative list for the configured size; without,
//   the unchunked object first, then the logged lists.
import { compareClocks, formatClock, parseNewLog, type Clock, type VectorClock } from '../../annex/branch-logs.js'
import { makeKey, parentKey, type Key } from '../../keys/key.js'
import { hashDirLower, keyFile } from '../../keys/object-path.js'
import { readSize } from '../../annex/data-units.js'
import { ChunkConfigError } from '../../errors.js'
import type { Uuid } from '../remote.js'

/** How a remote is configured to store new content. */
export type ChunkConfig = { readonly kind: 'none' } | { readonly kind: 'chunks'; readonly size: number } | { readonly kind: 'legacy'; readonly size: number }

/**
 * getChunkConfig: `chunksize=` (legacy, wins when both are set) or `chunk=`, a git-annex
 * data size; 0 means none. A size git-annex cannot read is an error there too.
 */
export function chunkConfigOf(config: ReadonlyMap<string, string>): ChunkConfig {
  const read = (field: string, v: string, kind: 'chunks' | 'legacy'): ChunkConfig => {
    const n = readSize(v)
    if (n === undefined || n < 0) throw new ChunkConfigError(`bad configuration ${field}=${v}`)
    return n === 0 ? { kind: 'none' } : { kind, size: n }
  }
  const legacy = config.get('chunksize')
  if (legacy !== undefined) return read('chunksize', legacy, 'legacy')
  const chunk = config.get('chunk')
  if (chunk !== undefined) return read('chunk', chunk, 'chunks')
  return { kind: 'none' }
}

/** Backend.isStableKey: the same key always names the same bytes (URL keys do not). */
export function isStableKey(key: Key): boolean {
  return key.backend !== 'URL' && key.backend !== 'VURL'
}

/** Chunks needed for `size` bytes in chunks of `chunkSize`: at least one (empty content is one empty chunk). */
export function chunkCount(size: number, chunkSize: number): number {
  return Math.max(1, Math.ceil(size / chunkSize))
}

/** Chunk key n (from 1) of `key` stored in chunks of `chunkSize`. */
export function chunkKey(key: Key, chunkSize: number, n: number): Key {
  const k = parentKey(key)
  return makeKey({ backend: k.backend, size: k.size, mtime: k.mtime, chunkSize, chunkNum: n, name: k.name })
}

/** The chunk keys of one stored layout. */
export function chunkKeys(key: Key, chunkSize: number, count: number): Key[] {
  return Array.from({ length: count }, (_, i) => chunkKey(key, chunkSize, i + 1))
}

/** Where a key's content may be on a remote. */
export type Layout =
  | { readonly kind: 'whole' }
  /** `logged`: from the chunk log; otherwise a guess from the configured chunk size. */
  | { readonly kind: 'chunks'; readonly size: number; readonly count: number; readonly logged: boolean }

/** A logged (chunk size, count) of one remote, count > 0 (getCurrentChunks). */
export interface LoggedChunks {
  readonly size: number
  readonly count: number
}

/**
 * chunkKeys': every layout the key may be stored in on the remote, most likely first.
 * Logged lists of a chunk method git-annex cannot name (UnknownChunks) are left out, as it does.
 */
export function candidateLayouts(key: Key, config: ChunkConfig, logged: readonly LoggedChunks[]): Layout[] {
  const recorded: Layout[] = logged.map((l) => ({ kind: 'chunks', size: l.size, count: l.count, logged: true }))
  const whole: Layout = { kind: 'whole' }
  const out = config.kind === 'none' ? [whole, ...recorded] : [...recorded, whole]
  if (config.kind === 'chunks' && key.size !== undefined) {
    const count = chunkCount(key.size, config.size)
    if (!logged.some((l) => l.size === config.size && l.count === count)) out.push({ kind: 'chunks', size: config.size, count, logged: false })
  }
  return out
}

/** The chunk log's path in the git-annex branch: `<hashdirlower><keyFile>.log.cnk`. */
export function chunkLogPath(key: Key): string {
  const k = parentKey(key)
  return `${hashDirLower(k)}${keyFile(k)}.log.cnk`
}

interface ChunkLogEntry {
  readonly clock: VectorClock
  readonly count: number
}

/** Field `uuid:method` → newest entry. Lines that do not parse are skipped (Logs/Line.hs). */
export function parseChunkLog(text: string): Map<string, ChunkLogEntry> {
  const parsed = parseNewLog(
    text,
    (v) => (/^\d+$/.test(v) ? Number(v) : undefined),
    (f) => (f.includes(':') ? f : undefined),
  )
  return new Map([...parsed].map(([f, e]) => [f, { clock: e.clock, count: e.value }]))
}

/** getCurrentChunks: the (fixed size, count > 0) lists logged for `uuid`. */
export function loggedChunks(text: string, uuid: Uuid): LoggedChunks[] {
  const out: LoggedChunks[] = []
  for (const [field, e] of parseChunkLog(text)) {
    const colon = field.indexOf(':')
    if (field.slice(0, colon) !== uuid) continue
    const method = field.slice(colon + 1)
    if (!/^\d+$/.test(method) || e.count <= 0) continue
    out.push({ size: Number(method), count: e.count })
  }
  return out.sort((a, b) => a.size - b.size)
}

/**
 * chunksStored / chunksRemoved (count 0): the log with `uuid:chunkSize` set to `count` at
 * clock `now` (whole POSIX seconds), or one past the field's clock if that is not older,
 * so the change always wins. Fields are written sorted as MapLog keys sort: UUID, then size.
 */
export function changeChunkLog(text: string, uuid: Uuid, chunkSize: number, count: number, nowSeconds: number): string {
  const m = parseChunkLog(text)
  const field = `${uuid}:${chunkSize}`
  let clock: Clock = { n: BigInt(Math.floor(nowSeconds)), scale: 0 }
  const old = m.get(field)?.clock
  if (old !== undefined && compareClocks(old, clock) >= 0) {
    const whole = old.n / 10n ** BigInt(old.scale)
    clock = { n: whole + 1n, scale: 0 }
  }
  m.set(field, { clock, count })
  const order = (f: string): [string, number, string] => {
    const i = f.indexOf(':')
    const method = f.slice(i + 1)
    return [f.slice(0, i), /^\d+$/.test(method) ? Number(method) : Number.POSITIVE_INFINITY, method]
  }
  const fields = [...m.keys()].sort((a, b) => {
    const [ua, na, ma] = order(a)
    const [ub, nb, mb] = order(b)
    return ua < ub ? -1 : ua > ub ? 1 : na !== nb ? na - nb : ma < mb ? -1 : ma > mb ? 1 : 0
  })
  return fields.map((f) => `${formatClock(m.get(f)!.clock)} ${f} ${m.get(f)!.count}\n`).join('')
}

