// The allocation workload that grows V8's young generation without a cap (to 16 MiB per
// semi-space on Node 20, 64 on Node 24), run inside the process under test as source text.

/**
 * Source of an expression that runs 300 rounds of allocation and resolves with `semiMiB`
 * (an expression: MiB per semi-space) sampled after each. Objects outlive a scavenge or two,
 * which is what makes V8 grow the young generation; the rounds yield to the event loop, as a
 * server does.
 */
export function allocationRounds(semiMiB: string): string {
  return `(async () => {
    const sizes = []
    let keep = []
    for (let round = 0; round < 300; round++) {
      for (let i = 0; i < 100000; i++) {
        const o = { a: i, b: [i] }
        if (i % 50 === 0) { keep.push(o); if (keep.length > 20000) keep = [] }
      }
      sizes.push(${semiMiB})
      await new Promise((r) => setImmediate(r))
    }
    return sizes
  })()`
}

/**
 * The size the young generation settled at: a sample taken in the middle of a collection
 * can show pages V8 is moving, so the median of the later rounds.
 */
export function settledMiB(sizes: readonly number[]): number {
  const late = [...sizes.slice(150)].sort((a, b) => a - b)
  return late[Math.floor(late.length / 2)]!
}
