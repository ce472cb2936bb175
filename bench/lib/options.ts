// Command-line options of bench/run.ts, parsed once and validated (unknown flags fail fast).
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export type ServerKind = 'ours' | 'ref'
export type ScenarioName = 'large' | 'small'

export interface DatasetSize {
  readonly files: number
  readonly fileBytes: number
}

export interface Options {
  readonly quick: boolean
  readonly repeat: number
  readonly jobs: number
  readonly servers: readonly ServerKind[]
  readonly scenarios: readonly ScenarioName[]
  readonly sizes: Readonly<Record<ScenarioName, DatasetSize>>
  readonly workdir: string
  readonly out: string
  /** A client command running longer than this is killed and its phase counts as stalled. */
  readonly timeoutSeconds: number
}

const MiB = 1024 * 1024
const KiB = 1024

export const SIZES: Readonly<Record<'quick' | 'full', Readonly<Record<ScenarioName, DatasetSize>>>> = {
  quick: { large: { files: 4, fileBytes: 64 * MiB }, small: { files: 500, fileBytes: 16 * KiB } },
  full: { large: { files: 8, fileBytes: 64 * MiB }, small: { files: 2000, fileBytes: 16 * KiB } },
}

export const USAGE = `usage: node dist/bench/run.js [--quick] [--repeat N] [--jobs N]
       [--servers ours,ref] [--scenarios large,small] [--timeout S] [--workdir DIR] [--out FILE]
  --quick       4×64 MiB and 500×16 KiB instead of 8×64 MiB and 2000×16 KiB
  --repeat N    run everything N times (servers alternate who goes first); print median ± half-range
  --jobs N      client -J and server --jobs (default 4; the reference needs N >= 2)
  --servers     which servers to run (default ours,ref; ours = dist/src/cli/main.js serve)
  --scenarios   which workloads (default large,small)
  --timeout S   kill a client command after S seconds and count it as stalled (default 40 quick, 300 full)
  --workdir     where the temporary repositories go (default $TMPDIR)
  --out         JSON results (default bench/results/latest.json)`

function list<T extends string>(flag: string, value: string, allowed: readonly T[]): T[] {
  const items = value.split(',').filter((s) => s !== '')
  for (const s of items) if (!allowed.includes(s as T)) throw new Error(`${flag}: unknown value ${JSON.stringify(s)} (allowed: ${allowed.join(', ')})`)
  if (items.length === 0) throw new Error(`${flag}: empty list`)
  return [...new Set(items)] as T[]
}

function int(flag: string, value: string, min: number): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n < min) throw new Error(`${flag}: expected an integer >= ${min}, got ${JSON.stringify(value)}`)
  return n
}

const VALUED = ['--repeat', '--jobs', '--servers', '--scenarios', '--timeout', '--workdir', '--out']

export function parseOptions(argv: readonly string[], projectRoot: string): Options | 'help' {
  let quick = false
  let repeat = 1
  let jobs = 4
  let servers: ServerKind[] = ['ours', 'ref']
  let scenarios: ScenarioName[] = ['large', 'small']
  let workdir = tmpdir()
  let out = join(projectRoot, 'bench/results/latest.json')
  let timeoutSeconds: number | undefined
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!
    if (flag === '--help' || flag === '-h') return 'help'
    if (flag === '--quick') {
      quick = true
      continue
    }
    if (!VALUED.includes(flag)) throw new Error(`unknown option ${flag}\n${USAGE}`)
    const value = argv[++i]
    if (value === undefined) throw new Error(`${flag}: missing value\n${USAGE}`)
    switch (flag) {
      case '--repeat': repeat = int(flag, value, 1); break
      case '--jobs': jobs = int(flag, value, 2); break
      case '--servers': servers = list(flag, value, ['ours', 'ref'] as const); break
      case '--scenarios': scenarios = list(flag, value, ['large', 'small'] as const); break
      case '--timeout': timeoutSeconds = int(flag, value, 1); break
      case '--workdir': workdir = value; break
      case '--out': out = value; break
    }
  }
  return { quick, repeat, jobs, servers, scenarios, sizes: SIZES[quick ? 'quick' : 'full'], workdir, out, timeoutSeconds: timeoutSeconds ?? (quick ? 40 : 300) }
}
