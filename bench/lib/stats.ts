// Summaries of repeated measurements: the median, and half the range as the ± spread (with few
// repetitions on a shared machine, the range says more than a standard deviation would).

export interface Summary {
  readonly median: number
  readonly spread: number
  readonly n: number
}

export function summarize(values: readonly number[]): Summary | undefined {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b)
  if (v.length === 0) return undefined
  const mid = v.length >> 1
  const median = v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2
  return { median, spread: (v[v.length - 1]! - v[0]!) / 2, n: v.length }
}

/** ours / ref, or undefined when either side is missing. */
export function ratio(ours: Summary | undefined, ref: Summary | undefined): number | undefined {
  if (!ours || !ref || ref.median === 0) return undefined
  return ours.median / ref.median
}
