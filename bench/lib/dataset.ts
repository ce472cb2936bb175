// The bytes every server and the physical floor move: generated once per bench run, so each
// server gets an identical copy. Random, so nothing downstream can compress or deduplicate them.
import { randomFillSync } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { DatasetSize, ScenarioName } from './options.js'

export interface Dataset extends DatasetSize {
  readonly name: ScenarioName
  /** A directory named after the scenario, holding only the files. */
  readonly dir: string
  readonly totalBytes: number
  /** "4×64 MiB" */
  readonly label: string
}

export function sizeLabel(bytes: number): string {
  if (bytes % (1024 * 1024) === 0) return `${bytes / (1024 * 1024)} MiB`
  if (bytes % 1024 === 0) return `${bytes / 1024} KiB`
  return `${bytes} B`
}

export async function makeDataset(root: string, name: ScenarioName, size: DatasetSize): Promise<Dataset> {
  const dir = join(root, name)
  await mkdir(dir, { recursive: true })
  const buf = Buffer.allocUnsafe(size.fileBytes)
  const width = String(size.files).length
  for (let i = 0; i < size.files; i++) {
    randomFillSync(buf)
    await writeFile(join(dir, `f${String(i).padStart(width, '0')}.bin`), buf)
  }
  return { name, dir, ...size, totalBytes: size.files * size.fileBytes, label: `${size.files}×${sizeLabel(size.fileBytes)}` }
}
