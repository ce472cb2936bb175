// The cap on V8's young generation (--young-generation): the memory a gateway holds while
// it streams depends on it more than on anything the transfer itself buffers.
//
// Every chunk of an upload's body arrives in a fresh Buffer (Node's HTTP parser copies each
// one out of its read buffer), so a gateway streaming a large upload turns its bytes into
// ArrayBuffer garbage at network speed. What a chunk holds is freed only when V8 collects its
// small Buffer object: at a scavenge of the young generation, which comes after that many
// bytes of *JavaScript* objects were allocated, or, for a chunk that outlived a scavenge or
// two (in the fan-out's buffers, in an S3 part), at a full collection, which V8 starts once
// tens of MiB more ArrayBuffer memory are in use. The young generation's two semi-spaces grow
// to 16 MiB each on Node 20 and to 64 MiB on Node 24. On the 1 GiB upload fanned out to 2
// local nodes and 2 S3 remotes (test/interop/special-remotes-fanout.test.ts, load 6-9 on 2
// cores) the gateway's peak RSS was 169-244 MiB on Node 24 with V8's limit (its heap up to
// 155 MiB, of which 128 the young generation) and 166-201 with 8 MiB (heap ~43 MiB; Node 20:
// 145-183). What is left is the ArrayBuffers: up to ~90 MiB in use in every setting tried,
// ~25 of them live (bench/HISTORY.md#young-generation).
//
// V8 reads --max-semi-space-size only when the process starts, before any of our code runs,
// so the cap is kept here: V8 reads --semi-space-growth-factor each time it grows the young
// generation (after a scavenge), and it is set to 1 (no growth) once one more doubling
// would pass the cap, and back to V8's default below it. V8's own limit still applies (a
// NODE_OPTIONS=--max-semi-space-size=N smaller than the cap wins).
import { PerformanceObserver } from 'node:perf_hooks'
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8'

/** MiB per semi-space unless configured (--young-generation); 0 leaves V8's own limit. */
export const DEFAULT_YOUNG_GENERATION_MIB = 8
/** V8's default --semi-space-growth-factor (the same on Node 20 and 24): it doubles. */
const V8_GROWTH_FACTOR = 2

/** Bytes in one semi-space of V8's young generation now (new_space counts both). */
export function semiSpaceBytes(): number {
  return (getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0) / 2
}

let kept: { readonly mib: number; readonly observer: PerformanceObserver } | undefined

/**
 * Keeps each semi-space of V8's young generation at most `mib` MiB (0: V8's own limit) for
 * the rest of the process, from now on; a second call replaces the first. A young
 * generation already larger is left to V8 to shrink; it grows no further.
 */
export function capYoungGeneration(mib: number): void {
  if (kept?.mib === mib) return
  kept?.observer.disconnect()
  kept = undefined
  let growing: boolean | undefined
  const allow = (grow: boolean) => {
    if (grow === growing) return
    growing = grow
    setFlagsFromString(`--semi-space-growth-factor=${grow ? V8_GROWTH_FACTOR : 1}`)
  }
  if (mib === 0) {
    allow(true)
    return
  }
  const cap = mib * 1024 * 1024
  const check = () => allow(semiSpaceBytes() * V8_GROWTH_FACTOR <= cap)
  check()
  // After every collection: the only time V8 grows (or shrinks) the young generation.
  const observer = new PerformanceObserver(check)
  observer.observe({ entryTypes: ['gc'] })
  kept = { mib, observer }
}
