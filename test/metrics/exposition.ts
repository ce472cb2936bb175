// A strict reader of the Prometheus text exposition format (0.0.4), as promtool checks it:
// every sample belongs to a family declared by # TYPE, label syntax and values are valid,
// histogram buckets are cumulative and end with +Inf equal to _count.
export interface Sample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

export interface Exposition {
  readonly types: ReadonlyMap<string, string>
  readonly samples: readonly Sample[]
  /** Sum of the samples named `name` whose labels include `match`. */
  value(name: string, match?: Record<string, string>): number
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?[0-9]+)?$/
const LABEL = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"\s*(,|$)/y

/** As Prometheus reads them (Go's ParseFloat): NaN and Inf in any case (prom-client writes "Nan"). */
function parseValue(v: string): number {
  const l = v.toLowerCase()
  if (l === '+inf' || l === 'inf') return Infinity
  if (l === '-inf') return -Infinity
  if (l === 'nan') return NaN
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(v)) throw new Error(`bad sample value ${v}`)
  return Number(v)
}

function family(name: string, types: ReadonlyMap<string, string>): string | undefined {
  if (types.has(name)) return name
  for (const suffix of ['_bucket', '_sum', '_count', '_total', '_created']) {
    if (name.endsWith(suffix)) {
      const base = name.slice(0, -suffix.length)
      const t = types.get(base)
      if (t === 'histogram' || t === 'summary' || (t === 'counter' && suffix === '_total')) return base
    }
  }
  return undefined
}

export function parseExposition(text: string): Exposition {
  const types = new Map<string, string>()
  const samples: Sample[] = []
  if (!text.endsWith('\n')) throw new Error('exposition must end with a newline')
  for (const [i, line] of text.split('\n').entries()) {
    if (line === '') continue
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(line)
      if (!m) continue
      if (!NAME.test(m[2]!)) throw new Error(`line ${i + 1}: bad metric name ${m[2]}`)
      if (m[1] === 'TYPE') {
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(m[3] ?? '')) throw new Error(`line ${i + 1}: bad type ${m[3]}`)
        if (types.has(m[2]!)) throw new Error(`line ${i + 1}: ${m[2]} declared twice`)
        types.set(m[2]!, m[3]!)
      }
      continue
    }
    const m = SAMPLE.exec(line)
    if (!m) throw new Error(`line ${i + 1}: not a sample: ${line}`)
    const labels: Record<string, string> = {}
    if (m[3] !== undefined && m[3] !== '') {
      LABEL.lastIndex = 0
      const body = m[3]
      while (LABEL.lastIndex < body.length) {
        const l = LABEL.exec(body)
        if (!l) throw new Error(`line ${i + 1}: bad labels {${body}}`)
        labels[l[1]!] = l[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\')
      }
    }
    if (family(m[1]!, types) === undefined) throw new Error(`line ${i + 1}: sample ${m[1]} has no # TYPE`)
    samples.push({ name: m[1]!, labels, value: parseValue(m[4]!) })
  }
  // Histograms: cumulative buckets ending at +Inf = _count, per label set.
  for (const [name, t] of types) {
    if (t !== 'histogram') continue
    const series = new Map<string, { le: number; v: number }[]>()
    for (const s of samples.filter((x) => x.name === `${name}_bucket`)) {
      const { le, ...rest } = s.labels
      if (le === undefined) throw new Error(`${name}_bucket without le`)
      const k = JSON.stringify(rest)
      if (!series.has(k)) series.set(k, [])
      series.get(k)!.push({ le: parseValue(le), v: s.value })
    }
    for (const [k, b] of series) {
      b.sort((x, y) => x.le - y.le)
      for (let j = 1; j < b.length; j++) if (b[j]!.v < b[j - 1]!.v) throw new Error(`${name}${k}: buckets not cumulative`)
      const last = b[b.length - 1]!
      if (last.le !== Infinity) throw new Error(`${name}${k}: no +Inf bucket`)
      const count = samples.find((x) => x.name === `${name}_count` && JSON.stringify(x.labels) === k)
      if (!count || count.value !== last.v) throw new Error(`${name}${k}: _count differs from the +Inf bucket`)
    }
  }
  return {
    types,
    samples,
    value(name, match = {}) {
      return samples
        .filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v))
        .reduce((a, s) => a + s.value, 0)
    },
  }
}
