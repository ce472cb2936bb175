// The physical floor: the same bytes copied with `cp -r` and flushed with `sync`, timed together
// (cpSyncSeconds, the figure the table prints), and cp alone (cpSeconds: page cache only).
import { mkdtemp, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { sh } from '../../test/helpers/annex.js'
import type { Dataset } from '../lib/dataset.js'
import { seconds, syncDisks } from '../lib/timing.js'

export interface FloorRun {
  readonly scenario: Dataset['name']
  readonly cpSeconds: number
  readonly cpSyncSeconds: number
}

export async function runFloor(data: Dataset, workdir: string): Promise<FloorRun> {
  const root = await mkdtemp(join(workdir, `annex-bench-floor-${data.name}-`))
  try {
    await syncDisks()
    const cpSeconds = await seconds(() => sh(root, 'cp', ['-r', data.dir, join(root, 'copy')]))
    const syncSeconds = await seconds(syncDisks)
    return { scenario: data.name, cpSeconds, cpSyncSeconds: cpSeconds + syncSeconds }
  } finally {
    await rm(root, { recursive: true, force: true })
  }
}
