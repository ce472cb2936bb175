// Which holder serves a GET (issue: beyond the reference's random pick): configured
// cost ranks first, then the shorter path (a node behind another gateway is a hop further
// than one the gateway reaches itself: issue #12's hop-aware cost, which upstream defers),
// then the node with the fewest transfers in flight, then the best recent throughput.
// Pure, so the order is testable.

export interface NodeLoad {
  readonly uuid: string
  readonly cost: number
  /** Gateways between this one and the content: 1 for a node reached directly (default). */
  readonly hops?: number
  readonly inFlight: number
  /** Recent throughput in bytes/s (exponentially weighted); undefined until measured. */
  readonly throughput: number | undefined
}

export function rankHolders<T extends NodeLoad>(nodes: readonly T[]): T[] {
  return [...nodes].sort(compareLoad)
}

function compareLoad(a: NodeLoad, b: NodeLoad): number {
  if (a.cost !== b.cost) return a.cost - b.cost
  const ha = a.hops ?? 1
  const hb = b.hops ?? 1
  if (ha !== hb) return ha - hb
  if (a.inFlight !== b.inFlight) return a.inFlight - b.inFlight
  // Unmeasured nodes go first among equals, so every node gets measured.
  const ta = a.throughput ?? Infinity
  const tb = b.throughput ?? Infinity
  if (ta !== tb) return ta > tb ? -1 : 1
  return a.uuid < b.uuid ? -1 : a.uuid > b.uuid ? 1 : 0
}

/** Exponentially weighted moving average; `weight` is the share of the newest sample. */
export function ewma(previous: number | undefined, sample: number, weight = 0.3): number {
  return previous === undefined ? sample : previous * (1 - weight) + sample * weight
}
