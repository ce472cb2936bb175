// A forge's estate (issue #14 item 6): N bare git-annex repositories (default 10 000, copies
// of one template with fresh UUIDs) under one --directory, served by `annex-proxy serve` as
// a child process. Measures what an operator sees, asserts nothing:
// - listen: from spawn to the "annex-proxy serving" log line;
// - walk: the server's own "repositories found" time;
// - first request: one sent the moment it listens (it waits for the walk), then requests to
//   cold repositories (never opened) one after another once the walk is over;
// - an unknown UUID (authorized: one rescan of the whole estate);
// - a new repository (`git init --bare` + `git annex init`): ms until it is served;
// - the server's RSS (now and peak) and its child processes (most seen at once).
// Run: npx tsc -p tsconfig.json && node dist/bench/estate.js [--repos 10000] [--max-open-repos 64] [--cold 50]
import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
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
const MAIN = new URL('../src/cli/main.js', import.meta.url).pathname

const root = await mkdtemp(join(tmpdir(), 'annex-proxy-bench-estate-'))
const kib = async (pid: number, field: 'VmRSS' | 'VmHWM') => Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(await readFile(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN)
const ms = (x: number) => `${Math.round(x)} ms`

try {
  const t0 = performance.now()
  const template = await makeTemplate(join(root, 'template.git'))
  const forge = join(root, 'forge')
  const estate = await makeEstate(template, forge, REPOS, { perFolder: 100 })
  console.log(`estate: ${REPOS} repositories in ${ms(performance.now() - t0)} (${join(forge)})`)

  const start = performance.now()
  const child = spawn(process.execPath, [MAIN, 'serve', '--directory', forge, '--port', '0', '--authenv-http', '--max-open-repos', String(MAX_OPEN), '--rescan-interval', '1', '--log-level', 'info'], {
    cwd: root,
    env: { ...process.env, GIT_ANNEX_P2PHTTP_PASSWORD_alice: 'pw' },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  let maxChildren = 0
  const sampler = setInterval(() => (maxChildren = Math.max(maxChildren, childPids(child.pid).length)), 5)
  let walkMs: number | undefined
  let walkRepos: number | undefined
  const listening = new Promise<{ port: number; at: number }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('gave up after 120 s waiting for the server to log "annex-proxy serving"')), 120_000)
    child.once('exit', (code) => reject(new Error(`server exited (${code}) before listening`)))
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let rec: { msg?: string; address?: string; ms?: number; repositories?: number }
      try {
        rec = JSON.parse(line) as typeof rec
      } catch {
        return
      }
      if (rec.msg === 'annex-proxy serving' && rec.address) {
        clearTimeout(timer)
        resolve({ port: Number(/:(\d+)$/.exec(rec.address)?.[1]), at: performance.now() })
      }
      if (rec.msg === 'repositories found') {
        walkMs = rec.ms
        walkRepos = rec.repositories
      }
    })
  })
  try {
    const { port, at } = await listening
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
    const first = await timed(estate.repos[Math.floor(REPOS / 2)]!.uuid)
    const firstSinceSpawn = performance.now() - start
    const cold: number[] = []
    for (let i = 0; i < COLD; i++) {
      const r = await timed(estate.repos[(i * 7919) % REPOS]!.uuid)
      if (r.status !== 200) throw new Error(`a known repository answered ${r.status}`)
      cold.push(r.ms)
    }
    cold.sort((a, b) => a - b)
    const warm = await timed(estate.repos[0]!.uuid)
    const unknownAnon = await timed(randomUUID(), 'gettimestamp', false)
    // Past --rescan-interval since the last walk, so this one walks the whole estate again.
    await new Promise((r) => setTimeout(r, 1100))
    const unknown = await timed(randomUUID())

    // A new repository, made as a user would: served how long after `git annex init` returns?
    const fresh = join(forge, 'new', 'fresh.git')
    await sh(root, 'mkdir', ['-p', join(forge, 'new')])
    await sh(root, 'git', ['init', '-q', '--bare', fresh])
    await annex(fresh, 'init', '-q', 'fresh')
    const inited = performance.now()
    const freshUuid = (await sh(fresh, 'git', ['config', 'annex.uuid'])).stdout.trim()
    let freshMs: number | undefined
    while (performance.now() - inited < 30_000) {
      // Anonymous: 401 once it is known, 404 before; no request here causes a rescan.
      if ((await post(freshUuid, 'gettimestamp', false)) === 401) {
        freshMs = performance.now() - inited
        break
      }
      await new Promise((r) => setTimeout(r, 20))
    }
    const rss = await kib(child.pid!, 'VmRSS')
    const hwm = await kib(child.pid!, 'VmHWM')
    await pool.close()

    const p = (q: number) => cold[Math.min(cold.length - 1, Math.floor(q * cold.length))]!
    const rows: Array<[string, string]> = [
      ['repositories', `${REPOS} (walk found ${walkRepos ?? '?'})`],
      ['listening after spawn', ms(at - start)],
      ['walk of the estate (server log)', walkMs === undefined ? '?' : ms(walkMs)],
      ['first request, sent at listen (waits for the walk)', `${ms(first.ms)} (${ms(firstSinceSpawn)} after spawn, status ${first.status})`],
      [`first request to a cold repository (${COLD}, after the walk)`, `p50 ${ms(p(0.5))}, p90 ${ms(p(0.9))}, max ${ms(cold[cold.length - 1]!)}`],
      ['request to an open repository', ms(warm.ms)],
      ['unknown UUID, anonymous (404, no rescan)', `${ms(unknownAnon.ms)} (status ${unknownAnon.status})`],
      ['unknown UUID, authorized (404 after one rescan)', `${ms(unknown.ms)} (status ${unknown.status})`],
      ['new repository served after its git annex init', freshMs === undefined ? 'not within 30 s' : ms(freshMs)],
      ['server RSS now / peak', `${Math.round(rss / 1024)} MiB / ${Math.round(hwm / 1024)} MiB`],
      [`child processes, most at once (--max-open-repos ${MAX_OPEN})`, String(maxChildren)],
    ]
    console.log(`node ${process.version}, ${new Date().toISOString()}, load ${(await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ')}`)
    console.log('| measure | figure |\n|---|---|')
    for (const [k, v] of rows) console.log(`| ${k} | ${v} |`)
  } finally {
    clearInterval(sampler)
    child.kill('SIGTERM')
    await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.once('exit', r)))
  }
} finally {
  await sh(root, 'chmod', ['-R', 'u+w', root]).catch(() => {})
  await rm(root, { recursive: true, force: true, maxRetries: 5 })
}
