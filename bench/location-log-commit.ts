// What committing the served git-annex branch before each answer costs (issue #13 item 7):
// `git annex copy --to origin -JN` of N×16 KiB into a plain served repository, annex-proxy with
// --location-log-commit answer (the default), annex-proxy with idle, and the reference
// `git annex p2phttp`, each round in turn on fresh repositories (who goes first rotates). Prints
// files/s per server and round, the medians, and the git-annex branch commits each server made.
//
//   node dist/bench/location-log-commit.js [--files 500] [--jobs 4] [--rounds 3]
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { randomFillSync } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { git, sh } from '../test/helpers/annex.js'
import { clientAnnex } from './lib/client.js'
import { benchEnv, makeClient, makeServedRepo } from './lib/repos.js'
import { startServer } from './lib/servers.js'
import { seconds } from './lib/timing.js'

const { values } = parseArgs({ options: { files: { type: 'string', default: '500' }, jobs: { type: 'string', default: '4' }, rounds: { type: 'string', default: '3' } } })
const FILES = Number(values.files)
const JOBS = Number(values.jobs)
const ROUNDS = Number(values.rounds)
const ROOT = new URL('../../', import.meta.url).pathname

type Kind = 'answer' | 'idle' | 'ref'
const KINDS: readonly Kind[] = ['answer', 'idle', 'ref']

async function once(kind: Kind, root: string, data: string): Promise<{ filesPerSecond: number; commits: number }> {
  const served = await makeServedRepo(join(root, `srv-${kind}`))
  const before = Number((await git(served, 'rev-list', '--count', 'git-annex')).stdout.trim())
  // idle runs annex-proxy as the bench's "ref-newest" command, with the old default added.
  const wrapper = join(root, 'idle.sh')
  await writeFile(wrapper, `#!/bin/sh\nshift\nexec ${process.execPath} ${join(ROOT, 'dist/src/cli/main.js')} serve "$@" --location-log-commit idle --log-level warn\n`, { mode: 0o755 })
  const server = await startServer(kind === 'ref' ? 'ref' : kind === 'idle' ? 'ref-newest' : 'ours', served, JOBS, ROOT, benchEnv, [wrapper])
  try {
    const client = join(root, `client-${kind}`)
    await makeClient(served, client, server.port, data)
    const s = await seconds(() => clientAnnex(client, ['copy', '--to', 'origin', `-J${JOBS}`, '--quiet', '.'], 600_000, benchEnv))
    // What the server committed by the time the copy ended (idle: the last commit may follow).
    const commits = Number((await git(served, 'rev-list', '--count', 'git-annex')).stdout.trim()) - before
    return { filesPerSecond: FILES / s, commits }
  } finally {
    await server.stop()
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

const root = await mkdtemp(join(tmpdir(), 'annex-proxy-llc-'))
try {
  const data = join(root, 'small')
  await sh(root, 'mkdir', ['-p', data])
  const buf = Buffer.allocUnsafe(16 * 1024)
  for (let i = 0; i < FILES; i++) await writeFile(join(data, `f${i}.bin`), randomFillSync(buf))
  const results = new Map<Kind, number[]>(KINDS.map((k) => [k, []]))
  for (let r = 0; r < ROUNDS; r++) {
    const order = KINDS.map((_, i) => KINDS[(i + r) % KINDS.length]!)
    for (const kind of order) {
      const dir = join(root, `r${r}`)
      await sh(root, 'mkdir', ['-p', dir])
      const { filesPerSecond, commits } = await once(kind, dir, data)
      results.get(kind)!.push(filesPerSecond)
      console.log(`round ${r + 1} ${kind}: ${filesPerSecond.toFixed(1)} files/s, ${commits} git-annex branch commits during the copy`)
      await rm(dir, { recursive: true, force: true })
    }
  }
  const m = (k: Kind) => median(results.get(k)!)
  console.log(`${FILES}×16 KiB copy --to -J${JOBS}, median of ${ROUNDS}: answer ${m('answer').toFixed(1)}, idle ${m('idle').toFixed(1)}, ref ${m('ref').toFixed(1)} files/s; answer/idle ${(m('answer') / m('idle')).toFixed(2)}, answer/ref ${(m('answer') / m('ref')).toFixed(2)}`)
} finally {
  await rm(root, { recursive: true, force: true })
}
