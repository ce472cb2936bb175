// The commands without a --young-generation flag of their own keep V8's young generation at
// the default cap too (src/cli/main.ts): a git-annex-shell p2pstdio session is one process
// per ssh connection, where V8's own limit (16 MiB per semi-space on Node 20, 64 on Node 24)
// would be paid once per client. Observed from inside the real process: a probe preloaded
// with --import runs an allocation workload that grows the young generation without a cap
// (test/config/young-generation.test.ts) once the session has greeted its client.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { test } from 'node:test'
import { defer, gitEnv, makeRepo, PROJECT_ROOT, repoUuid, tempDir } from '../helpers/annex.js'
import { waitUntil } from '../helpers/wait.js'
import { allocationRounds, settledMiB } from '../helpers/young-generation.js'

const MAIN = join(PROJECT_ROOT, 'dist/src/cli/main.js')

// Starts at the process's first write to stdout (the protocol's greeting), so after main()
// has set the cap.
const PROBE = `
import { getHeapSpaceStatistics } from 'node:v8'
import { writeFileSync } from 'node:fs'
const semi = () => (getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0) / 2 / 2 ** 20
const write = process.stdout.write
process.stdout.write = function (...args) {
  process.stdout.write = write
  setImmediate(async () => writeFileSync(process.env.PROBE_OUT, JSON.stringify(await ${allocationRounds('semi()')})))
  return write.apply(this, args)
}
`

/** Runs `args` under node with the probe; resolves with its semi-space samples (MiB) and what it printed first. */
async function probed(t: Parameters<typeof tempDir>[0], cwd: string, args: string[]): Promise<{ sizes: number[]; first: string }> {
  const dir = await tempDir(t, 'annex-proxy-probe-')
  const probe = join(dir, 'probe.mjs')
  const out = join(dir, 'sizes.json')
  writeFileSync(probe, PROBE)
  const child = spawn(process.execPath, ['--import', pathToFileURL(probe).href, ...args], { cwd, env: { ...gitEnv, PROBE_OUT: out }, stdio: ['pipe', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  const closed = new Promise<void>((r) => child.once('close', () => r()))
  defer(t, async () => {
    child.kill('SIGKILL')
    await closed
  })
  let gone = false
  void closed.then(() => (gone = true))
  await waitUntil('the probe to finish its rounds', 300_000, () => {
    if (existsSync(out)) return true
    if (gone) throw new Error(`the process ended before the probe finished: ${stderr}`)
    return false
  })
  child.stdin.end()
  return { sizes: JSON.parse(readFileSync(out, 'utf8')) as number[], first: stdout.split('\n')[0]! }
}

test("a p2pstdio session (as git-annex-shell runs it) keeps its young generation at the default cap, where the same work grows it to 16 MiB or more without one", { timeout: 900_000 }, async (t) => {
  // Without a cap: the probe in a process that only greets.
  const free = await probed(t, PROJECT_ROOT, ['--input-type=module', '-e', "process.stdout.write('AUTH-SUCCESS x\\n'); setInterval(() => {}, 1 << 30)"])
  assert.ok(Math.max(...free.sizes) >= 16, `without a cap the probe grows the young generation (${Math.max(...free.sizes)} MiB per semi-space)`)

  const repo = await makeRepo(await tempDir(t), 'served')
  const uuid = await repoUuid(repo)
  for (const args of [
    ['p2pstdio', repo, '00000000-0000-4000-8000-000000000001', '--uuid', uuid],
    ['git-annex-shell', 'p2pstdio', repo, '00000000-0000-4000-8000-000000000001', '--uuid', uuid],
  ]) {
    const { sizes, first } = await probed(t, repo, [MAIN, ...args])
    assert.equal(first, `AUTH-SUCCESS ${uuid}`, `${args[0]} greeted its client`)
    assert.ok(settledMiB(sizes) <= 8, `${args[0]}: ${settledMiB(sizes)} MiB per semi-space (samples ${JSON.stringify(sizes.slice(150))})`)
  }
})
