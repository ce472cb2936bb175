// The physical floor: the same bytes copied with `cp -r` and flushed with `sync`, timed together
// (cpSyncSeconds, the figure the table prints), and cp alone (cpSeconds: page cache only). For a
// cluster scenario, `copies` = 3: the bytes land once in each node.
import { mkdtemp, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { sh } from '../../test/helpers/annex.js'
import type { Dataset } from '../lib/dataset.js'
import { seconds, syncDisks } from '../lib/timing.js'

export interface FloorRun {
  readonly scenario: Dataset['name']
  readonly cpSeconds: number
  readonly cpSyncSeconds: number
  readonly copies: number
}

export async function runFloor(data: Dataset, workdir: string, copies = 1): Promise<FloorRun> {
  const root = await mkdtemp(join(workdir, `annex-bench-floor-${data.name}-`))
  try {
    await syncDisks()
    const cpSeconds = await seconds(async () => {
      for (let i = 0; i < copies; i++) await sh(root, 'cp', ['-r', data.dir, join(root, `copy${i}`)])
    })
    const syncSeconds = await seconds(syncDisks)
    return { scenario: data.name, cpSeconds, cpSyncSeconds: cpSeconds + syncSeconds, copies }
  } finally {
    await rm(root, { recursive: true, force: true })
  }
}
