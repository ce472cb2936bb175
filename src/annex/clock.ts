// The remote's monotonic clock (spec §1.2: GETTIMESTAMP / REMOVE-BEFORE).
// git-annex uses CLOCK_BOOTTIME; process.hrtime is CLOCK_MONOTONIC, which does not
// advance while the machine is suspended. Across a suspend our clock therefore lags
// real time and a remove-before could pass after the client's lock proof expired;
// Node offers no boottime clock, and servers rarely suspend mid-drop.

/** Whole seconds on this machine's monotonic clock. */
export function monotonicSeconds(): number {
  return Number(process.hrtime.bigint() / 1_000_000_000n)
}
