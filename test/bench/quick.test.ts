// `annex-proxy bench --quick` end to end, as CI's smoke test of the harness: it runs, and writes
// its report, results and chart with the expected shape. No speed is asserted.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { PROJECT_ROOT, gitEnv, tempDir } from '../helpers/annex.js'

test('annex-proxy bench --quick writes report.md, results.json and chart.svg', { timeout: 600_000 }, async (t) => {
  const dir = await tempDir(t, 'annex-proxy-bench-')
  const results = join(dir, 'results')
  const child = spawn(process.execPath, [join(PROJECT_ROOT, 'dist/src/cli/main.js'), 'bench', '--quick', '--workdir', dir, '--results', results, '--out', join(dir, 'latest.json')], {
    env: gitEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  child.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')))
  child.stderr.on('data', (d: Buffer) => (out += d.toString('utf8')))
  const timer = setTimeout(() => child.kill('SIGKILL'), 540_000)
  const code = await new Promise<number | null>((r) => child.once('close', r))
  clearTimeout(timer)
  assert.equal(code, 0, out)

  const json = JSON.parse(await readFile(join(results, 'results.json'), 'utf8')) as {
    mode: string
    report: {
      scenario: string
      phase: string
      unit: string
      floor?: { median: number }
      lines: { client: string; server: string; summary: { status: string; peakRssMiB?: { median: number }; processPeakRssMiB?: { median: number } } }[]
    }[]
  }
  assert.equal(json.mode, 'quick')
  const byKey = new Map(json.report.map((r) => [`${r.scenario}/${r.phase}`, r]))
  for (const k of ['large/copy', 'large/get', 'cluster-small/copy', 'cluster-small/get']) assert.ok(byKey.has(k), `report row ${k}`)
  const upload = byKey.get('large/copy')!
  assert.equal(upload.unit, 'MiB/s')
  assert.ok(upload.floor && upload.floor.median > 0, 'the floor is measured')
  const lines = upload.lines.map((l) => `${l.client}/${l.server}`).sort()
  assert.deepEqual(lines, ['git-annex/ours', 'git-annex/ref', 'upload/ours', 'upload/ref'])
  // annex-proxy's own lines have figures; the reference may stall (spec §9.19) and is reported as such.
  for (const l of upload.lines.filter((x) => x.server === 'ours')) assert.equal(l.summary.status, 'ok', `${l.client} → ours`)
  // The server process alone is metered beside its whole tree (git and git-annex helpers included).
  for (const l of upload.lines.filter((x) => x.server === 'ours')) {
    const tree = l.summary.peakRssMiB?.median
    const own = l.summary.processPeakRssMiB?.median
    assert.ok(own !== undefined && own > 0 && tree !== undefined && own <= tree, `${l.client} → ours: process peak ${own} MiB within the tree's ${tree} MiB`)
  }
  assert.ok(byKey.get('large/get')!.lines.every((l) => l.client === 'git-annex'), 'upload has no get phase')

  const md = await readFile(join(results, 'report.md'), 'utf8')
  assert.match(md, /^# annex-proxy bench: QUICK mode/)
  assert.match(md, /!\[throughput per scenario\]\(chart\.svg\)/)
  assert.match(md, /\| scenario \| client → server \| throughput \|.*\| server RSS MiB \| server process RSS MiB \|.*\| p50 ms \| p99 ms \|/)
  assert.match(md, /\| annex-proxy upload → annex-proxy \|/)
  assert.match(md, /\| git annex → git annex p2phttp \|/)

  const svg = await readFile(join(results, 'chart.svg'), 'utf8')
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/)
  assert.ok(svg.trimEnd().endsWith('</svg>'))
  assert.equal((svg.match(/stroke-dasharray/g) ?? []).length, json.report.length, 'one floor line per scenario panel')
  assert.ok((svg.match(/<rect /g) ?? []).length > json.report.length, 'bars drawn')
})
