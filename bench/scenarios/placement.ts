// The placement scenario (issue #12): does a gateway keep nodes within their maxsize when a
// client uploads concurrently? A fresh gateway with three nodes (bench/lib/cluster.ts), each
// in group g with `wanted sizebalanced=g:1` and a maxsize 6% above a third of the data set;
// then `git annex copy -J8 --to origin-mycluster` of N files of 4–16 kB (200 in full mode).
// Reported per server, from the nodes' own location logs after the copy: files placed,
// extra copies (sizebalanced=g:1 wants one), each node's bytes against its maxsize and how far
// the fullest went over it. Not a speed figure: the seconds are there to show the price.
import { randomFillSync } from 'node:crypto'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { annex, sh } from '../../test/helpers/annex.js'
import { clientAnnex, StalledError } from '../lib/client.js'
import { CLUSTER, fakeSsh, makeGateway, makeShellClient } from '../lib/cluster.js'
import type { ServerKind } from '../lib/options.js'
import { benchEnv, makeClient } from '../lib/repos.js'
import { NotBuiltError, SERVER_LABEL, startServer, type RunningServer } from '../lib/servers.js'

/** The client's -J: the issue's. */
const JOBS = 8
/** Room beyond what the files need, spread over the nodes. */
const SLACK = 1.06

export interface PlacementContext {
  readonly workdir: string
  readonly projectRoot: string
  readonly timeoutSeconds: number
  readonly refNewest?: readonly string[] | undefined
  /** Server --jobs for the HTTP servers. */
  readonly serverJobs: number
}

export interface PlacementRun {
  readonly server: ServerKind
  readonly files: number
  readonly maxsize: number
  /** Distinct files on some node. */
  readonly placed?: number
  /** Copies beyond one per placed file. */
  readonly extraCopies?: number
  /** Bytes per node by its own location log. */
  readonly nodeBytes?: readonly number[]
  /** The largest amount any node holds over its maxsize (0: none over). */
  readonly worstOverBytes?: number
  readonly seconds?: number
  /** The copy did not succeed for every file (first lines of its output), or the run failed. */
  readonly error?: string
  readonly stalled?: boolean
}

/** Deterministic sizes of 4–16 kB, random contents: the same files for every server. */
async function makeFiles(dir: string, n: number): Promise<number> {
  await mkdir(dir, { recursive: true })
  let total = 0
  for (let i = 0; i < n; i++) {
    const size = 4_000 + ((i * 7919) % 12_000)
    const buf = Buffer.allocUnsafe(size)
    randomFillSync(buf)
    await writeFile(join(dir, `p${String(i).padStart(3, '0')}.bin`), buf)
    total += size
  }
  return total
}

const sizeOf = (key: string) => Number(/-s(\d+)-/.exec(key)?.[1] ?? 0)

async function runOne(server: ServerKind, dataDir: string, files: number, maxsize: number, ctx: PlacementContext): Promise<PlacementRun> {
  const root = await mkdtemp(join(ctx.workdir, `annex-bench-placement-${server}-`))
  let running: RunningServer | undefined
  const base = { server, files, maxsize }
  try {
    const { gw, nodes } = await makeGateway(root, benchEnv)
    for (const n of ['n1', 'n2', 'n3']) {
      await sh(gw, 'git', ['annex', 'group', n, 'g'], { env: benchEnv })
      await sh(gw, 'git', ['annex', 'wanted', n, 'sizebalanced=g:1'], { env: benchEnv })
      await sh(gw, 'git', ['annex', 'maxsize', n, String(maxsize)], { env: benchEnv })
    }
    const client = join(root, 'client')
    let env = benchEnv
    if (server === 'ref-shell') {
      env = (await fakeSsh(root, benchEnv)).env
      await makeShellClient(gw, client, dataDir, env)
    } else {
      running = await startServer(server, gw, ctx.serverJobs, ctx.projectRoot, benchEnv, ctx.refNewest)
      await makeClient(gw, client, running.port, dataDir)
    }
    const started = performance.now()
    let error: string | undefined
    let stalled = false
    await clientAnnex(client, ['copy', '--to', `origin-${CLUSTER}`, `-J${JOBS}`, '--quiet', 'placement'], ctx.timeoutSeconds * 1000, env).catch((e: unknown) => {
      stalled = e instanceof StalledError
      error = (e as Error).message.split('\n').slice(0, 4).join(' | ')
    })
    const seconds = (performance.now() - started) / 1000
    const copies = new Map<string, number>()
    const nodeBytes: number[] = []
    for (const n of nodes) {
      const keys = (await annex(n, 'findkeys', '--in', 'here')).stdout.split('\n').filter(Boolean)
      nodeBytes.push(keys.reduce((s, k) => s + sizeOf(k), 0))
      for (const k of keys) copies.set(k, (copies.get(k) ?? 0) + 1)
    }
    const extraCopies = [...copies.values()].reduce((s, c) => s + c - 1, 0)
    const worstOverBytes = Math.max(0, ...nodeBytes.map((b) => b - maxsize))
    return { ...base, placed: copies.size, extraCopies, nodeBytes, worstOverBytes, seconds, ...(error ? { error } : {}), ...(stalled ? { stalled } : {}) }
  } catch (e) {
    return { ...base, error: e instanceof NotBuiltError ? e.message : (e as Error).message.split('\n').slice(0, 4).join(' | ') }
  } finally {
    await running?.stop()
    await sh('/', 'chmod', ['-R', 'u+w', root]).catch(() => {})
    await rm(root, { recursive: true, force: true })
  }
}

/** Runs the scenario on every server; the table to print and the runs for the JSON. */
export async function runPlacement(servers: readonly ServerKind[], files: number, ctx: PlacementContext, log: (s: string) => void): Promise<{ table: string; runs: PlacementRun[] }> {
  const dataRoot = await mkdtemp(join(ctx.workdir, 'annex-bench-placement-data-'))
  const runs: PlacementRun[] = []
  try {
    const dataDir = join(dataRoot, 'placement')
    const total = await makeFiles(dataDir, files)
    const maxsize = Math.ceil((total * SLACK) / 3)
    for (const server of servers) {
      const r = await runOne(server, dataDir, files, maxsize, ctx)
      runs.push(r)
      log(`placement ${SERVER_LABEL[server]}: ${describe(r)}`)
    }
  } finally {
    await rm(dataRoot, { recursive: true, force: true })
  }
  return { table: formatPlacement(runs), runs }
}

function describe(r: PlacementRun): string {
  if (r.placed === undefined) return `failed: ${r.error ?? ''}`
  const over = r.worstOverBytes! > 0 ? `worst node ${r.worstOverBytes} B (${((100 * r.worstOverBytes!) / r.maxsize).toFixed(1)}%) over maxsize` : 'no node over maxsize'
  return `${r.placed}/${r.files} placed, ${r.extraCopies} extra copies, ${over}, ${r.seconds!.toFixed(1)} s${r.stalled ? ' (stalled, killed)' : r.error ? ' (some copies failed)' : ''}`
}

function formatPlacement(runs: readonly PlacementRun[]): string {
  if (runs.length === 0) return ''
  const maxsize = runs[0]!.maxsize
  const head = ['server', 'placed', 'extra copies', 'n1 / n2 / n3 bytes', 'worst over maxsize', 'copy s', 'copy result']
  const rows = runs.map((r) => [
    SERVER_LABEL[r.server],
    r.placed === undefined ? '-' : `${r.placed}/${r.files}`,
    r.extraCopies === undefined ? '-' : String(r.extraCopies),
    r.nodeBytes?.join(' / ') ?? '-',
    r.worstOverBytes === undefined ? '-' : r.worstOverBytes === 0 ? 'none' : `${r.worstOverBytes} B (${((100 * r.worstOverBytes) / maxsize).toFixed(1)}%)`,
    r.seconds === undefined ? '-' : r.seconds.toFixed(1),
    r.stalled ? 'stalled' : r.error ? (r.placed === undefined ? `failed: ${r.error.slice(0, 60)}` : 'some files failed') : 'ok',
  ])
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: readonly string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ')
  return [
    `placement: copy -J${JOBS} --to origin-${CLUSTER} of ${runs[0]!.files} files (4–16 kB) into 3 nodes, wanted sizebalanced=g:1, maxsize ${maxsize} B each (${Math.round((SLACK - 1) * 100)}% above a third of the files)`,
    line(head),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map(line),
  ].join('\n')
}
