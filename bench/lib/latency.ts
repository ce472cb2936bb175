// Request latency from annex-proxy's own /metrics (the bench starts it with --metrics): the
// histogram annex_proxy_request_duration_seconds is read before and after a phase, and p50/p99
// of the difference are estimated as Prometheus's histogram_quantile does (linear within a bucket).
import { request } from 'undici'
import { parseExposition } from '../../test/metrics/exposition.js'

export interface Latency {
  readonly endpoint: string
  readonly requests: number
  /** Seconds. */
  readonly p50: number
  readonly p99: number
}

type Buckets = Map<number, number>

export async function scrapeBuckets(port: number, endpoint: string): Promise<Buckets> {
  const r = await request(`http://127.0.0.1:${port}/metrics`, { headersTimeout: 10_000, bodyTimeout: 10_000 })
  const e = parseExposition(await r.body.text())
  const out: Buckets = new Map()
  for (const s of e.samples) {
    if (s.name !== 'annex_proxy_request_duration_seconds_bucket' || s.labels.endpoint !== endpoint) continue
    const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le)
    out.set(le, (out.get(le) ?? 0) + s.value)
  }
  return out
}

/** The q-quantile of the observations between two cumulative bucket snapshots. */
export function quantile(before: Buckets, after: Buckets, q: number): { value: number; count: number } {
  const les = [...after.keys()].sort((a, b) => a - b)
  const cum = les.map((le) => (after.get(le) ?? 0) - (before.get(le) ?? 0))
  const count = cum[cum.length - 1] ?? 0
  if (count === 0) return { value: NaN, count }
  const rank = q * count
  for (let i = 0; i < les.length; i++) {
    if (cum[i]! >= rank) {
      const upper = les[i]!
      const lower = i === 0 ? 0 : les[i - 1]!
      if (upper === Infinity) return { value: lower, count }
      const below = i === 0 ? 0 : cum[i - 1]!
      const inBucket = cum[i]! - below
      return { value: inBucket === 0 ? upper : lower + ((upper - lower) * (rank - below)) / inBucket, count }
    }
  }
  return { value: NaN, count }
}

/** Runs `fn` and reports the latency of `endpoint` requests annex-proxy served meanwhile (undefined: no metrics there). */
export async function withLatency<T>(port: number | undefined, endpoint: string, fn: () => Promise<T>): Promise<{ result: T; latency: Latency | undefined }> {
  const before = port === undefined ? undefined : await scrapeBuckets(port, endpoint).catch(() => undefined)
  const result = await fn()
  if (port === undefined || before === undefined) return { result, latency: undefined }
  const after = await scrapeBuckets(port, endpoint).catch(() => undefined)
  if (!after) return { result, latency: undefined }
  const p50 = quantile(before, after, 0.5)
  const p99 = quantile(before, after, 0.99)
  return { result, latency: p50.count > 0 ? { endpoint, requests: p50.count, p50: p50.value, p99: p99.value } : undefined }
}
