// Command-line options of bench/run.ts, parsed once and validated (unknown flags fail fast).
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/**
 * ours = annex-proxy over annex+http; ref = `git annex p2phttp` over annex+http; ref-shell = the
 * reference gateway reached through `git-annex-shell p2pstdio` over a stand-in ssh (cluster
 * scenarios only: its p2phttp stalls on cluster copies, spec/protocol.md §9.19).
 */
export type ServerKind = 'ours' | 'ref' | 'ref-shell' | 'ref-newest'
export const SERVER_KINDS: readonly ServerKind[] = ['ours', 'ref', 'ref-shell', 'ref-newest']
export type ScenarioName = 'large' | 'small' | 'huge' | 'cluster-large' | 'cluster-small' | 'cluster-huge' | 's3-large' | 's3-small' | 's3-cluster-large' | 's3-cluster-small' | 'placement'
export const SCENARIOS: readonly ScenarioName[] = ['large', 'small', 'huge', 'cluster-large', 'cluster-small', 'cluster-huge', 's3-large', 's3-small', 's3-cluster-large', 's3-cluster-small', 'placement']
/** git-annex = `git annex copy/get` from a clone; upload = `annex-proxy upload` (copy only). */
export type ClientKind = 'git-annex' | 'upload'
export const CLIENT_KINDS: readonly ClientKind[] = ['git-annex', 'upload']
export const isCluster = (s: ScenarioName): boolean => s.startsWith('cluster-')

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
  readonly clients: readonly ClientKind[]
  /** A command that runs another git-annex build (e.g. /opt/annex-newest/run git-annex): the ref-newest server. */
  readonly refNewest: readonly string[] | undefined
  /** Where report.md, results.json and chart.svg go. */
  readonly resultsDir: string
  readonly sizes: Readonly<Record<ScenarioName, DatasetSize>>
  readonly workdir: string
  readonly out: string
  /** A client command running longer than this is killed and its phase counts as stalled. */
  readonly timeoutSeconds: number
  /** The client's -J for the ref-shell cluster runs (the reference's sqlite reposize db fails at -J4). */
  readonly shellJobs: number
}

const MiB = 1024 * 1024
const KiB = 1024

// Quick mode is CI's smoke test of the whole harness (report shape, not speed): small enough to
// finish in about a minute on a busy 2-core machine.
export const SIZES: Readonly<Record<'quick' | 'full', Readonly<Record<ScenarioName, DatasetSize>>>> = {
  quick: {
    large: { files: 2, fileBytes: 8 * MiB },
    small: { files: 40, fileBytes: 16 * KiB },
    huge: { files: 1, fileBytes: 32 * MiB },
    'cluster-large': { files: 2, fileBytes: 8 * MiB },
    'cluster-small': { files: 40, fileBytes: 16 * KiB },
    'cluster-huge': { files: 1, fileBytes: 32 * MiB },
    's3-large': { files: 2, fileBytes: 8 * MiB },
    's3-small': { files: 40, fileBytes: 16 * KiB },
    's3-cluster-large': { files: 2, fileBytes: 8 * MiB },
    's3-cluster-small': { files: 40, fileBytes: 16 * KiB },
    placement: { files: 60, fileBytes: 10 * KiB },
  },
  full: {
    large: { files: 8, fileBytes: 64 * MiB },
    small: { files: 2000, fileBytes: 16 * KiB },
    huge: { files: 1, fileBytes: 2048 * MiB },
    'cluster-large': { files: 8, fileBytes: 64 * MiB },
    'cluster-small': { files: 2000, fileBytes: 16 * KiB },
    'cluster-huge': { files: 1, fileBytes: 2048 * MiB },
    's3-large': { files: 8, fileBytes: 64 * MiB },
    's3-small': { files: 2000, fileBytes: 16 * KiB },
    's3-cluster-large': { files: 8, fileBytes: 64 * MiB },
    's3-cluster-small': { files: 2000, fileBytes: 16 * KiB },
    // bench/scenarios/placement.ts: files of 4–16 kB into nodes with tight maxsize (issue #12).
    placement: { files: 200, fileBytes: 10 * KiB },
  },
}

const QUICK_SCENARIOS: readonly ScenarioName[] = ['large', 'cluster-small']

export const USAGE = `usage: annex-proxy bench [--quick] [--repeat N] [--jobs N] [--shell-jobs N]
       [--servers ours,ref,ref-shell,ref-newest] [--scenarios large,small,huge,cluster-large,cluster-small,cluster-huge,
                    s3-large,s3-small,s3-cluster-large,s3-cluster-small,placement]
       [--clients git-annex,upload] [--ref-newest CMD] [--timeout S] [--workdir DIR] [--results DIR] [--out FILE]
  (also: node dist/bench/run.js …)
  --quick       CI's smoke test: 2×8 MiB plain and 40×16 KiB into a cluster, servers ours and ref,
                both clients (about a minute); full mode: 8×64 MiB, 2000×16 KiB, 1×2 GiB
  --clients     git-annex = git annex copy/get from a clone; upload = annex-proxy upload (copy only)
  --ref-newest CMD  another git-annex build as an extra reference server, CMD being how to run its
                git-annex, split on spaces (e.g. "/opt/annex-newest/run git-annex"); adds ref-newest
                to --servers
  --results DIR report.md, results.json and chart.svg (default bench/results/latest)
  --repeat N    run everything N times (servers alternate who goes first); print median ± half-range
  --jobs N      client -J and server --jobs (default 4; the reference needs N >= 2)
  --shell-jobs N  client -J against the reference gateway over git-annex-shell (default 1: at -J4
                its sqlite reposize db fails)
  --servers     which servers to run (default ours,ref,ref-shell; ours = dist/src/cli/main.js serve,
                ref = git annex p2phttp, ref-shell = git-annex-shell p2pstdio over a stand-in ssh,
                cluster scenarios only)
  --scenarios   which workloads (default large,small,cluster-large,cluster-small; cluster-* copy to
                and get from a 3-node cluster through the gateway, origin-mycluster; s3-* to a proxied
                S3 remote and s3-cluster-* to 2 local nodes + 1 S3 node on a test S3 server, ours and
                ref only, beside the SDK's own rate; bench/scenarios/s3.ts; placement = copy -J8
                of 200 files into 3 nodes with tight maxsize and sizebalanced=g:1: how far each
                gateway lets a node go over its maxsize)
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

const VALUED = ['--repeat', '--jobs', '--shell-jobs', '--servers', '--scenarios', '--clients', '--ref-newest', '--timeout', '--workdir', '--out', '--results']

export function parseOptions(argv: readonly string[], projectRoot: string): Options | 'help' {
  let quick = false
  let repeat = 1
  let jobs = 4
  let shellJobs = 1
  let servers: ServerKind[] | undefined
  let scenarios: ScenarioName[] | undefined
  let clients: ClientKind[] = [...CLIENT_KINDS]
  let refNewest: string[] | undefined
  let resultsDir = join(projectRoot, 'bench/results/latest')
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
      case '--shell-jobs': shellJobs = int(flag, value, 1); break
      case '--servers': servers = list(flag, value, SERVER_KINDS); break
      case '--scenarios': scenarios = list(flag, value, SCENARIOS); break
      case '--clients': clients = list(flag, value, CLIENT_KINDS); break
      case '--ref-newest': refNewest = value.split(' ').filter(Boolean); if (refNewest.length === 0) throw new Error('--ref-newest: empty command'); break
      case '--results': resultsDir = value; break
      case '--timeout': timeoutSeconds = int(flag, value, 1); break
      case '--workdir': workdir = value; break
      case '--out': out = value; break
    }
  }
  const defaultServers: ServerKind[] = quick ? ['ours', 'ref'] : ['ours', 'ref', 'ref-shell']
  if (refNewest) defaultServers.push('ref-newest')
  servers ??= defaultServers
  // As the usage says: --ref-newest adds its server to an explicit --servers list too.
  if (refNewest && !servers.includes('ref-newest')) servers = [...servers, 'ref-newest']
  if (servers.includes('ref-newest') && !refNewest) throw new Error('--servers ref-newest needs --ref-newest CMD')
  scenarios ??= quick ? [...QUICK_SCENARIOS] : [...SCENARIOS]
  return {
    quick,
    repeat,
    jobs,
    servers,
    scenarios,
    clients,
    refNewest,
    resultsDir,
    sizes: SIZES[quick ? 'quick' : 'full'],
    workdir,
    out,
    timeoutSeconds: timeoutSeconds ?? (quick ? 20 : 300),
    shellJobs,
  }
}
