// A forge's estate (issue #14 item 6): N bare git-annex repositories (default 10 000, copies
// of one template with fresh UUIDs) under one --directory, served by `annex-proxy serve` as
// a child process. Measures what an operator sees, asserts nothing:
// - listen: from spawn to the "annex-proxy serving" log line;
// - walk: the server's own "repositories found" time;
// - first request: one sent the moment it listens, then requests to cold repositories (never
//   opened) one after another once the walk is over. The first start has no index (--state-dir
//   emptied before it): its first request waits until the walk finds its repository; later
//   starts have the index the previous one wrote, and are served from it before the walk;
// - an unknown UUID (authorized: one rescan of the whole estate);
// - a new repository (`git init --bare` + `git annex init`): ms until it is served;
// - the server's RSS (now and peak) and its child processes (most seen at once).
// - what bounds the listen figure: a bare `node -e 0` on the same load, and the server's
//   own uptime when it logged "serving" (Node's start, module loading, building the server).
// Run: npx tsc -p tsconfig.json && node dist/bench/estate.js [--repos 10000] [--max-open-repos 64] [--cold 50]
//   [--estate DIR] (made there once and kept; later runs reuse it: making 10 000 takes minutes)
//   [--server PATH] (another build's dist/src/cli/main.js, e.g. main's, side by side)
//   [--runs N] (start the server N times on the estate, default 3; listen figures as min/median/max;
//   the first start without an index, the later ones with the one the start before wrote)
//   [--no-state-dir] (no --state-dir: for a --server build without it)
import { execFileSync, spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { Pool } from 'undici'
import { annex, sh } from '../test/helpers/annex.js'
import { childPids, makeEstate, makeTemplate } from '../test/helpers/estate.js'

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name)
  return i >= 0 ? Number(process.argv[i + 1]) : dflt
}
const REPOS = arg('--repos', 10_000)
const MAX_OPEN = arg('--max-open-repos', 64)
const COLD = arg('--cold', 50)
const C = 'clientuuid=11111111-2222-3333-4444-555555555555'
const AUTH = { authorization: `Basic ${Buffer.from('alice:pw').toString('base64')}` }
const opt = (name: string) => {
  const i = process.argv.indexOf(name)
  return i >= 0 ? process.argv[i + 1] : undefined
}
const ESTATE = opt('--estate')
const MAIN = resolve(opt('--server') ?? new URL('../src/cli/main.js', import.meta.url).pathname)
const RUNS = arg('--runs', 3)
const STATE = !process.argv.includes('--no-state-dir')

const root = ESTATE ? resolve(ESTATE) : await mkdtemp(join(tmpdir(), 'annex-proxy-bench-estate-'))
const kib = async (pid: number, field: 'VmRSS' | 'VmHWM') => Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(await readFile(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN)
const ms = (x: number) => `${Math.round(x)} ms`
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!
const spread = (xs: number[]) => (xs.length === 1 ? ms(xs[0]!) : `${ms(median(xs))} (min ${ms(Math.min(...xs))}, max ${ms(Math.max(...xs))}, ${xs.length} runs)`)
const load = async () => (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ')

/** The estate: made once under --estate DIR (with a manifest) and reused, or made in a temp dir. */
async function prepare(): Promise<{ forge: string; repos: Array<{ dir: string; uuid: string }> }> {
  const forge = join(root, 'forge')
  const manifest = join(root, 'estate.json')
  if (ESTATE && existsSync(manifest)) {
    const m = JSON.parse(await readFile(manifest, 'utf8')) as { repos: Array<{ dir: string; uuid: string }> }
    if (m.repos.length === REPOS) {
      console.log(`estate: ${REPOS} repositories reused from ${forge}`)
      return { forge, repos: m.repos }
    }
    throw new Error(`${manifest} holds ${m.repos.length} repositories, not ${REPOS}: give another --estate`)
  }
  await mkdir(root, { recursive: true })
  const t0 = performance.now()
  const template = await makeTemplate(join(root, 'template.git'))
  const estate = await makeEstate(template, forge, REPOS, { perFolder: 100 })
  if (ESTATE) await writeFile(manifest, JSON.stringify({ repos: estate.repos }))
  console.log(`estate: ${REPOS} repositories made in ${ms(performance.now() - t0)} (${forge})`)
  return { forge, repos: [...estate.repos] }
}

/** How long a bare Node takes to start and exit on this load: the floor under any listen figure. */
function nodeFloor(): number {
  const t = performance.now()
  execFileSync(process.execPath, ['-e', '0'])
  return performance.now() - t
}

interface Started {
  readonly child: ReturnType<typeof spawn>
  readonly port: number
  /** From spawn to the "annex-proxy serving" line. */
  readonly listenMs: number
  /** The server's own uptime when it logged it (undefined: a build that does not say). */
  readonly uptimeMs: number | undefined
  readonly spawnedAt: number
  readonly walk: Promise<{ ms?: number; repositories?: number }>
  stop(): Promise<void>
}

async function startServer(forge: string): Promise<Started> {
  const spawnedAt = performance.now()
  const state = STATE ? ['--state-dir', join(root, 'state')] : []
  const child = spawn(process.execPath, [MAIN, 'serve', '--directory', forge, '--port', '0', '--authenv-http', '--max-open-repos', String(MAX_OPEN), '--rescan-interval', '1', '--log-level', 'info', ...state], {
    cwd: root,
    env: { ...process.env, GIT_ANNEX_P2PHTTP_PASSWORD_alice: 'pw' },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r))
      child.kill('SIGTERM')
      await exited
    }
  }
  let walkDone: (w: { ms?: number; repositories?: number }) => void = () => {}
  const walk = new Promise<{ ms?: number; repositories?: number }>((r) => (walkDone = r))
  try {
    const serving = await new Promise<{ port: number; at: number; uptimeMs?: number }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('gave up after 120 s waiting for the server to log "annex-proxy serving"')), 120_000)
      child.once('exit', (code) => reject(new Error(`server exited (${code}) before listening`)))
      createInterface({ input: child.stdout! }).on('line', (line) => {
        let rec: { msg?: string; address?: string; ms?: number; repositories?: number; uptimeMs?: number }
        try {
          rec = JSON.parse(line) as typeof rec
        } catch {
          return
        }
        if (rec.msg === 'annex-proxy serving' && rec.address) {
          clearTimeout(timer)
          resolve({ port: Number(/:(\d+)$/.exec(rec.address)?.[1]), at: performance.now(), ...(rec.uptimeMs !== undefined ? { uptimeMs: rec.uptimeMs } : {}) })
        }
        if (rec.msg === 'repositories found') walkDone(rec)
      })
    })
    return { child, port: serving.port, listenMs: serving.at - spawnedAt, uptimeMs: serving.uptimeMs, spawnedAt, walk, stop }
  } catch (err) {
    await stop()
    throw err
  }
}

const clientFor = (port: number) => {
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 8 })
  const post = async (uuid: string, endpoint: string, auth = true) => {
    const r = await pool.request({ path: `/git-annex/${uuid}/v4/${endpoint}?${C}`, method: 'POST', headers: auth ? AUTH : {} })
    await r.body.text()
    return r.statusCode
  }
  const timed = async (uuid: string, endpoint = 'gettimestamp', auth = true) => {
    const t = performance.now()
    const status = await post(uuid, endpoint, auth)
    return { status, ms: performance.now() - t }
  }
  return { post, timed, close: () => pool.close() }
}

try {
  const { forge, repos } = await prepare()
  // The first start finds no index of an earlier one.
  await rm(join(root, 'state'), { recursive: true, force: true })
  const loadBefore = await load()
  const floors: number[] = []
  const listens: number[] = []
  const uptimes: number[] = []
  const firsts: number[] = []
  const walks: number[] = []
  let firstStatus = 0
  let rows: Array<[string, string]> = []
  for (let run = 0; run < RUNS; run++) {
    floors.push(nodeFloor())
    const server = await startServer(forge)
    let maxChildren = 0
    const sampler = setInterval(() => (maxChildren = Math.max(maxChildren, childPids(server.child.pid).length)), 5)
    const http = clientFor(server.port)
    try {
      listens.push(server.listenMs)
      if (server.uptimeMs !== undefined) uptimes.push(server.uptimeMs)
      // Sent the moment it listens, for a repository in the middle of the estate (another each
      // start, never opened before): the walk may not have reached it yet.
      const first = await http.timed(repos[(Math.floor(REPOS / 2) + run * 101) % REPOS]!.uuid)
      firsts.push(first.ms)
      firstStatus = first.status
      const walk = await server.walk
      if (walk.ms !== undefined) walks.push(walk.ms)
      if (run < RUNS - 1) continue

      const cold: number[] = []
      for (let i = 0; i < COLD; i++) {
        const r = await http.timed(repos[(i * 7919) % REPOS]!.uuid)
        if (r.status !== 200) throw new Error(`a known repository answered ${r.status}`)
        cold.push(r.ms)
      }
      cold.sort((a, b) => a - b)
      const warm = await http.timed(repos[0]!.uuid)
      const unknownAnon = await http.timed(randomUUID(), 'gettimestamp', false)
      // Past --rescan-interval since the last walk, so this one walks the whole estate again.
      await new Promise((r) => setTimeout(r, 1100))
      const unknown = await http.timed(randomUUID())

      // A new repository, made as a user would: served how long after `git annex init` returns?
      const fresh = join(forge, 'new', `fresh-${randomUUID()}.git`)
      let freshMs: number | undefined
      try {
        await mkdir(join(forge, 'new'), { recursive: true })
        await sh(root, 'git', ['init', '-q', '--bare', fresh])
        await annex(fresh, 'init', '-q', 'fresh')
        const inited = performance.now()
        const freshUuid = (await sh(fresh, 'git', ['config', 'annex.uuid'])).stdout.trim()
        while (performance.now() - inited < 30_000) {
          // Anonymous: 401 once it is known, 404 before; no request here causes a rescan.
          if ((await http.post(freshUuid, 'gettimestamp', false)) === 401) {
            freshMs = performance.now() - inited
            break
          }
          await new Promise((r) => setTimeout(r, 20))
        }
      } finally {
        // A kept estate stays at --repos repositories.
        await sh(root, 'chmod', ['-R', 'u+w', join(forge, 'new')]).catch(() => {})
        await rm(join(forge, 'new'), { recursive: true, force: true, maxRetries: 5 })
      }
      const rss = await kib(server.child.pid!, 'VmRSS')
      const hwm = await kib(server.child.pid!, 'VmHWM')
      const p = (q: number) => cold[Math.min(cold.length - 1, Math.floor(q * cold.length))]!
      rows = [
        ['repositories', `${REPOS} (walk found ${walk.repositories ?? '?'})`],
        ['a bare `node -e 0`, start to exit (the floor)', spread(floors)],
        ['listening, from spawn', spread(listens)],
        ['of which the server\'s own uptime when it logged "serving"', uptimes.length > 0 ? spread(uptimes) : '? (this build does not log it)'],
        ['walk of the estate (server log)', walks.length > 0 ? spread(walks) : '?'],
        ['first request, sent at listen, first start (no index: waits until the walk finds it)', `${ms(firsts[0]!)}`],
        [
          `first request, sent at listen, later starts (${STATE ? "from the previous start's index" : 'no --state-dir'})`,
          firsts.length > 1 ? `${spread(firsts.slice(1))} (status ${firstStatus})` : '? (--runs 1)',
        ],
        [`first request to a cold repository (${COLD}, after the walk)`, `p50 ${ms(p(0.5))}, p90 ${ms(p(0.9))}, max ${ms(cold[cold.length - 1]!)}`],
        ['request to an open repository', ms(warm.ms)],
        ['unknown UUID, anonymous (404, no rescan)', `${ms(unknownAnon.ms)} (status ${unknownAnon.status})`],
        ['unknown UUID, authorized (404 after one rescan)', `${ms(unknown.ms)} (status ${unknown.status})`],
        ['new repository served after its git annex init', freshMs === undefined ? 'not within 30 s' : ms(freshMs)],
        ['server RSS now / peak', `${Math.round(rss / 1024)} MiB / ${Math.round(hwm / 1024)} MiB`],
        [`child processes, most at once (--max-open-repos ${MAX_OPEN})`, String(maxChildren)],
      ]
    } finally {
      clearInterval(sampler)
      await http.close()
      await server.stop()
    }
  }
  console.log(`node ${process.version}, server ${MAIN}, ${new Date().toISOString()}, load before ${loadBefore}, after ${await load()}`)
  console.log('| measure | figure |\n|---|---|')
  for (const [k, v] of rows) console.log(`| ${k} | ${v} |`)
} finally {
  if (!ESTATE) {
    await sh(root, 'chmod', ['-R', 'u+w', root]).catch(() => {})
    await rm(root, { recursive: true, force: true, maxRetries: 5 })
  }
}
