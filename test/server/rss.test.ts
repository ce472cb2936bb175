// Memory is bounded by configuration, not by uptime (issue #14): 200 000 requests to one
// server leave its RSS where it was after the first 10 000. A per-request entry kept in a
// long-lived signal (AbortSignal.any on Node 20, nodejs/node#55351) was +49 MiB per
// 100 000. The server runs in its own process so its RSS is measured alone.
import assert from 'node:assert/strict'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { Pool } from 'undici'
import { annex, defer, git, makeRepo, repoUuid, startAnnexProxy, tempDir } from '../helpers/annex.js'

const C = 'clientuuid=11111111-2222-3333-4444-555555555555'

async function rssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)![1]) / 1024
}

test('200 000 checkpresents: RSS after the run within 20 MiB of RSS after the first 10 000', async (t) => {
  const root = await tempDir(t)
  const repo = await makeRepo(join(root, 'server'), 'server')
  await writeFile(join(repo, 'a.txt'), 'present\n')
  await annex(repo, 'add', '-q', 'a.txt')
  await git(repo, 'commit', '-q', '-m', 'a')
  const key = (await annex(repo, 'lookupkey', 'a.txt')).stdout.trim()
  const uuid = await repoUuid(repo)
  // V8's young generation is sized the same on every Node line under test (Node 24's default
  // semi-space is larger than Node 20's, which shows as RSS the heap has not yet reused).
  const server = await startAnnexProxy(t, repo, ['--wideopen', '--log-level', 'warn', '--jobs', '8'], { NODE_OPTIONS: '--max-semi-space-size=16' })
  const pid = server.child.pid!
  const pool = new Pool(`http://127.0.0.1:${server.port}`, { connections: 8, keepAliveTimeout: 30_000 })
  defer(t, () => pool.destroy())
  const paths = [`/git-annex/${uuid}/v4/checkpresent?key=${key}&${C}`, `/git-annex/${uuid}/v4/checkpresent?key=WORM--absent&${C}`]

  const total = 200_000
  const concurrency = 16
  let issued = 0
  let done = 0
  let present = 0
  // Bounded in time: on a machine too busy for 200 000 in the budget the run stops early,
  // and still counts if it went far enough for the leak it guards against (0.5 KiB per
  // request: 45 MiB over 90 000) to show.
  const budgetMs = 100_000
  const atLeast = 100_000
  let deadline = Number.POSITIVE_INFINITY
  const run = async (upTo: number) => {
    const worker = async () => {
      while (issued < upTo && Date.now() < deadline) {
        const i = issued++
        const r = await pool.request({ path: paths[i % 2]!, method: 'POST' })
        const body = await r.body.text()
        assert.equal(r.statusCode, 200, body)
        if (body === '{"present":true}') present++
        done++
      }
    }
    await Promise.all(Array.from({ length: concurrency }, worker))
  }
  // RSS swings by tens of MiB as the young generation fills and empties and old-space
  // garbage waits for a major GC; what a leak raises is its floor. Each figure is the lowest
  // of samples taken every 50 ms over 20 000 requests: after the first 10 000, and at the end
  // of the run. (Over 5 000 requests the floor sometimes missed every trough: 22.7 MiB of
  // "growth" in one loaded CI run, while floors over 25 000-request windows of an 800 000-
  // request run stay between 123 and 128 MiB from 50 000 on. A leak of 0.5 KiB a request still shows:
  // 90 MiB over the run, at most 10 MiB of it hidden in the late window.)
  const samples: Array<{ at: number; mib: number }> = []
  let sampling = true
  const sampler = (async () => {
    while (sampling) {
      samples.push({ at: done, mib: await rssMiB(pid) })
      await new Promise((r) => setTimeout(r, 50))
    }
  })()
  defer(t, async () => {
    sampling = false
    await sampler
  })
  await run(30_000)
  const started = Date.now()
  deadline = started + budgetMs
  await run(total)
  sampling = false
  await sampler
  const floor = (from: number, to: number) => Math.min(...samples.filter((x) => x.at >= from && x.at <= to).map((x) => x.mib))
  const early = floor(10_000, 30_000)
  const late = floor(done - 20_000, done)
  const rate = Math.round((done - 30_000) / ((Date.now() - started) / 1000))
  t.diagnostic(`RSS floor after 10 000 requests: ${early.toFixed(1)} MiB; after ${done}: ${late.toFixed(1)} MiB (${samples.length} samples); ${rate} requests/s`)
  assert.ok(done >= atLeast, `only ${done} requests in ${budgetMs} ms (${rate}/s): too few to show a leak`)
  assert.ok(Math.abs(present - done / 2) <= concurrency, `${present} of ${done} answered present`)
  assert.ok(late - early < 20, `RSS grew ${(late - early).toFixed(1)} MiB from ${early.toFixed(1)} MiB over ${done - 10_000} requests`)
})
