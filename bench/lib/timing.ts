// Timing one client command while metering the server's process tree.
import { sh } from '../../test/helpers/annex.js'
import { ProcessTreeMeter, type Meter } from './proc-meter.js'

export interface PhaseMeasurement {
  readonly wallSeconds: number
  readonly cpuSeconds: number
  readonly peakRssBytes: number
  /** The server process alone, without its children (absent for a server that is sessions). */
  readonly rootPeakRssBytes?: number
}

/** Flushes dirty pages, so no phase pays for the previous one's writeback. */
export async function syncDisks(): Promise<void> {
  await sh('/', 'sync', [])
}

export async function seconds(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now()
  await fn()
  return (performance.now() - t0) / 1000
}

/** Runs `fn` (after a sync) while metering the tree under `server` (a pid), or with `server`'s meter. */
export async function measured(server: number | Meter, fn: () => Promise<unknown>): Promise<PhaseMeasurement> {
  await syncDisks()
  const meter = typeof server === 'number' ? new ProcessTreeMeter(server) : server
  meter.start()
  const t0 = performance.now()
  try {
    await fn()
  } catch (e) {
    await meter.stop()
    throw e
  }
  const wallSeconds = (performance.now() - t0) / 1000
  const usage = await meter.stop()
  return { wallSeconds, cpuSeconds: usage.cpuSeconds, peakRssBytes: usage.peakRssBytes, ...(usage.rootPeakRssBytes !== undefined ? { rootPeakRssBytes: usage.rootPeakRssBytes } : {}) }
}
